/**
 * The 8254 programmable interval timer (ports 0x40-0x43) and system control
 * port B (0x61), which gates channel 2 and reads its output.
 *
 * | offset | read | write |
 * | --- | --- | --- |
 * | 0-2 | channel count or latched status/count | channel count |
 * | 3 | (write-only: reads 0xff) | control word |
 *
 * Control word: bits 7-6 select the channel (3 = read-back), bits 5-4 the
 * access (0 = counter latch, 1 = LSB, 2 = MSB, 3 = LSB then MSB), bits 3-1
 * the mode, bit 0 BCD.
 *
 * Counters are not ticked: each channel remembers when it started counting
 * and computes its count and OUT from the injected {@link Clock} at 1193182
 * Hz. Only channel 0 has an interrupt (IRQ0); {@link Pit8254.poll} raises
 * what became due. Periodic modes (2, 3) and strobes (4, 5) pulse the line
 * high then low so an edge-triggered PIC latches one interrupt per period;
 * a guest that missed several periods gets one, not a storm. Modes 0 and 1
 * drive the line with OUT, which stays high after terminal count.
 *
 * Channel gates: 0 and 1 are tied high; channel 2's gate is port B bit 0.
 *
 * @example
 * ```ts
 * import { Pit8254 } from "./pit8254.ts";
 * let t = 0;
 * const pit = new Pit8254({ nowNs: () => t }, { setLevel() {} });
 * pit.write(3, Uint8Array.of(0x34)); // channel 0, LSB then MSB, mode 2
 * pit.write(0, Uint8Array.of(0xa9)); // 1193 = ~1 ms
 * pit.write(0, Uint8Array.of(0x04));
 * pit.nextDeadlineNs(); // ~1_000_000
 * ```
 * @module
 */

import {
  type BusDevice,
  type Clock,
  guestLog,
  type IrqLine,
  type TimedDevice,
} from "../core/device.ts";

/** The PIT's input clock. */
export const PIT_FREQUENCY_HZ = 1_193_182;
/** Shortest spacing of IRQ0 pulses, whatever the guest programs (20 kHz). */
export const PIT_MIN_IRQ_INTERVAL_NS = 50_000;

/** Control word: select channel (bits 7-6); 3 is the read-back command. */
export const PIT_CW_SELECT_SHIFT = 6;
/** Control word: access mode (bits 5-4); 0 latches the count. */
export const PIT_CW_ACCESS_SHIFT = 4;
/** Access mode: low byte only. */
export const PIT_ACCESS_LSB = 1;
/** Access mode: high byte only. */
export const PIT_ACCESS_MSB = 2;
/** Access mode: low byte, then high byte. */
export const PIT_ACCESS_WORD = 3;
/** Control word bit 0: count in BCD (0-9999). */
export const PIT_CW_BCD = 0x01;
/** Read-back: do NOT latch the count (bit 5, active low). */
export const PIT_READBACK_NO_COUNT = 0x20;
/** Read-back: do NOT latch the status (bit 4, active low). */
export const PIT_READBACK_NO_STATUS = 0x10;
/** Status byte: OUT pin. */
export const PIT_STATUS_OUT = 0x80;
/** Status byte: null count (the written count has not reached the counter yet). */
export const PIT_STATUS_NULL_COUNT = 0x40;

/** Port B: channel 2 gate. */
export const PORT61_GATE2 = 0x01;
/** Port B: speaker data enable. */
export const PORT61_SPEAKER = 0x02;
/** Port B: parity check / channel check enables (stored, no effect). */
export const PORT61_NMI_ENABLES = 0x0c;
/** Port B: DRAM refresh request toggle. */
export const PORT61_REFRESH = 0x10;
/** Port B: channel 2 OUT. */
export const PORT61_OUT2 = 0x20;
/** Half period of the port B refresh toggle (a 15.085 us refresh cycle). */
export const PORT61_REFRESH_HALF_PERIOD_NS = 15_085;

