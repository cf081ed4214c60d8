/**
 * The small interfaces every device model implements or uses.
 *
 * Devices see offsets relative to the base they were registered at, never
 * absolute addresses, so the bus can move them (PCI BAR relocation) without
 * the device knowing. A device never throws because of what a guest did: it
 * ignores the access (logging at most once in a while) and keeps running.
 *
 * @module
 */

/** A device on the port-I/O or MMIO bus. */
export interface BusDevice {
  /** Short name for logs ("uart0", "pic-master"). */
  readonly name: string;
  /** Fills `data` (1, 2, 4 or 8 bytes, little-endian) with the value at `offset`. */
  read(offset: number, data: Uint8Array): void;
  /** Accepts `data` written at `offset`. */
  write(offset: number, data: Uint8Array): void;
}

/** An interrupt request line into the interrupt controller. */
export interface IrqLine {
  /** Drives the line high (true) or low (false). Edge-triggered inputs fire on low->high. */
  setLevel(high: boolean): void;
}

/** A monotonic clock in nanoseconds (injectable so timer devices can be tested). */
export interface Clock {
  nowNs(): number;
}

/** The host's monotonic clock. */
export const hostClock: Clock = { nowNs: () => performance.now() * 1e6 };

/**
 * A device with time-driven behaviour (PIT, RTC). The run loop calls
 * `poll(now)` whenever it gets control and sleeps no longer than the earliest
 * `nextDeadlineNs()` when the vCPU is halted.
 */
export interface TimedDevice {
  /** Brings the device up to `nowNs`: raises the interrupts that became due. */
  poll(nowNs: number): void;
  /** When the device next needs `poll`, or `Infinity`. */
  nextDeadlineNs(): number;
}

/** Reads a little-endian value of `data.length` (1, 2 or 4) bytes. */
export function getLe(data: Uint8Array): number {
  switch (data.length) {
    case 1:
      return data[0];
    case 2:
      return data[0] | (data[1] << 8);
    default:
      return (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
  }
}

/** Stores `value` little-endian into all of `data` (bytes beyond 4 get zero). */
export function setLe(data: Uint8Array, value: number): void {
  for (let i = 0; i < data.length; i++) {
    data[i] = i < 4 ? (value >>> (8 * i)) & 0xff : 0;
  }
}

/**
 * Rate-limited logging for guest misbehaviour: a hostile guest must not be
 * able to flood the host's log.
 */
export class RateLimitedLog {
  #budget: number;
  #suppressed = 0;
  #windowStart = 0;
  readonly #perWindow: number;
  readonly #windowMs: number;
  readonly #sink: (line: string) => void;

  constructor(
    perWindow = 10,
    windowMs = 1000,
    sink: (line: string) => void = (l) => console.error(l),
  ) {
    this.#perWindow = perWindow;
    this.#budget = perWindow;
    this.#windowMs = windowMs;
    this.#sink = sink;
  }

  /** Logs `line` (a function is only called when the line will be printed). */
  log(line: string | (() => string)): void {
    const now = Date.now();
    if (now - this.#windowStart >= this.#windowMs) {
      if (this.#suppressed > 0) this.#sink(`(${this.#suppressed} similar messages suppressed)`);
      this.#windowStart = now;
      this.#budget = this.#perWindow;
      this.#suppressed = 0;
    }
    if (this.#budget > 0) {
      this.#budget--;
      this.#sink(typeof line === "string" ? line : line());
    } else {
      this.#suppressed++;
    }
  }
}

/** The shared guest-misbehaviour log of this process. */
export const guestLog: RateLimitedLog = new RateLimitedLog();
