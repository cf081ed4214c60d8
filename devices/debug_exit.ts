/**
 * An exit port in the manner of QEMU's isa-debug-exit: a test guest writes
 * a value `v` and the VMM ends with status `(v << 1) | 1`, so a guest can
 * never produce status 0 by accident. Register it at the configured port
 * with length 4 (any width of write at any offset counts; the value is the
 * written bytes, little-endian).
 *
 * @example
 * ```ts
 * import { DebugExit } from "./debug_exit.ts";
 * let status = -1;
 * const port = new DebugExit((code) => (status = code));
 * port.write(0, Uint8Array.of(0x10));
 * status; // 0x21
 * ```
 * @module
 */

import { type BusDevice, getLe } from "../core/device.ts";

/** The exit port. */
export class DebugExit implements BusDevice {
  readonly name = "debug-exit";
  readonly #onExit: (code: number) => void;

  /**
   * @param onExit receives `(v << 1) | 1` as an unsigned 32-bit number, as
   * QEMU's C `int` would carry it; a process exit status keeps its low 8 bits.
   */
  constructor(onExit: (code: number) => void) {
    this.#onExit = onExit;
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  write(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const value = getLe(data.length > 4 ? data.subarray(0, 4) : data);
    this.#onExit((value * 2 + 1) % 2 ** 32);
  }
}
