/**
 * The MC146818 real-time clock and its 128 bytes of CMOS RAM (index port
 * 0x70, data port 0x71: register with length 2; interrupt on IRQ8).
 *
 * | index | register |
 * | --- | --- |
 * | 0x00 / 0x01 | seconds / seconds alarm |
 * | 0x02 / 0x03 | minutes / minutes alarm |
 * | 0x04 / 0x05 | hours / hours alarm (12-hour mode: bit 7 = PM) |
 * | 0x06 - 0x09 | day of week (1 = Sunday), day of month, month, year (two digits) |
 * | 0x0A | A: UIP (bit 7, read-only), divider DV (6-4), rate select RS (3-0) |
 * | 0x0B | B: SET, PIE, AIE, UIE, SQWE, DM (1 = binary), 24/12 (1 = 24 h), DSE |
 * | 0x0C | C: IRQF, PF, AF, UF; read-only, cleared by reading |
 * | 0x0D | D: VRT (battery good), read-only |
 * | 0x0E - 0x7F | CMOS RAM; 0x32 is the century (a time register here) |
 *
 * Writing the index port also sets or clears NMI disable (bit 7); the index
 * is the low seven bits, so index 0x80 + n is register n.
 *
 * The date and time are the host wall clock (`now`, UTC) plus an offset the
 * guest changes by writing the time registers. While B.SET is set (or the
 * divider is held in reset) the time stands still and the guest writes it
 * field by field; clearing SET starts it again from what was written. The
 * wall clock has millisecond resolution, so the update-in-progress window
 * (244 us on the chip) is the last millisecond of each second here.
 *
 * Interrupts follow register C: PF at the register-A rate (from the
 * injected {@link Clock}), UF after each second's update, AF when the time
 * matches the alarm (an alarm byte 0xC0-0xFF matches anything). IRQ8 is high
 * while IRQF is set, and falls when the guest reads C.
 *
 * @example
 * ```ts
 * import { RtcMc146818 } from "./rtc_mc146818.ts";
 * const rtc = new RtcMc146818({
 *   clock: { nowNs: () => 0 }, irq: { setLevel() {} },
 *   memoryBelow4gBytes: 512 * 2 ** 20, memoryAbove4gBytes: 0,
 *   now: () => new Date("2024-05-06T07:08:09Z"),
 * });
 * rtc.write(0, Uint8Array.of(0x00)); // index: seconds
 * const data = new Uint8Array(1);
 * rtc.read(1, data); // data[0] === 0x09 (BCD)
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

/** CMOS index of the seconds register. */
export const RTC_SECONDS = 0x00;
/** CMOS index of the seconds alarm. */
export const RTC_SECONDS_ALARM = 0x01;
/** CMOS index of the minutes register. */
export const RTC_MINUTES = 0x02;
/** CMOS index of the minutes alarm. */
export const RTC_MINUTES_ALARM = 0x03;
/** CMOS index of the hours register. */
export const RTC_HOURS = 0x04;
/** CMOS index of the hours alarm. */
export const RTC_HOURS_ALARM = 0x05;
/** CMOS index of the day of week (1 = Sunday). */
export const RTC_DAY_OF_WEEK = 0x06;
/** CMOS index of the day of month. */
export const RTC_DAY_OF_MONTH = 0x07;
/** CMOS index of the month. */
export const RTC_MONTH = 0x08;
/** CMOS index of the two-digit year. */
export const RTC_YEAR = 0x09;
/** Register A. */
export const RTC_REG_A = 0x0a;
/** Register B. */
export const RTC_REG_B = 0x0b;
/** Register C. */
export const RTC_REG_C = 0x0c;
/** Register D. */
export const RTC_REG_D = 0x0d;
/** CMOS: base memory in KiB (2 bytes). */
export const CMOS_BASE_MEMORY_KIB = 0x15;
/** CMOS: extended memory above 1 MiB in KiB (2 bytes, capped at 0xFFFF). */
export const CMOS_EXTENDED_MEMORY_KIB = 0x17;
/** CMOS: the same as `CMOS_EXTENDED_MEMORY_KIB`, as the POST reports it. */
export const CMOS_EXTENDED_MEMORY_KIB_POST = 0x30;
/** CMOS: century (BCD or binary, like the other time registers). */
export const RTC_CENTURY = 0x32;
/** CMOS: memory above 16 MiB in 64 KiB units (2 bytes, capped). */
export const CMOS_MEMORY_ABOVE_16M_64K = 0x34;
/** CMOS: memory above 4 GiB in 64 KiB units (3 bytes, capped). */
export const CMOS_MEMORY_ABOVE_4G_64K = 0x5b;

