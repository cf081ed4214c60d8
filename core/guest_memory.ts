/**
 * The one checked gateway to guest memory.
 *
 * Every guest-supplied address and length goes through here. Checks are
 * overflow-safe (lengths and addresses are plain numbers below 2^53, and the
 * end is computed only after both are validated), and an access must lie
 * within a single region: guest RAM is never assumed contiguous on the host.
 *
 * @example
 * ```ts
 * import { GuestMemory } from "./guest_memory.ts";
 * const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x10000 }]);
 * mem.write(0x1000, new Uint8Array([1, 2, 3]));
 * mem.readU8(0x1001); // 2
 * ```
 * @module
 */

/** A guest access outside RAM (or spanning regions): a guest fault, never a host one. */
export class GuestMemoryError extends Error {
  readonly gpa: number;
  readonly length: number;
  constructor(gpa: number, length: number, why = "outside guest RAM") {
    super(`Guest access of ${length} bytes at 0x${gpa.toString(16)} is ${why}`);
    this.name = "GuestMemoryError";
    this.gpa = gpa;
    this.length = length;
  }
}

/** One contiguous range of guest-physical memory backed by host bytes. */
export interface MemoryRegion {
  /** Guest-physical base address. */
  readonly gpa: number;
  /** Host bytes (length = region size). */
  readonly bytes: Uint8Array;
  /** Host address of `bytes` when known (for hypervisor calls). */
  readonly hostAddress?: bigint;
}

/** Largest guest-physical address we accept (52-bit physical address space). */
export const MAX_GPA = 2 ** 52;

/** Converts a bigint address from a hypervisor to a number, checked. */
export function gpaFromBigint(value: bigint): number {
  if (value < 0n || value >= BigInt(MAX_GPA)) {
    throw new GuestMemoryError(
      Number(value & 0xffffffffffffn),
      0,
      "beyond the physical address space",
    );
  }
  return Number(value);
}

/** The same check for an address read as two 32-bit halves (no bigint on the hot path). */
export function gpaFromHalves(high: number, low: number): number {
  if (high >= 2 ** 20) {
    throw new GuestMemoryError(low, 0, "beyond the physical address space");
  }
  return high * 2 ** 32 + low;
}

/** Guest RAM: a sorted, non-overlapping set of regions. */
export class GuestMemory {
  readonly regions: readonly MemoryRegion[];
  #views: DataView[];

  constructor(regions: readonly MemoryRegion[]) {
    const sorted = [...regions].sort((a, b) => a.gpa - b.gpa);
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i];
      if (!Number.isSafeInteger(r.gpa) || r.gpa < 0 || r.gpa + r.bytes.length > MAX_GPA) {
        throw new RangeError(`Memory region at 0x${r.gpa.toString(16)} is out of range`);
      }
      const next = sorted[i + 1];
      if (next && r.gpa + r.bytes.length > next.gpa) {
        throw new RangeError(
          `Memory regions at 0x${r.gpa.toString(16)} and 0x${next.gpa.toString(16)} overlap`,
        );
      }
    }
    this.regions = sorted;
    this.#views = sorted.map((r) =>
      new DataView(r.bytes.buffer, r.bytes.byteOffset, r.bytes.length)
    );
  }

  /** Regions backed by fresh zeroed ArrayBuffers (tests, fakes). */
  static anonymous(layout: readonly { gpa: number; size: number }[]): GuestMemory {
    return new GuestMemory(layout.map(({ gpa, size }) => ({ gpa, bytes: new Uint8Array(size) })));
  }

  /** Total bytes of RAM. */
  get size(): number {
    return this.regions.reduce((n, r) => n + r.bytes.length, 0);
  }

  /** The first address above all RAM. */
  get end(): number {
    const last = this.regions[this.regions.length - 1];
    return last ? last.gpa + last.bytes.length : 0;
  }

  #find(gpa: number, length: number): number {
    if (
      !Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0 ||
      gpa > MAX_GPA || length > MAX_GPA
    ) {
      throw new GuestMemoryError(
        Number.isFinite(gpa) ? gpa : 0,
        Number.isFinite(length) ? length : 0,
      );
    }
    const rs = this.regions;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i];
      if (gpa >= r.gpa && gpa - r.gpa + length <= r.bytes.length) return i;
    }
    throw new GuestMemoryError(gpa, length);
  }

  /** True when `[gpa, gpa+length)` lies in one RAM region. */
  contains(gpa: number, length: number): boolean {
    try {
      this.#find(gpa, length);
      return true;
    } catch {
      return false;
    }
  }

  /** A live view (no copy) of `[gpa, gpa+length)`. Throws GuestMemoryError. */
  slice(gpa: number, length: number): Uint8Array {
    const r = this.regions[this.#find(gpa, length)];
    const off = gpa - r.gpa;
    return r.bytes.subarray(off, off + length);
  }

  /** A copy of `[gpa, gpa+length)`. */
  read(gpa: number, length: number): Uint8Array {
    return this.slice(gpa, length).slice();
  }

  /** Copies `data` into guest memory at `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    this.slice(gpa, data.length).set(data);
  }

  /** Fills `[gpa, gpa+length)` with `value`. */
  fill(gpa: number, length: number, value = 0): void {
    this.slice(gpa, length).fill(value);
  }

  #view(gpa: number, length: number): [DataView, number] {
    const i = this.#find(gpa, length);
    return [this.#views[i], gpa - this.regions[i].gpa];
  }

  readU8(gpa: number): number {
    const [v, o] = this.#view(gpa, 1);
    return v.getUint8(o);
  }
  readU16(gpa: number): number {
    const [v, o] = this.#view(gpa, 2);
    return v.getUint16(o, true);
  }
  readU32(gpa: number): number {
    const [v, o] = this.#view(gpa, 4);
    return v.getUint32(o, true);
  }
  readU64(gpa: number): bigint {
    const [v, o] = this.#view(gpa, 8);
    return v.getBigUint64(o, true);
  }
  writeU8(gpa: number, value: number): void {
    const [v, o] = this.#view(gpa, 1);
    v.setUint8(o, value);
  }
  writeU16(gpa: number, value: number): void {
    const [v, o] = this.#view(gpa, 2);
    v.setUint16(o, value, true);
  }
  writeU32(gpa: number, value: number): void {
    const [v, o] = this.#view(gpa, 4);
    v.setUint32(o, value >>> 0, true);
  }
  writeU64(gpa: number, value: bigint): void {
    const [v, o] = this.#view(gpa, 8);
    v.setBigUint64(o, BigInt.asUintN(64, value), true);
  }

  /** Reads a NUL-terminated string of at most `max` bytes. */
  readCString(gpa: number, max: number): string {
    const out: number[] = [];
    for (let i = 0; i < max; i++) {
      const b = this.readU8(gpa + i);
      if (b === 0) break;
      out.push(b);
    }
    return new TextDecoder().decode(new Uint8Array(out));
  }
}
