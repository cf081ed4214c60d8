/**
 * The POST diagnostic port (0x80, length 1): firmware and kernels write
 * progress codes here, and Linux also uses it as an I/O delay. The last 1024
 * codes are kept with the time they arrived; reads return the last code.
 *
 * @example
 * ```ts
 * import { PostPort } from "./post.ts";
 * const post = new PostPort({ nowNs: () => 42 });
 * post.write(0, Uint8Array.of(0x55));
 * post.codes(); // [0x55]
 * post.entries(); // [{ code: 0x55, atNs: 42 }]
 * ```
 * @module
 */

import type { BusDevice, Clock } from "../core/device.ts";

/** How many codes {@link PostPort} keeps. */
export const POST_HISTORY_LENGTH = 1024;

/** One code written to the POST port. */
export interface PostEntry {
  readonly code: number;
  /** When it was written, by the port's clock. */
  readonly atNs: number;
}

/** Port 0x80 with a bounded history. */
export class PostPort implements BusDevice {
  readonly name = "post";
  readonly #clock: Clock;
  // A ring: the guest may write here millions of times.
  readonly #codes = new Uint8Array(POST_HISTORY_LENGTH);
  readonly #times = new Float64Array(POST_HISTORY_LENGTH);
  #next = 0;
  #count = 0;
  #last = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The last code written (0 before any). */
  get lastCode(): number {
    return this.#last;
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
    if (data.length > 0) data[0] = this.#last;
  }

  write(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const code = data[0]; // a wider write is its low byte on an 8-bit port
    this.#last = code;
    this.#codes[this.#next] = code;
    this.#times[this.#next] = this.#clock.nowNs();
    this.#next = (this.#next + 1) % POST_HISTORY_LENGTH;
    this.#count = Math.min(this.#count + 1, POST_HISTORY_LENGTH);
  }

  /** The kept entries, oldest first. */
  entries(): PostEntry[] {
    const out: PostEntry[] = [];
    const first = (this.#next - this.#count + POST_HISTORY_LENGTH) % POST_HISTORY_LENGTH;
    for (let i = 0; i < this.#count; i++) {
      const j = (first + i) % POST_HISTORY_LENGTH;
      out.push({ code: this.#codes[j], atNs: this.#times[j] });
    }
    return out;
  }

  /** The kept codes, oldest first. */
  codes(): number[] {
    return this.entries().map((e) => e.code);
  }
}