/** A: update in progress. */
export const RTC_A_UIP = 0x80;
/** A: divider control field. */
export const RTC_A_DV_MASK = 0x70;
/** A: rate select field. */
export const RTC_A_RS_MASK = 0x0f;
/** B: halt updates so the time can be set. */
export const RTC_B_SET = 0x80;
/** B: periodic interrupt enable. */
export const RTC_B_PIE = 0x40;
/** B: alarm interrupt enable. */
export const RTC_B_AIE = 0x20;
/** B: update-ended interrupt enable. */
export const RTC_B_UIE = 0x10;
/** B: square-wave output enable. */
export const RTC_B_SQWE = 0x08;
/** B: binary (else BCD) data mode. */
export const RTC_B_DM_BINARY = 0x04;
/** B: 24-hour (else 12-hour) mode. */
export const RTC_B_24H = 0x02;
/** B: daylight saving enable (stored, not acted on). */
export const RTC_B_DSE = 0x01;
/** C: interrupt request flag. */
export const RTC_C_IRQF = 0x80;
/** C: periodic interrupt flag. */
export const RTC_C_PF = 0x40;
/** C: alarm flag. */
export const RTC_C_AF = 0x20;
/** C: update-ended flag. */
export const RTC_C_UF = 0x10;
/** D: valid RAM and time (battery good). */
export const RTC_D_VRT = 0x80;
/** Index port bit 7: NMI disable. */
export const RTC_NMI_DISABLE = 0x80;

/** How long before each second's update UIP reads as set, on the chip. */
export const RTC_UIP_LEAD_NS = 244_000;

/** The UIP window in whole milliseconds of wall-clock time. */
const UIP_WINDOW_MS = Math.ceil(RTC_UIP_LEAD_NS / 1e6);
/** Register A after the BIOS: 32.768 kHz time base, 1024 Hz periodic rate. */
const REG_A_DEFAULT = 0x26;
/** Register B after the BIOS: BCD, 24-hour. */
const REG_B_DEFAULT = RTC_B_24H;
/** How far back the alarm is checked when updates were not polled in time. */
const ALARM_LOOKBACK_S = 60;
/** Alarm bytes from here up match any value ("don't care"). */
const ALARM_DONT_CARE = 0xc0;

/**
 * The periodic interrupt period for rate select RS with the 32.768 kHz time
 * base: RS 1 and 2 act as 8 and 9, RS 3-15 give 2^(RS-1) / 32768 s.
 */
function periodNsForRate(rs: number): number | undefined {
  if (rs === 0) return undefined;
  const shift = rs <= 2 ? rs + 6 : rs - 1;
  return (2 ** shift / 32768) * 1e9;
}

/** Broken-down guest time (UTC), with the weekday as the chip counts it (1 = Sunday). */
interface TimeFields {
  seconds: number;
  minutes: number;
  hours: number;
  weekday: number;
  day: number;
  month: number;
  year: number;
}

function fieldsOf(ms: number): TimeFields {
  const d = new Date(ms);
  return {
    seconds: d.getUTCSeconds(),
    minutes: d.getUTCMinutes(),
    hours: d.getUTCHours(),
    weekday: d.getUTCDay() + 1,
    day: d.getUTCDate(),
    month: d.getUTCMonth() + 1,
    year: d.getUTCFullYear(),
  };
}

function msOf(f: TimeFields): number {
  const d = new Date(0);
  // setUTCFullYear, not Date.UTC: years 0-99 must not become 19xx.
  d.setUTCFullYear(f.year, f.month - 1, f.day);
  d.setUTCHours(f.hours, f.minutes, f.seconds, 0);
  return d.getTime();
}

/** Construction options of {@link RtcMc146818}. */
export interface RtcOptions {
  /** Monotonic clock for the periodic interrupt and deadlines. */
  clock: Clock;
  /** IRQ8. */
  irq: IrqLine;
  /** Guest RAM below 4 GiB, for the CMOS memory-size bytes. */
  memoryBelow4gBytes: number;
  /** Guest RAM above 4 GiB. */
  memoryAbove4gBytes: number;
  /** The host wall clock (default: the current time). */
  now?: () => Date;
}

/** The MC146818 RTC with CMOS RAM; see the module documentation. */
export class RtcMc146818 implements BusDevice, TimedDevice {
  readonly name = "rtc";
  readonly #clock: Clock;
  readonly #irq: IrqLine;
  readonly #now: () => Date;
  readonly #cmos = new Uint8Array(128);
  #index = 0;
  #nmiDisabled = false;
  /** Guest time minus host wall time, in ms. */
  #offsetMs = 0;
  /** The guest time while updates are halted (SET or divider reset). */
  #frozenMs: number | undefined;
  /** Added to the computed weekday (a guest may write any day of week). */
  #weekdayDelta = 0;
  /** PF, AF, UF. */
  #flags = 0;
  #lastUpdateSecond: number;
  #lastPeriod = 0;
  #irqLevel = false;

