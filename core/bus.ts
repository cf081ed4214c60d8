/**
 * One bus that routes whole access ranges to devices.
 *
 * The port-I/O space and the MMIO space are each one `Bus`. An access is
 * routed only when all of `[address, address+length)` falls inside one
 * device's range; inserts that overlap an existing range are rejected.
 *
 * @example
 * ```ts
 * import { Bus } from "./bus.ts";
 * const bus = new Bus("pio");
 * bus.insert(0x3f8, 8, { name: "uart", read: (_o, d) => d.fill(0), write: () => {} });
 * bus.read(0x3fd, new Uint8Array(1)); // true: routed to offset 5
 * ```
 * @module
 */

import type { BusDevice } from "./device.ts";

/** A device's placement on a bus. */
export interface BusRange {
  readonly base: number;
  readonly length: number;
  readonly device: BusDevice;
}

/** A bus of non-overlapping device ranges, kept sorted for binary search. */
export class Bus {
  readonly name: string;
  #ranges: BusRange[] = [];

  constructor(name: string) {
    this.name = name;
  }

  /** All ranges, sorted by base. */
  get ranges(): readonly BusRange[] {
    return this.#ranges;
  }

  /**
   * Places `device` at `[base, base+length)`; throws when that overlaps
   * another range. For the machine's own wiring: placements a guest chooses
   * (PCI BARs) go through {@link tryInsert}, which never throws.
   */
  insert(base: number, length: number, device: BusDevice): void {
    const clash = this.tryInsert(base, length, device);
    if (clash) {
      throw new Error(
        `${this.name} bus: "${device.name}" at 0x${base.toString(16)}+0x${length.toString(16)} ` +
          `overlaps "${clash.device.name}" at 0x${clash.base.toString(16)}+` +
          `0x${clash.length.toString(16)}`,
      );
    }
  }

  /**
   * Places `device` at `[base, base+length)` unless that overlaps a range
   * already there, which it then returns (and nothing changes). A base or
   * length that is not a non-negative safe integer is still a RangeError.
   */
  tryInsert(base: number, length: number, device: BusDevice): BusRange | undefined {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0) {
      throw new RangeError(`Cannot insert "${device.name}" at ${base} with length ${length}`);
    }
    const end = base + length;
    for (const r of this.#ranges) {
      if (base < r.base + r.length && r.base < end) return r;
    }
    this.#ranges.push({ base, length, device });
    this.#ranges.sort((a, b) => a.base - b.base);
    return undefined;
  }

  /** Removes the range starting at `base` for `device`; returns whether one was removed. */
  remove(device: BusDevice, base?: number): boolean {
    const i = this.#ranges.findIndex((r) =>
      r.device === device && (base === undefined || r.base === base)
    );
    if (i < 0) return false;
    this.#ranges.splice(i, 1);
    return true;
  }

  /** The range holding all of `[address, address+length)`, if any. */
  find(address: number, length: number): BusRange | undefined {
    const rs = this.#ranges;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = rs[mid];
      if (address < r.base) hi = mid - 1;
      else if (address >= r.base + r.length) lo = mid + 1;
      else return address + length <= r.base + r.length ? r : undefined;
    }
    return undefined;
  }

  /** Routes a read; returns false (data untouched) when no device covers it. */
  read(address: number, data: Uint8Array): boolean {
    const r = this.find(address, data.length);
    if (!r) return false;
    r.device.read(address - r.base, data);
    return true;
  }

  /** Routes a write; returns false when no device covers it. */
  write(address: number, data: Uint8Array): boolean {
    const r = this.find(address, data.length);
    if (!r) return false;
    r.device.write(address - r.base, data);
    return true;
  }
}