const NS_PER_S = 1_000_000_000;

/** Whole PIT ticks in `deltaNs` (exact for long spans: seconds split off first). */
function ticksIn(deltaNs: number): number {
  if (!(deltaNs > 0)) return 0;
  const seconds = Math.floor(deltaNs / NS_PER_S);
  const rest = deltaNs - seconds * NS_PER_S;
  return seconds * PIT_FREQUENCY_HZ + Math.floor((rest * PIT_FREQUENCY_HZ) / NS_PER_S);
}

/** The shortest span holding `ticks` whole ticks. */
function nsForTicks(ticks: number): number {
  const seconds = Math.floor(ticks / PIT_FREQUENCY_HZ);
  const rest = ticks - seconds * PIT_FREQUENCY_HZ;
  return seconds * NS_PER_S + Math.ceil((rest * NS_PER_S) / PIT_FREQUENCY_HZ);
}

function toBcd(value: number): number {
  let out = 0;
  for (let shift = 0; shift < 16; shift += 4) {
    out |= (value % 10) << shift;
    value = Math.floor(value / 10);
  }
  return out;
}

function fromBcd(raw: number): number {
  return ((raw >> 12) & 0xf) * 1000 + ((raw >> 8) & 0xf) * 100 + ((raw >> 4) & 0xf) * 10 +
    (raw & 0xf);
}

/**
 * What each mode does, datasheet style: whether the gate's rising edge
 * (re)starts the count, whether a low gate pauses it, the OUT level before a
 * count is loaded, and how channel 0 drives IRQ0.
 */
const MODES: readonly {
  readonly name: string;
  readonly gateTriggers: boolean;
  readonly gatePauses: boolean;
  readonly outBeforeCount: boolean;
  readonly irq: "follow-out" | "periodic" | "strobe";
}[] = [
  {
    name: "interrupt on terminal count",
    gateTriggers: false,
    gatePauses: true,
    outBeforeCount: false,
    irq: "follow-out",
  },
  {
    name: "hardware retriggerable one-shot",
    gateTriggers: true,
    gatePauses: false,
    outBeforeCount: true,
    irq: "follow-out",
  },
  {
    name: "rate generator",
    gateTriggers: true,
    gatePauses: true,
    outBeforeCount: true,
    irq: "periodic",
  },
  {
    name: "square wave",
    gateTriggers: true,
    gatePauses: true,
    outBeforeCount: true,
    irq: "periodic",
  },
  {
    name: "software triggered strobe",
    gateTriggers: false,
    gatePauses: true,
    outBeforeCount: true,
    irq: "strobe",
  },
  {
    name: "hardware triggered strobe",
    gateTriggers: true,
    gatePauses: false,
    outBeforeCount: true,
    irq: "strobe",
  },
];

/** One counter of the 8254. */
class PitChannel {
  modeBits = 3; // as programmed (6 and 7 are aliases of 2 and 3)
  mode = 3;
  bcd = false;
  access = PIT_ACCESS_WORD;
  /** Initial count N in ticks (a written 0 means 65536, or 10000 in BCD). */
  reload = 0x10000;
  /** A complete count was written since the last control word. */
  loaded = false;
  /** The counting element holds the count and runs (modes 1 and 5 wait for a trigger). */
  counting = false;
  gate: boolean;
  /** Ticks counted before `epochNs` (kept while the gate pauses the count). */
  heldTicks = 0;
  epochNs = 0;
  /** A count written while counting in modes 1, 2, 3, 5: used from the next reload on. */
  pendingReload?: number;
  /** In modes 2 and 3, the elapsed tick count at which `pendingReload` takes over. */
  pendingAtTicks = Infinity;
  /** Count shown while not counting (the counting element keeps its last value). */
  idleCount = 0;
  writeLow = true; // write flip-flop for LSB-then-MSB
  lowByte = 0;
  readLow = true; // read flip-flop for LSB-then-MSB
  latchedStatus?: number;
  latchedCount: number[] = [];

