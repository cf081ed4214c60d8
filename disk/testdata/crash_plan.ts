/** What the crash test's child writes where (shared by child and test). */

/** [offset, length] writes that are flushed before the kill (cluster- and table-crossing). */
export const CRASH_REGION_A: readonly [number, number][] = [
  [0, 4096],
  [65536 - 100, 300],
  [1024 * 1024 + 7, 70000],
  [3 * 1024 * 1024 - 512, 1536],
];

/** [offset, length] writes that go on until the kill (disjoint from region A). */
export const CRASH_REGION_C: readonly [number, number][] = [
  [5 * 1024 * 1024, 8192],
  [6 * 1024 * 1024 + 300, 100000],
  [7 * 1024 * 1024 - 1000, 600],
];

/** Deterministic bytes for a write (differs per offset and round). */
export function crashPattern(offset: number, length: number, round: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (offset * 2654435761 + round * 40503) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
