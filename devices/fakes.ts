/**
 * Recording fakes for device tests: an IRQ line that remembers every level it
 * was driven to, a clock the test moves by hand, and one-line port helpers.
 *
 * @example
 * ```ts
 * import { FakeClock, RecordingIrqLine } from "./fakes.ts";
 * const clock = new FakeClock();
 * const irq = new RecordingIrqLine();
 * irq.setLevel(true);
 * clock.advanceNs(1000);
 * irq.level; // true
 * ```
 * @module
 */

import type { BusDevice, Clock, IrqLine } from "../core/device.ts";

/** An `IrqLine` that records each `setLevel` call and counts rising edges. */
export class RecordingIrqLine implements IrqLine {
  /** Every level driven, in order. */
  readonly history: boolean[] = [];
  /** The level last driven (false before any call). */
  level = false;
  /** Low-to-high transitions seen so far. */
  risingEdges = 0;

  setLevel(high: boolean): void {
    if (high && !this.level) this.risingEdges++;
    this.level = high;
    this.history.push(high);
  }
}

/** A `Clock` that only moves when the test says so. */
export class FakeClock implements Clock {
  /** Current time in nanoseconds. */
  timeNs: number;

  constructor(startNs = 0) {
    this.timeNs = startNs;
  }

  nowNs(): number {
    return this.timeNs;
  }

  /** Moves the clock forward by `deltaNs`. */
  advanceNs(deltaNs: number): void {
    this.timeNs += deltaNs;
  }
}

/** Reads one byte at `offset` of `device`. */
export function inb(device: BusDevice, offset: number): number {
  const data = new Uint8Array(1);
  device.read(offset, data);
  return data[0];
}

/** Writes one byte at `offset` of `device`. */
export function outb(device: BusDevice, offset: number, value: number): void {
  device.write(offset, new Uint8Array([value & 0xff]));
}

/** Reads `width` bytes (little-endian) at `offset` of `device`. */
export function inN(device: BusDevice, offset: number, width: number): number {
  const data = new Uint8Array(width);
  device.read(offset, data);
  let value = 0;
  for (let i = width - 1; i >= 0; i--) value = value * 256 + data[i];
  return value;
}

/** Writes `value` as `width` little-endian bytes at `offset` of `device`. */
export function outN(device: BusDevice, offset: number, width: number, value: number): void {
  const data = new Uint8Array(width);
  let v = value;
  for (let i = 0; i < width; i++) {
    data[i] = v % 256;
    v = Math.floor(v / 256);
  }
  device.write(offset, data);
}