  constructor(gate: boolean) {
    this.gate = gate;
  }

  get modulus(): number {
    return this.bcd ? 10000 : 0x10000;
  }

  gateCounts(): boolean {
    return this.gate || !MODES[this.mode].gatePauses;
  }

  /** Ticks since the count was loaded or triggered, at time `nowNs`. */
  elapsed(nowNs: number): number {
    if (!this.counting) return 0;
    if (!this.gateCounts()) return this.heldTicks;
    return this.heldTicks + ticksIn(nowNs - this.epochNs);
  }

  /** When `elapsed` reaches `ticks`, or Infinity if it never will. */
  timeOfTicks(ticks: number): number {
    if (!this.counting || !this.gateCounts()) return Infinity;
    return this.epochNs + nsForTicks(Math.max(0, ticks - this.heldTicks));
  }

  /** Applies a count written while counting once its moment has come. */
  sync(nowNs: number): void {
    if (this.pendingReload === undefined || this.pendingAtTicks === Infinity) return;
    const e = this.elapsed(nowNs);
    if (e < this.pendingAtTicks) return;
    const at = this.timeOfTicks(this.pendingAtTicks);
    this.reload = this.pendingReload;
    this.pendingReload = undefined;
    this.pendingAtTicks = Infinity;
    this.heldTicks = 0;
    this.epochNs = at;
  }

  /** The counting element's value (binary, before any BCD encoding). */
  count(nowNs: number): number {
    if (!this.counting) return this.idleCount;
    const n = this.reload;
    const m = this.modulus;
    const e = this.elapsed(nowNs);
    switch (this.mode) {
      case 2:
        return (n - (e % n)) % m;
      case 3: {
        // Counts down by two through each half of the period.
        const phase = e % n;
        const high = Math.ceil(n / 2);
        const value = phase < high ? n - 2 * phase : n - 2 * (phase - high);
        return (value & ~1) % m;
      }
      default: // 0, 1, 4, 5: down from N, then wrapping on
        return (((n - e) % m) + m) % m;
    }
  }

  out(nowNs: number): boolean {
    const mode = MODES[this.mode];
    if (!this.loaded) return mode.outBeforeCount;
    if (!this.counting) return this.mode === 0 ? false : true;
    const n = this.reload;
    const e = this.elapsed(nowNs);
    switch (this.mode) {
      case 0:
      case 1:
        return e >= n;
      case 2:
        return !this.gate || e % n !== n - 1;
      case 3:
        return !this.gate || e % n < Math.ceil(n / 2);
      default: // 4, 5: low for the one clock at terminal count
        return e !== n;
    }
  }

  status(nowNs: number): number {
    const nullCount = !this.loaded || !this.counting || this.pendingReload !== undefined;
    return (this.out(nowNs) ? PIT_STATUS_OUT : 0) | (nullCount ? PIT_STATUS_NULL_COUNT : 0) |
      (this.access << 4) | (this.modeBits << 1) | (this.bcd ? PIT_CW_BCD : 0);
  }

  displayed(nowNs: number): number {
    const c = this.count(nowNs);
    return this.bcd ? toBcd(c) : c;
  }

  program(controlWord: number, nowNs: number): void {
    this.idleCount = this.count(nowNs);
    this.access = (controlWord >> PIT_CW_ACCESS_SHIFT) & 3;
    this.modeBits = (controlWord >> 1) & 7;
    this.mode = this.modeBits >= 6 ? this.modeBits - 4 : this.modeBits;
    this.bcd = (controlWord & PIT_CW_BCD) !== 0;
    this.loaded = false;
    this.counting = false;
    this.pendingReload = undefined;
    this.pendingAtTicks = Infinity;
    this.writeLow = true;
    this.readLow = true;
    this.latchedStatus = undefined;
    this.latchedCount = [];
  }

