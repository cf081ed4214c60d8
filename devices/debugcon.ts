/**
 * QEMU's debug console (port 0x402 on the PC; length 1), where SeaBIOS
 * writes its diagnostic log. Reads give 0xE9, the value firmware checks to
 * know the port is there. Written bytes are passed to `sink` a line at a
 * time (lines longer than 1 KiB are cut), or dropped without one.
 *
 * @example
 * ```ts
 * import { DebugCon } from "./debugcon.ts";
 * const lines: string[] = [];
 * const con = new DebugCon((line) => lines.push(line));
 * for (const c of "hi\n") con.write(0, Uint8Array.of(c.charCodeAt(0)));
 * lines; // ["hi"]
 * ```
 * @module
 */

import type { BusDevice } from "../core/device.ts";

/** Port of the debug console. */
export const DEBUGCON_PORT = 0x402;
/** What a read returns (QEMU's readback value). */
export const DEBUGCON_READBACK = 0xe9;
/** Longest line passed on; the rest of a longer line is dropped. */
export const DEBUGCON_MAX_LINE = 1024;

/** The debug console port. */
export class DebugCon implements BusDevice {
  readonly name = "debugcon";
  readonly #sink?: (line: string) => void;
  readonly #line = new Uint8Array(DEBUGCON_MAX_LINE);
  #length = 0;

  constructor(sink?: (line: string) => void) {
    this.#sink = sink;
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = DEBUGCON_READBACK;
  }

  write(_offset: number, data: Uint8Array): void {
    if (!this.#sink || data.length === 0) return;
    const c = data[0];
    if (c === 0x0a) {
      this.flush();
    } else if (c !== 0x0d && this.#length < DEBUGCON_MAX_LINE) {
      this.#line[this.#length++] = c;
    }
  }

  /** Passes on a pending partial line. */
  flush(): void {
    if (!this.#sink) return;
    const text = new TextDecoder().decode(this.#line.subarray(0, this.#length));
    this.#length = 0;
    this.#sink(text);
  }
}