  constructor(options: RtcOptions) {
    this.#clock = options.clock;
    this.#irq = options.irq;
    this.#now = options.now ?? (() => new Date());
    this.#cmos[RTC_REG_A] = REG_A_DEFAULT;
    this.#cmos[RTC_REG_B] = REG_B_DEFAULT;
    this.#fillMemorySize(options.memoryBelow4gBytes, options.memoryAbove4gBytes);
    this.#lastUpdateSecond = Math.floor(this.#guestMs() / 1000);
    this.#restartPeriodic(this.#clock.nowNs());
  }

  /**
   * Sets CMOS byte `index` (0x0E-0x7F, the non-clock bytes) before the guest
   * runs: what the firmware reads, such as the CPU count at 0x5F.
   */
  setCmosByte(index: number, value: number): void {
    if (!Number.isInteger(index) || index < RTC_REG_D + 1 || index > 0x7f) {
      throw new RangeError(`CMOS index "0x${index.toString(16)}" is not a non-clock byte`);
    }
    this.#cmos[index] = value & 0xff;
  }

  /** Whether the guest last wrote the index port with bit 7 (NMI disable) set. */
  get nmiDisabled(): boolean {
    return this.#nmiDisabled;
  }

  /** The guest's current date and time (UTC fields as the guest set them). */
  guestTime(): Date {
    return new Date(this.#guestMs());
  }

  read(offset: number, data: Uint8Array): void {
    let value = 0xff; // offset 0: the index port is write-only
    if (offset === 1) {
      this.#advance(this.#clock.nowNs());
      value = this.#readRegister(this.#index);
      this.#updateIrq();
    } else if (offset > 1) {
      guestLog.log(`rtc: read at offset ${offset} beyond its two ports`);
    }
    data.fill(0);
    if (data.length > 0) data[0] = value;
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const value = data[0];
    if (offset === 0) {
      this.#index = value & 0x7f;
      this.#nmiDisabled = (value & RTC_NMI_DISABLE) !== 0;
    } else if (offset === 1) {
      const now = this.#clock.nowNs();
      this.#advance(now);
      this.#writeRegister(this.#index, value, now);
      this.#updateIrq();
    } else {
      guestLog.log(`rtc: write at offset ${offset} beyond its two ports`);
    }
  }

  poll(nowNs: number): void {
    this.#advance(nowNs);
    this.#updateIrq();
  }

  nextDeadlineNs(): number {
    if (this.#irqLevel) return Infinity; // nothing changes until the guest reads C
    const b = this.#cmos[RTC_REG_B];
    let deadline = Infinity;
    const period = this.#periodNs();
    if ((b & RTC_B_PIE) && period !== undefined) deadline = (this.#lastPeriod + 1) * period;
    if ((b & (RTC_B_UIE | RTC_B_AIE)) && this.#updating()) {
      const ms = this.#guestMs();
      const now = this.#clock.nowNs();
      const next = Math.floor(ms / 1000) > this.#lastUpdateSecond
        ? now
        : now + (1000 - (((ms % 1000) + 1000) % 1000)) * 1e6;
      deadline = Math.min(deadline, next);
    }
    return deadline;
  }

  #fillMemorySize(below4g: number, above4g: number): void {
    const put = (index: number, bytes: number, value: number) => {
      for (let i = 0; i < bytes; i++) this.#cmos[index + i] = Math.floor(value / 256 ** i) & 0xff;
    };
    const kib = 1024;
    const mib = 1024 * kib;
    put(CMOS_BASE_MEMORY_KIB, 2, 640);
    const extendedKib = Math.min(0xffff, Math.max(0, Math.floor((below4g - mib) / kib)));
    put(CMOS_EXTENDED_MEMORY_KIB, 2, extendedKib);
    put(CMOS_EXTENDED_MEMORY_KIB_POST, 2, extendedKib);
    const above16m = Math.min(0xffff, Math.max(0, Math.floor((below4g - 16 * mib) / 65536)));
    put(CMOS_MEMORY_ABOVE_16M_64K, 2, above16m);
    put(CMOS_MEMORY_ABOVE_4G_64K, 3, Math.min(0xffffff, Math.floor(above4g / 65536)));
  }

  // --- time base -----------------------------------------------------------

  #dividerRunning(): boolean {
    // DV 000, 001, 010 run (time bases of 4.19 MHz, 1.05 MHz, 32.768 kHz); 11x hold it in reset.
    return (this.#cmos[RTC_REG_A] & RTC_A_DV_MASK) <= 0x20;
  }

  #updating(): boolean {
    return this.#frozenMs === undefined;
  }

  #guestMs(): number {
    return this.#frozenMs ?? this.#now().getTime() + this.#offsetMs;
  }