  latchCount(nowNs: number): void {
    if (this.latchedCount.length > 0) return; // the first latch holds until read
    const v = this.displayed(nowNs);
    switch (this.access) {
      case PIT_ACCESS_LSB:
        this.latchedCount = [v & 0xff];
        break;
      case PIT_ACCESS_MSB:
        this.latchedCount = [(v >> 8) & 0xff];
        break;
      default:
        this.latchedCount = [v & 0xff, (v >> 8) & 0xff];
    }
  }

  latchStatus(nowNs: number): void {
    if (this.latchedStatus === undefined) this.latchedStatus = this.status(nowNs);
  }

  readByte(nowNs: number): number {
    if (this.latchedStatus !== undefined) {
      const s = this.latchedStatus;
      this.latchedStatus = undefined;
      return s;
    }
    const latched = this.latchedCount.shift();
    if (latched !== undefined) return latched;
    const v = this.displayed(nowNs);
    switch (this.access) {
      case PIT_ACCESS_LSB:
        return v & 0xff;
      case PIT_ACCESS_MSB:
        return (v >> 8) & 0xff;
      default: {
        const low = this.readLow;
        this.readLow = !low;
        return low ? v & 0xff : (v >> 8) & 0xff;
      }
    }
  }

  writeByte(value: number, nowNs: number): void {
    switch (this.access) {
      case PIT_ACCESS_LSB:
        this.load(value, nowNs);
        return;
      case PIT_ACCESS_MSB:
        this.load(value << 8, nowNs);
        return;
      default:
        if (this.writeLow) {
          this.lowByte = value;
          this.writeLow = false;
          if (this.mode === 0) {
            // Mode 0: the first byte stops the count and drops OUT.
            this.idleCount = this.count(nowNs);
            this.loaded = false;
            this.counting = false;
          }
        } else {
          this.writeLow = true;
          this.load(this.lowByte | (value << 8), nowNs);
        }
    }
  }

  load(raw: number, nowNs: number): void {
    let n = this.bcd ? fromBcd(raw) : raw;
    if (this.bcd && (n > 9999 || toBcd(n) !== raw)) {
      guestLog.log(`pit: count 0x${raw.toString(16)} is not valid BCD`);
      n %= 10000;
    }
    if (n === 0) n = this.modulus;
    if (this.counting && (this.mode === 2 || this.mode === 3)) {
      // A running rate generator finishes its period with the old count.
      const e = this.elapsed(nowNs);
      this.pendingReload = n;
      this.pendingAtTicks = e - (e % this.reload) + this.reload;
      return;
    }
    if (this.counting && MODES[this.mode].gateTriggers) {
      this.pendingReload = n; // a one-shot uses it from the next trigger on
      this.pendingAtTicks = Infinity;
      return;
    }
    this.reload = n;
    this.loaded = true;
    this.heldTicks = 0;
    this.epochNs = nowNs;
    // Modes 1 and 5 wait for a gate edge; 2 and 3 wait for the gate if it is low.
    this.counting = !(this.mode === 1 || this.mode === 5);
  }

  setGate(high: boolean, nowNs: number): void {
    if (high === this.gate) return;
    const mode = MODES[this.mode];
    if (!mode.gatePauses) {
      // Modes 1 and 5 count on with the gate low; only a rising edge matters.
      this.gate = high;
      if (high && this.loaded) this.#trigger(nowNs);
      return;
    }
    if (!high) {
      this.heldTicks = this.elapsed(nowNs); // freeze where it stands
      this.gate = false;
      return;
    }
    this.gate = true;
    this.epochNs = nowNs; // resume from heldTicks...
    if (mode.gateTriggers && this.loaded) this.#trigger(nowNs); // ...or restart (2, 3)
  }

