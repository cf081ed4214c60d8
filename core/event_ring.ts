/**
 * A single-producer, single-consumer ring of small fixed-size events over a
 * SharedArrayBuffer: one thread pushes (a console client's keys), another
 * drains (the vCPU thread, where the keyboard lives). Full means dropped:
 * a flooding producer never blocks and never grows memory.
 *
 * @example
 * ```ts
 * import { EventRing } from "./event_ring.ts";
 * const ring = new EventRing(3);
 * ring.push([1, 2, 3]);
 * ring.drain((e) => console.log(e[0], e[1], e[2])); // 1 2 3
 * ```
 * @module
 */

const HEAD = 0;
const TAIL = 1;
const HEADER = 2;

/** A ring of events of `width` Int32 values each. */
export class EventRing {
  readonly buffer: SharedArrayBuffer;
  readonly width: number;
  readonly capacity: number;
  readonly #i32: Int32Array;

  /** @param width Int32 values per event; @param capacity events (one slot stays free) */
  constructor(width: number, capacity = 256, buffer?: SharedArrayBuffer) {
    this.width = width;
    this.capacity = capacity;
    this.buffer = buffer ?? new SharedArrayBuffer((HEADER + width * capacity) * 4);
    if (this.buffer.byteLength < (HEADER + width * capacity) * 4) {
      throw new RangeError("EventRing buffer too small for its width and capacity");
    }
    this.#i32 = new Int32Array(this.buffer);
  }

  /** Queues one event; false when the ring is full (the event is dropped). */
  push(event: readonly number[]): boolean {
    const head = Atomics.load(this.#i32, HEAD);
    const next = (head + 1) % this.capacity;
    if (next === Atomics.load(this.#i32, TAIL)) return false;
    const at = HEADER + head * this.width;
    for (let i = 0; i < this.width; i++) this.#i32[at + i] = event[i] | 0;
    Atomics.store(this.#i32, HEAD, next);
    return true;
  }

  /** Whether events wait. */
  get pending(): boolean {
    return Atomics.load(this.#i32, HEAD) !== Atomics.load(this.#i32, TAIL);
  }

  /** Hands every waiting event to `take` (the array is reused between calls). */
  drain(take: (event: Int32Array) => void): void {
    let tail = Atomics.load(this.#i32, TAIL);
    const head = Atomics.load(this.#i32, HEAD);
    while (tail !== head) {
      const at = HEADER + tail * this.width;
      take(this.#i32.subarray(at, at + this.width));
      tail = (tail + 1) % this.capacity;
      Atomics.store(this.#i32, TAIL, tail);
    }
  }
}
