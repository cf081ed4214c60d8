/**
 * A small seeded PRNG (xorshift128+ in 32-bit halves, seeded through
 * splitmix32) with the draws the fuzzers use. The same seed gives the same
 * sequence on every machine, so a finding is reproduced by its seed alone.
 *
 * @module
 */

/** Deterministic random draws from a 32-bit seed. */
export class Rng {
  #s: Uint32Array = new Uint32Array(4);

  constructor(seed: number) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0 || 1;
    }
  }

  /** A uniform 32-bit unsigned integer (xoshiro128**). */
  u32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    if (n <= 2 ** 32) return Math.floor((this.u32() / 2 ** 32) * n);
    return Math.floor((this.u32() * 2 ** 21 + (this.u32() >>> 11)) / 2 ** 53 * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /**
   * A value of `bits` bits biased toward the edges fuzzers care about: 0, 1,
   * all ones, the sign bit, powers of two and their neighbours, or uniform.
   */
  interesting(bits: 8 | 16 | 32): number {
    const max = 2 ** bits - 1;
    switch (this.below(6)) {
      case 0:
        return this.pick([0, 1, max, max - 1, 2 ** (bits - 1), 2 ** (bits - 1) - 1]);
      case 1: {
        const p = 2 ** this.below(bits);
        return Math.min(max, Math.max(0, p + this.range(-1, 1)));
      }
      case 2:
        return this.below(16);
      default:
        return this.below(max + 1);
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