  /** A gate rising edge: restart from the newest count. */
  #trigger(nowNs: number): void {
    if (this.pendingReload !== undefined) this.reload = this.pendingReload;
    this.pendingReload = undefined;
    this.pendingAtTicks = Infinity;
    this.counting = true;
    this.heldTicks = 0;
    this.epochNs = nowNs;
  }
}

/** The 8254 PIT; register at 0x40 with length 4. */
export class Pit8254 implements BusDevice, TimedDevice {
  readonly name = "pit";
  /** The clock counts are computed from (port B reads it too). */
  readonly clock: Clock;
  readonly #irq0: IrqLine;
  readonly #channels = [new PitChannel(true), new PitChannel(true), new PitChannel(false)];
  #irqLevel = false;
  /** When the next IRQ0 edge is due (periodic and strobe modes). */
  #irqNextNs = Infinity;
  #lastPulseNs = -Infinity;

  constructor(clock: Clock, irq0: IrqLine) {
    this.clock = clock;
    this.#irq0 = irq0;
    this.reset();
  }

  /**
   * The state a PC BIOS leaves: every channel in mode 3, binary, LSB then
   * MSB, count 65536 (18.2 Hz on channel 0).
   */
  reset(): void {
    const now = this.clock.nowNs();
    this.#channels.forEach((ch, i) => {
      ch.gate = i !== 2;
      ch.program(0x36, now);
      ch.idleCount = 0;
      ch.load(0, now);
    });
    this.#rearmIrq0(now);
  }

  read(offset: number, data: Uint8Array): void {
    const now = this.clock.nowNs();
    let value = 0xff; // offset 3: the control register is write-only
    if (offset < 3) {
      const ch = this.#channels[offset];
      ch.sync(now);
      value = ch.readByte(now);
    } else if (offset > 3) {
      guestLog.log(`pit: read at offset ${offset} beyond its 4 ports`);
    }
    data.fill(0);
    if (data.length > 0) data[0] = value;
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const now = this.clock.nowNs();
    const value = data[0];
    if (offset < 3) {
      const ch = this.#channels[offset];
      ch.sync(now);
      ch.writeByte(value, now);
      if (offset === 0) this.#rearmIrq0(now);
    } else if (offset === 3) {
      this.#controlWord(value, now);
    } else {
      guestLog.log(`pit: write at offset ${offset} beyond its 4 ports`);
    }
  }

  /** Channel `channel`'s gate input. */
  gate(channel: number): boolean {
    return this.#channels[channel].gate;
  }

  /** Drives channel `channel`'s gate (channel 2 through port B). */
  setGate(channel: number, high: boolean): void {
    const now = this.clock.nowNs();
    const ch = this.#channels[channel];
    ch.sync(now);
    ch.setGate(high, now);
    if (channel === 0) this.#rearmIrq0(now);
  }

  /** Channel `channel`'s OUT pin now. */
  out(channel: number): boolean {
    const now = this.clock.nowNs();
    const ch = this.#channels[channel];
    ch.sync(now);
    return ch.out(now);
  }

  poll(nowNs: number): void {
    const ch = this.#channels[0];
    ch.sync(nowNs);
    switch (MODES[ch.mode].irq) {
      case "follow-out":
        this.#setIrq(ch.out(nowNs));
        return;
      case "periodic":
      case "strobe":
        if (nowNs < this.#irqNextNs) return;
        this.#setIrq(true);
        this.#setIrq(false);
        this.#lastPulseNs = nowNs;
        this.#irqNextNs = MODES[ch.mode].irq === "periodic"
          ? this.#nextPeriodicEdge(nowNs + PIT_MIN_IRQ_INTERVAL_NS - 1)
          : Infinity;
    }
  }

  nextDeadlineNs(): number {
    const ch = this.#channels[0];
    if (MODES[ch.mode].irq !== "follow-out") return this.#irqNextNs;
    if (this.#irqLevel || !ch.counting) return Infinity;
    return ch.timeOfTicks(ch.reload);
  }

  #controlWord(value: number, now: number): void {
    const select = value >> PIT_CW_SELECT_SHIFT;
    if (select === 3) {
      this.#readBack(value, now);
      return;
    }
    const ch = this.#channels[select];
    ch.sync(now);
    if (((value >> PIT_CW_ACCESS_SHIFT) & 3) === 0) {
      ch.latchCount(now);
      return;
    }
    ch.program(value, now);
    if (select === 0) this.#rearmIrq0(now);
  }

  /** Read-back: latch count and/or status of every selected channel. */
  #readBack(value: number, now: number): void {
    for (let i = 0; i < 3; i++) {
      if (!(value & (2 << i))) continue;
      const ch = this.#channels[i];
      ch.sync(now);
      if (!(value & PIT_READBACK_NO_COUNT)) ch.latchCount(now);
      if (!(value & PIT_READBACK_NO_STATUS)) ch.latchStatus(now);
    }
  }

  /** Channel 0 was reprogrammed: OUT takes its new state, the next edge moves. */
  #rearmIrq0(now: number): void {
    const ch = this.#channels[0];
    switch (MODES[ch.mode].irq) {
      case "follow-out":
        this.#setIrq(ch.out(now));
        this.#irqNextNs = Infinity;
        return;
      case "periodic":
        this.#setIrq(false);
        this.#irqNextNs = this.#nextPeriodicEdge(
          Math.max(now, this.#lastPulseNs + PIT_MIN_IRQ_INTERVAL_NS - 1),
        );
        return;
      case "strobe":
        this.#setIrq(false);
        this.#irqNextNs = ch.counting && ch.elapsed(now) < ch.reload
          ? ch.timeOfTicks(ch.reload)
          : Infinity;
    }
  }

  /** The first rising OUT edge (end of a period) strictly after `t`. */
  #nextPeriodicEdge(t: number): number {
    const ch = this.#channels[0];
    if (!ch.counting || !ch.gate) return Infinity;
    const e = ch.elapsed(t);
    const pending = ch.pendingReload;
    if (pending !== undefined && ch.pendingAtTicks <= e) {
      // `t` lies beyond the switch to the new count: edges every `pending` from there.
      const since = e - ch.pendingAtTicks;
      return ch.timeOfTicks(ch.pendingAtTicks + since - (since % pending) + pending);
    }
    const edge = e - (e % ch.reload) + ch.reload;
    return ch.timeOfTicks(Math.min(edge, ch.pendingAtTicks));
  }

  #setIrq(level: boolean): void {
    if (level === this.#irqLevel) return;
    this.#irqLevel = level;
    this.#irq0.setLevel(level);
  }
}

/**
 * System control port B (0x61, length 1): channel 2's gate and speaker
 * enable, with channel 2's OUT and the refresh toggle to read back.
 */
export class Port61 implements BusDevice {
  readonly name = "port61";
  readonly #pit: Pit8254;
  #speaker = false;
  #nmiEnables = 0;

  constructor(pit: Pit8254) {
    this.#pit = pit;
  }

  read(_offset: number, data: Uint8Array): void {
    const refresh = Math.floor(this.#pit.clock.nowNs() / PORT61_REFRESH_HALF_PERIOD_NS) & 1;
    const value = (this.#pit.gate(2) ? PORT61_GATE2 : 0) | (this.#speaker ? PORT61_SPEAKER : 0) |
      this.#nmiEnables | (refresh ? PORT61_REFRESH : 0) | (this.#pit.out(2) ? PORT61_OUT2 : 0);
    data.fill(0);
    if (data.length > 0) data[0] = value;
  }

  write(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const value = data[0];
    this.#speaker = (value & PORT61_SPEAKER) !== 0;
    this.#nmiEnables = value & PORT61_NMI_ENABLES;
    this.#pit.setGate(2, (value & PORT61_GATE2) !== 0);
  }
}