  /** Halts or resumes the time after a change to B.SET or the divider. */
  #applyRunState(): void {
    const run = !(this.#cmos[RTC_REG_B] & RTC_B_SET) && this.#dividerRunning();
    if (run && this.#frozenMs !== undefined) {
      this.#offsetMs = this.#frozenMs - this.#now().getTime();
      this.#frozenMs = undefined;
      this.#lastUpdateSecond = Math.floor(this.#guestMs() / 1000);
    } else if (!run && this.#frozenMs === undefined) {
      this.#frozenMs = this.#guestMs();
    }
  }

  #setGuestMs(ms: number): void {
    if (this.#frozenMs !== undefined) {
      this.#frozenMs = ms;
    } else {
      this.#offsetMs = ms - this.#now().getTime();
      this.#lastUpdateSecond = Math.floor(ms / 1000); // setting the time is not an update
    }
  }

  #periodNs(): number | undefined {
    if (!this.#dividerRunning()) return undefined;
    return periodNsForRate(this.#cmos[RTC_REG_A] & RTC_A_RS_MASK);
  }

  #restartPeriodic(nowNs: number): void {
    const period = this.#periodNs();
    this.#lastPeriod = period === undefined ? 0 : Math.floor(nowNs / period);
  }

  /** Sets the flags for what happened since the last call. */
  #advance(nowNs: number): void {
    const period = this.#periodNs();
    if (period !== undefined) {
      const k = Math.floor(nowNs / period);
      if (k > this.#lastPeriod) {
        this.#flags |= RTC_C_PF;
        this.#lastPeriod = k;
      }
    }
    if (this.#updating()) {
      const second = Math.floor(this.#guestMs() / 1000);
      if (second > this.#lastUpdateSecond) {
        this.#flags |= RTC_C_UF;
        const from = Math.max(this.#lastUpdateSecond + 1, second - ALARM_LOOKBACK_S + 1);
        for (let s = from; s <= second; s++) {
          if (this.#alarmMatches(fieldsOf(s * 1000))) {
            this.#flags |= RTC_C_AF;
            break;
          }
        }
      }
      // A host clock stepped backwards just restarts the count from here.
      this.#lastUpdateSecond = second;
    }
  }

  #alarmMatches(f: TimeFields): boolean {
    const match = (alarm: number, value: number) => alarm >= ALARM_DONT_CARE || alarm === value;
    return match(this.#cmos[RTC_SECONDS_ALARM], this.#encode(f.seconds)) &&
      match(this.#cmos[RTC_MINUTES_ALARM], this.#encode(f.minutes)) &&
      match(this.#cmos[RTC_HOURS_ALARM], this.#encodeHours(f.hours));
  }

  #irqFlag(): boolean {
    const b = this.#cmos[RTC_REG_B];
    return ((this.#flags & RTC_C_PF) !== 0 && (b & RTC_B_PIE) !== 0) ||
      ((this.#flags & RTC_C_AF) !== 0 && (b & RTC_B_AIE) !== 0) ||
      ((this.#flags & RTC_C_UF) !== 0 && (b & RTC_B_UIE) !== 0);
  }

  #updateIrq(): void {
    const level = this.#irqFlag();
    if (level !== this.#irqLevel) {
      this.#irqLevel = level;
      this.#irq.setLevel(level);
    }
  }

  // --- data formats --------------------------------------------------------

  #binary(): boolean {
    return (this.#cmos[RTC_REG_B] & RTC_B_DM_BINARY) !== 0;
  }

  #encode(value: number): number {
    return this.#binary() ? value : (Math.floor(value / 10) << 4) | (value % 10);
  }

  #decode(raw: number): number {
    return this.#binary() ? raw : (raw >> 4) * 10 + (raw & 0x0f);
  }

  #encodeHours(hours: number): number {
    if (this.#cmos[RTC_REG_B] & RTC_B_24H) return this.#encode(hours);
    const pm = hours >= 12 ? 0x80 : 0;
    return this.#encode(hours % 12 || 12) | pm;
  }

  #decodeHours(raw: number): number {
    if (this.#cmos[RTC_REG_B] & RTC_B_24H) return this.#decode(raw);
    return (this.#decode(raw & 0x7f) % 12) + (raw & 0x80 ? 12 : 0);
  }

  // --- registers -----------------------------------------------------------

  #readRegister(index: number): number {
    switch (index) {
      case RTC_SECONDS:
      case RTC_MINUTES:
      case RTC_HOURS:
      case RTC_DAY_OF_WEEK:
      case RTC_DAY_OF_MONTH:
      case RTC_MONTH:
      case RTC_YEAR:
      case RTC_CENTURY:
        return this.#readTime(index, fieldsOf(this.#guestMs()));
      case RTC_REG_A:
        return (this.#cmos[RTC_REG_A] & ~RTC_A_UIP) | (this.#updateInProgress() ? RTC_A_UIP : 0);
      case RTC_REG_C: {
        const value = this.#flags | (this.#irqFlag() ? RTC_C_IRQF : 0);
        this.#flags = 0;
        return value;
      }
      case RTC_REG_D:
        return RTC_D_VRT;
      default:
        return this.#cmos[index];
    }
  }

  #updateInProgress(): boolean {
    if (!this.#updating()) return false;
    const intoSecondMs = ((this.#guestMs() % 1000) + 1000) % 1000;
    return intoSecondMs >= 1000 - UIP_WINDOW_MS;
  }

  #readTime(index: number, f: TimeFields): number {
    switch (index) {
      case RTC_SECONDS:
        return this.#encode(f.seconds);
      case RTC_MINUTES:
        return this.#encode(f.minutes);
      case RTC_HOURS:
        return this.#encodeHours(f.hours);
      case RTC_DAY_OF_WEEK:
        return this.#encode(((f.weekday - 1 + this.#weekdayDelta) % 7) + 1);
      case RTC_DAY_OF_MONTH:
        return this.#encode(f.day);
      case RTC_MONTH:
        return this.#encode(f.month);
      case RTC_YEAR:
        return this.#encode(((f.year % 100) + 100) % 100);
      default: // RTC_CENTURY
        return this.#encode(Math.floor(f.year / 100) % 100);
    }
  }

  #writeRegister(index: number, value: number, nowNs: number): void {
    switch (index) {
      case RTC_SECONDS:
      case RTC_MINUTES:
      case RTC_HOURS:
      case RTC_DAY_OF_WEEK:
      case RTC_DAY_OF_MONTH:
      case RTC_MONTH:
      case RTC_YEAR:
      case RTC_CENTURY:
        this.#writeTime(index, value);
        return;
      case RTC_REG_A: {
        const oldPeriod = this.#periodNs();
        this.#cmos[RTC_REG_A] = value & ~RTC_A_UIP;
        if (this.#periodNs() !== oldPeriod) this.#restartPeriodic(nowNs);
        this.#applyRunState();
        return;
      }
      case RTC_REG_B:
        // Setting SET also clears UIE, as on the chip.
        this.#cmos[RTC_REG_B] = value & RTC_B_SET ? value & ~RTC_B_UIE : value;
        this.#applyRunState();
        return;
      case RTC_REG_C:
      case RTC_REG_D:
        guestLog.log(`rtc: write of 0x${value.toString(16)} to read-only register ${index}`);
        return;
      default:
        this.#cmos[index] = value;
    }
  }

  #writeTime(index: number, value: number): void {
    const f = fieldsOf(this.#guestMs());
    switch (index) {
      case RTC_SECONDS:
        f.seconds = this.#decode(value);
        break;
      case RTC_MINUTES:
        f.minutes = this.#decode(value);
        break;
      case RTC_HOURS:
        f.hours = this.#decodeHours(value);
        break;
      case RTC_DAY_OF_WEEK:
        // Not derived from the date on the chip: remember the guest's choice.
        this.#weekdayDelta = (((this.#decode(value) - f.weekday) % 7) + 7) % 7;
        return;
      case RTC_DAY_OF_MONTH:
        f.day = this.#decode(value);
        break;
      case RTC_MONTH:
        f.month = this.#decode(value);
        break;
      case RTC_YEAR:
        f.year = Math.floor(f.year / 100) * 100 + this.#decode(value);
        break;
      default: // RTC_CENTURY
        f.year = this.#decode(value) * 100 + (f.year % 100);
    }
    // Out-of-range fields (seconds = 0x99, month 0) roll over like Date does: no throw.
    const ms = msOf(f);
    if (Number.isNaN(ms)) {
      guestLog.log(`rtc: time write 0x${value.toString(16)} to register ${index} ignored`);
      return;
    }
    this.#setGuestMs(ms);
  }
}
