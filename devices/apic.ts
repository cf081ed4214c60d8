/**
 * The APIC interrupt architecture: the APIC bus and the local APICs'
 * shareable register files, the local APIC (one per vCPU), the I/O APIC
 * (82093AA) and the MSI-X table whose messages go onto the same bus. One
 * module for the four, which only make sense together (and one module
 * for the vCPU worker to load). Each section keeps its own description.
 *
 * @module
 */

import {
  type BusDevice,
  type Clock,
  getLe,
  guestLog,
  type IrqLine,
  setLe,
  type TimedDevice,
} from "../core/device.ts";

// ---- the APIC bus ----

/*
 * The APIC bus: interrupt messages from a local APIC's ICR or an I/O APIC
 * redirection entry, resolved to the local APICs they address.
 *
 * Every local APIC keeps its registers in an {@link ApicRegisterFile}, an
 * Int32Array that may sit on a SharedArrayBuffer: the owning vCPU thread is
 * the only one that changes it, except that any thread may *accept* an
 * interrupt into it (atomic OR into IRR/TMR, atomic pending flags) and read
 * its addressing registers (ID, LDR, DFR, PPR). So every thread can hold its
 * own `ApicBus` over the same files, and delivery never needs a lock.
 *
 * Destinations (SDM vol. 3 10.6.2): physical mode matches the APIC ID, 0xFF
 * is a broadcast; logical mode matches LDR against DFR's model, flat
 * (bitmap in bits 31-24) or cluster (cluster in bits 31-28, member bitmap in
 * 27-24). Lowest priority picks the addressed APIC with the lowest
 * priority (PPR), ties going to the lowest APIC ID.
 */

/** Delivery modes (ICR bits 10-8, redirection entry bits 10-8). */
export const DeliveryMode = {
  FIXED: 0,
  LOWEST: 1,
  SMI: 2,
  NMI: 4,
  INIT: 5,
  STARTUP: 6,
  EXTINT: 7,
} as const;

/** Destination shorthands (ICR bits 19-18). */
export const Shorthand = { NONE: 0, SELF: 1, ALL: 2, ALL_BUT_SELF: 3 } as const;

/** One interrupt message on the bus. */
export interface ApicMessage {
  vector: number;
  /** A {@link DeliveryMode}. */
  mode: number;
  /** Logical (true) or physical (false) destination. */
  logical: boolean;
  /** 8-bit destination (APIC ID, or logical bitmap). */
  dest: number;
  /** Level-triggered (true) or edge (false). */
  level: boolean;
  /** The level bit: false only for the INIT level de-assert message. */
  assert: boolean;
  /** A {@link Shorthand} (NONE for I/O APIC messages). */
  shorthand: number;
  /** The sending APIC's ID (for SELF / ALL_BUT_SELF), or -1. */
  source: number;
}

/**
 * The APIC bus message an MSI write (address 0xFEExxxxx, data) stands for
 * (SDM vol. 3 10.11): destination ID in address bits 19-12, logical
 * destination mode bit 2; vector, delivery mode, level and trigger in the
 * data. Undefined for an address outside the interrupt window (a DMA write
 * we do not perform).
 */
export function msiMessage(address: number, data: number): ApicMessage | undefined {
  if (Math.floor(address / 0x100000) !== 0xfee) return undefined;
  return {
    vector: data & 0xff,
    mode: (data >> 8) & 7,
    logical: (address & 4) !== 0,
    dest: (address >> 12) & 0xff,
    level: (data & (1 << 15)) !== 0,
    assert: true,
    shorthand: Shorthand.NONE,
    source: -1,
  };
}

/** Word indexes (register offset / 16) into an {@link ApicRegisterFile}. */
export const R = {
  ID: 0x2,
  VERSION: 0x3,
  TPR: 0x8,
  APR: 0x9,
  PPR: 0xa,
  EOI: 0xb,
  RRD: 0xc,
  LDR: 0xd,
  DFR: 0xe,
  SVR: 0xf,
  ISR: 0x10,
  TMR: 0x18,
  IRR: 0x20,
  ESR: 0x28,
  ICR_LO: 0x30,
  ICR_HI: 0x31,
  LVT_TIMER: 0x32,
  LVT_THERMAL: 0x33,
  LVT_PERF: 0x34,
  LVT_LINT0: 0x35,
  LVT_LINT1: 0x36,
  LVT_ERROR: 0x37,
  TIMER_INITIAL: 0x38,
  TIMER_CURRENT: 0x39,
  TIMER_DIVIDE: 0x3e,
} as const;

/** Words past the 64 registers: pending events set by other threads. */
const PENDING = 64;
const SIPI = 65;
/** Pending event bits. */
export const Pending = { INIT: 1, NMI: 2, EXTINT: 4, SMI: 8 } as const;
const WORDS = 66;

/**
 * A local APIC's register state, shareable between threads (see module doc).
 */
export class ApicRegisterFile {
  readonly words: Int32Array;

  /** Bytes one register file needs (for a SharedArrayBuffer). */
  static readonly BYTES = WORDS * 4;

  constructor(buffer?: SharedArrayBuffer | ArrayBuffer, byteOffset = 0) {
    this.words = new Int32Array(buffer ?? new ArrayBuffer(WORDS * 4), byteOffset, WORDS);
  }

  /** The APIC ID (bits 31-24 of the ID register). */
  get id(): number {
    return Atomics.load(this.words, R.ID) >>> 24;
  }

  /** Whether this APIC is addressed by a destination (not shorthand). */
  matches(logical: boolean, dest: number): boolean {
    if (!logical) return dest === 0xff || dest === this.id;
    const ldr = Atomics.load(this.words, R.LDR) >>> 24;
    const flat = (Atomics.load(this.words, R.DFR) >>> 28) === 0xf;
    if (flat) return (ldr & dest) !== 0;
    if ((dest >>> 4) === 0xf) return (ldr & dest & 0xf) !== 0; // broadcast to all clusters
    return (ldr >>> 4) === (dest >>> 4) && (ldr & dest & 0xf) !== 0;
  }

  /** Marks `vector` requested (IRR) and its trigger mode (TMR). */
  acceptVector(vector: number, level: boolean): void {
    const word = vector >>> 5;
    const bit = 1 << (vector & 31);
    if (level) Atomics.or(this.words, R.TMR + word, bit);
    else Atomics.and(this.words, R.TMR + word, ~bit);
    Atomics.or(this.words, R.IRR + word, bit);
  }

  /** Flags a non-vectored event (INIT, NMI, ExtINT, SMI). */
  raise(pending: number): void {
    Atomics.or(this.words, PENDING, pending);
  }

  /** Records a start-up IPI's vector. */
  startup(vector: number): void {
    Atomics.store(this.words, SIPI, 0x100 | vector);
  }

  /** Takes (and clears) the pending event bits. */
  takePending(): number {
    return Atomics.load(this.words, PENDING) === 0 ? 0 : Atomics.exchange(this.words, PENDING, 0);
  }

  /** Takes the pending start-up vector, or -1. */
  takeStartup(): number {
    const v = Atomics.exchange(this.words, SIPI, 0);
    return v === 0 ? -1 : v & 0xff;
  }

  /** Whether anything was delivered that the owner has not looked at. */
  hasPending(): boolean {
    return Atomics.load(this.words, PENDING) !== 0 || Atomics.load(this.words, SIPI) !== 0;
  }

  /** Reads register word `index`. */
  get(index: number): number {
    return Atomics.load(this.words, index) >>> 0;
  }

  /** Writes register word `index` (owner only). */
  set(index: number, value: number): void {
    Atomics.store(this.words, index, value | 0);
  }
}

/** Routes {@link ApicMessage}s to the local APICs and wakes their vCPUs. */
export class ApicBus {
  readonly #apics: ApicRegisterFile[];
  readonly #notify: (index: number) => void;

  /**
   * @param apics one register file per vCPU, by vCPU index
   * @param notify called with a vCPU index after something was delivered to it
   *   (the machine kicks that vCPU out of `run()` or wakes it from HLT)
   */
  constructor(apics: ApicRegisterFile[], notify: (index: number) => void = () => {}) {
    this.#apics = apics;
    this.#notify = notify;
  }

  /** The vCPU indexes `m` addresses. */
  targets(m: ApicMessage): number[] {
    const all = this.#apics.map((_, i) => i);
    switch (m.shorthand) {
      case Shorthand.SELF:
        return all.filter((i) => this.#apics[i].id === m.source);
      case Shorthand.ALL:
        return all;
      case Shorthand.ALL_BUT_SELF:
        return all.filter((i) => this.#apics[i].id !== m.source);
    }
    const hit = all.filter((i) => this.#apics[i].matches(m.logical, m.dest));
    if (m.mode !== DeliveryMode.LOWEST || hit.length < 2) return hit;
    let best = hit[0];
    for (const i of hit) {
      const p = this.#apics[i].get(R.PPR);
      const b = this.#apics[best].get(R.PPR);
      if (p < b || (p === b && this.#apics[i].id < this.#apics[best].id)) best = i;
    }
    return [best];
  }

  /** Delivers `m`; returns how many APICs accepted it (0: logged, dropped). */
  deliver(m: ApicMessage): number {
    const targets = this.targets(m);
    if (targets.length === 0) {
      // A broadcast on a uniprocessor reaches nobody, legitimately.
      if (m.shorthand === Shorthand.ALL_BUT_SELF) return 0;
      guestLog.log(() =>
        `apic: interrupt 0x${m.vector.toString(16)} (mode ${m.mode}) to absent ` +
        `${m.logical ? "logical" : "physical"} destination 0x${m.dest.toString(16)} dropped`
      );
      return 0;
    }
    for (const i of targets) {
      const apic = this.#apics[i];
      switch (m.mode) {
        case DeliveryMode.FIXED:
        case DeliveryMode.LOWEST:
          apic.acceptVector(m.vector, m.level);
          break;
        case DeliveryMode.NMI:
          apic.raise(Pending.NMI);
          break;
        case DeliveryMode.SMI:
          apic.raise(Pending.SMI);
          break;
        case DeliveryMode.EXTINT:
          apic.raise(Pending.EXTINT);
          break;
        case DeliveryMode.INIT:
          // The level de-assert form only synchronizes arbitration IDs.
          if (!m.assert && m.level) continue;
          apic.raise(Pending.INIT);
          break;
        case DeliveryMode.STARTUP:
          apic.startup(m.vector);
          break;
        default:
          guestLog.log(`apic: reserved delivery mode ${m.mode} ignored`);
          return 0;
      }
      this.#notify(i);
    }
    return targets.length;
  }
}

// ---- the local APIC ----

/*
 * The local APIC (xAPIC, memory-mapped at 0xFEE00000), one per vCPU.
 *
 * Registers sit at 16-byte strides and are accessed as aligned 32-bit words
 * (other accesses: reads 0, writes ignored, logged). The model:
 *
 * | offset | register | notes |
 * | --- | --- | --- |
 * | 0x020 | ID | bits 31-24 |
 * | 0x030 | version | 0x14, max LVT entry 5 (six LVTs, no CMCI) |
 * | 0x080 / 0x0A0 | TPR / PPR | PPR = max(TPR, class of the highest ISR) |
 * | 0x0B0 | EOI | clears the highest ISR bit; a level vector is broadcast to the I/O APICs |
 * | 0x0D0 / 0x0E0 | LDR / DFR | logical destination, flat or cluster model |
 * | 0x0F0 | spurious vector | bit 8 software enable (clearing it masks every LVT) |
 * | 0x100-0x270 | ISR, TMR, IRR | read only |
 * | 0x280 | ESR | a write latches the errors seen since the last write |
 * | 0x300 / 0x310 | ICR | a low write sends; delivery is instant, so delivery status reads 0 |
 * | 0x320-0x370 | LVT timer, thermal, perf, LINT0, LINT1, error | |
 * | 0x380 / 0x390 / 0x3E0 | timer initial / current count / divide | |
 *
 * The timer counts on the injectable {@link Clock} at {@link LAPIC_TIMER_HZ}
 * divided by the divide configuration, one-shot or periodic (a periodic
 * period is never shorter than {@link LAPIC_MIN_PERIOD_NS}, like KVM's
 * clamp, so a guest cannot make the host spin). TSC-deadline mode is not
 * offered (CPUID leaf 1 ECX bit 24 stays clear), so LVT timer bit 18 is
 * reserved.
 *
 * Threads: only the owning vCPU's thread calls this class; other threads
 * reach it only through {@link ApicRegisterFile.acceptVector} and the
 * pending flags (see the APIC bus above), which the owner folds in.
 *
 *  *
 */

/** The local APIC's physical base (IA32_APIC_BASE default). */
export const LAPIC_BASE = 0xfee00000;
/** Bytes of its MMIO window. */
export const LAPIC_SIZE = 0x1000;
/** The timer's input clock (the "bus clock"): 1 GHz, as KVM's and QEMU's. */
export const LAPIC_TIMER_HZ = 1_000_000_000;
/** The shortest periodic timer period accepted (KVM clamps to 200 us by default; we allow 100). */
export const LAPIC_MIN_PERIOD_NS = 100_000;
/** Version register: version 0x14, max LVT entry index 5. */
export const LAPIC_VERSION = 0x00050014;

/** LVT bits. */
export const LVT_MASKED = 1 << 16;
const LVT_TIMER_PERIODIC = 1 << 17;
const LVT_LEVEL = 1 << 15;
const LVT_REMOTE_IRR = 1 << 14;
/** SVR bit 8: APIC software enable. */
export const SVR_ENABLE = 1 << 8;
/** ESR bits. */
export const ESR = {
  SEND_ILLEGAL_VECTOR: 1 << 5,
  RECEIVE_ILLEGAL_VECTOR: 1 << 6,
  ILLEGAL_REGISTER: 1 << 7,
} as const;

/** Writable bits of each register (word index -> mask); absent = read only or special. */
const WRITABLE: Record<number, number> = {
  [R.ID]: 0xff000000,
  [R.TPR]: 0xff,
  [R.LDR]: 0xff000000,
  [R.ICR_HI]: 0xff000000,
  [R.LVT_TIMER]: 0x300ff, // vector, mask, periodic (bit 18, TSC deadline, not offered)
  [R.LVT_THERMAL]: 0x107ff,
  [R.LVT_PERF]: 0x107ff,
  [R.LVT_LINT0]: 0x1a7ff, // vector, mode, polarity, trigger, mask (remote IRR is read only)
  [R.LVT_LINT1]: 0x1a7ff,
  [R.LVT_ERROR]: 0x100ff,
};
const LVTS = [R.LVT_TIMER, R.LVT_THERMAL, R.LVT_PERF, R.LVT_LINT0, R.LVT_LINT1, R.LVT_ERROR];
/** Registers a read may see (the rest is reserved: illegal register address). */
const READABLE = new Set<number>([
  R.ID,
  R.VERSION,
  R.TPR,
  R.APR,
  R.PPR,
  R.RRD,
  R.LDR,
  R.DFR,
  R.SVR,
  ...Array.from({ length: 24 }, (_, i) => R.ISR + i),
  R.ESR,
  R.ICR_LO,
  R.ICR_HI,
  ...LVTS,
  R.TIMER_INITIAL,
  R.TIMER_CURRENT,
  R.TIMER_DIVIDE,
]);

/** What building a local APIC needs. */
export interface LocalApicOptions {
  /** The APIC ID (also the initial APIC ID CPUID reports). */
  id: number;
  /** Its register file (shared with the {@link ApicBus}es of other threads). */
  regs: ApicRegisterFile;
  clock: Clock;
  /** Where ICR messages go. */
  bus: ApicBus;
  /** The bootstrap processor: LINT0 starts in ExtINT mode (virtual wire, as KVM's reset quirk). */
  bsp?: boolean;
  /** Called on EOI of a level-triggered vector (the I/O APICs clear remote IRR). */
  eoiBroadcast?: (vector: number) => void;
}

/** Events other CPUs delivered, for the vCPU's run loop. */
export interface ApicEvents {
  init: boolean;
  /** A start-up IPI's vector, or -1. */
  startup: number;
  nmi: boolean;
  extint: boolean;
}

/** The divide configuration register's value -> divisor (bits 3, 1, 0). */
export function timerDivisor(dcr: number): number {
  const code = ((dcr & 8) >> 1) | (dcr & 3);
  return code === 7 ? 1 : 2 << code;
}

function highestBit(regs: ApicRegisterFile, base: number): number {
  for (let w = 7; w >= 0; w--) {
    const v = regs.get(base + w);
    if (v !== 0) return w * 32 + 31 - Math.clz32(v);
  }
  return -1;
}

/** One local APIC (see the module doc). */
export class LocalApic implements BusDevice, TimedDevice {
  readonly name: string;
  readonly regs: ApicRegisterFile;
  readonly #clock: Clock;
  readonly #bus: ApicBus;
  readonly #bsp: boolean;
  readonly #eoi: (vector: number) => void;
  /** Errors since the last ESR write (the register shows the previous batch). */
  #errors = 0;
  /** When the current count was last (re)loaded, and when it reaches 0 (Infinity: stopped). */
  #startNs = 0;
  #deadlineNs = Infinity;
  /** How many times the timer fired (tests, `vmmctl` statistics). */
  timerFired = 0;

  constructor(options: LocalApicOptions) {
    this.name = `lapic${options.id}`;
    this.regs = options.regs;
    this.#clock = options.clock;
    this.#bus = options.bus;
    this.#bsp = options.bsp ?? options.id === 0;
    this.#eoi = options.eoiBroadcast ?? (() => {});
    this.regs.set(R.ID, (options.id & 0xff) << 24);
    this.reset();
  }

  /** Power-up / INIT state (the ID survives). */
  reset(): void {
    const id = this.regs.get(R.ID);
    for (let i = 0; i < 64; i++) this.regs.set(i, 0);
    this.regs.set(R.ID, id);
    this.regs.set(R.VERSION, LAPIC_VERSION);
    this.regs.set(R.DFR, 0xffffffff);
    this.regs.set(R.SVR, 0xff);
    for (const lvt of LVTS) this.regs.set(lvt, LVT_MASKED);
    if (this.#bsp) this.regs.set(R.LVT_LINT0, DeliveryMode.EXTINT << 8);
    this.regs.set(R.LVT_LINT1, this.#bsp ? DeliveryMode.NMI << 8 : LVT_MASKED);
    this.#errors = 0;
    this.#deadlineNs = Infinity;
  }

  get id(): number {
    return this.regs.id;
  }

  get softwareEnabled(): boolean {
    return (this.regs.get(R.SVR) & SVR_ENABLE) !== 0;
  }

  /** Whether LINT0 passes the 8259's INTR through (unmasked ExtINT). */
  get acceptsPicInterrupts(): boolean {
    const lint0 = this.regs.get(R.LVT_LINT0);
    return (lint0 & LVT_MASKED) === 0 && ((lint0 >> 8) & 7) === DeliveryMode.EXTINT;
  }

  read(offset: number, data: Uint8Array): void {
    if (data.length !== 4 || (offset & 0xf) !== 0) {
      guestLog.log(`${this.name}: ${data.length}-byte read at 0x${offset.toString(16)} ignored`);
      data.fill(0);
      return;
    }
    const index = offset >> 4;
    if (!READABLE.has(index)) {
      this.#error(ESR.ILLEGAL_REGISTER);
      setLe(data, 0);
      return;
    }
    if (index === R.TIMER_CURRENT) {
      setLe(data, this.currentCount(this.#clock.nowNs()));
      return;
    }
    if (index === R.ICR_LO) {
      setLe(data, this.regs.get(index) & ~(1 << 12)); // delivery is instant: idle
      return;
    }
    setLe(data, this.regs.get(index));
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length !== 4 || (offset & 0xf) !== 0) {
      guestLog.log(`${this.name}: ${data.length}-byte write at 0x${offset.toString(16)} ignored`);
      return;
    }
    const index = offset >> 4;
    const value = getLe(data);
    switch (index) {
      case R.EOI:
        this.#endOfInterrupt();
        return;
      case R.ESR:
        this.regs.set(R.ESR, this.#errors);
        this.#errors = 0;
        return;
      case R.TPR:
        this.regs.set(R.TPR, value & 0xff);
        this.#updatePpr();
        return;
      case R.DFR:
        this.regs.set(R.DFR, (value & 0xf0000000) | 0x0fffffff);
        return;
      case R.SVR:
        this.regs.set(R.SVR, value & 0x3ff);
        if (!this.softwareEnabled) {
          for (const lvt of LVTS) this.regs.set(lvt, this.regs.get(lvt) | LVT_MASKED);
        }
        return;
      case R.ICR_LO:
        this.regs.set(R.ICR_LO, value & 0x000ccfff);
        this.#sendIpi(value);
        return;
      case R.TIMER_INITIAL:
        this.regs.set(R.TIMER_INITIAL, value);
        this.#startTimer(this.#clock.nowNs());
        return;
      case R.TIMER_DIVIDE: {
        const now = this.#clock.nowNs();
        const current = this.currentCount(now);
        this.regs.set(R.TIMER_DIVIDE, value & 0xb);
        if (this.#deadlineNs !== Infinity) {
          // Keep counting from where the count was, at the new rate.
          const initial = this.regs.get(R.TIMER_INITIAL);
          this.#startNs = now - (initial - current) * this.#tickNs();
          this.#deadlineNs = now + current * this.#tickNs();
        }
        return;
      }
    }
    const mask = WRITABLE[index];
    if (mask === undefined) {
      if (!READABLE.has(index)) this.#error(ESR.ILLEGAL_REGISTER);
      else {guestLog.log(
          `${this.name}: write to read-only register 0x${offset.toString(16)} ignored`,
        );}
      return;
    }
    let v = (this.regs.get(index) & ~mask) | (value & mask);
    if (LVTS.includes(index as typeof LVTS[number]) && !this.softwareEnabled) v |= LVT_MASKED;
    this.regs.set(index, v);
    if (index === R.LVT_TIMER && this.#deadlineNs !== Infinity) this.#updateTimerMode();
  }

  // ---- interrupts into the CPU ----

  /** The vector the CPU would take now, or -1 (masked by PPR, disabled, none). */
  pendingVector(): number {
    if (!this.softwareEnabled) return -1;
    const v = highestBit(this.regs, R.IRR);
    if (v < 0) return -1;
    return (v & 0xf0) > (this.regs.get(R.PPR) & 0xf0) ? v : -1;
  }

  /** Whether a fixed interrupt is ready for the CPU. */
  hasInterrupt(): boolean {
    return this.pendingVector() >= 0;
  }

  /** The INTA cycle: moves the highest deliverable IRR vector to ISR and returns it. */
  acknowledge(): number {
    const v = this.pendingVector();
    if (v < 0) return this.regs.get(R.SVR) & 0xff; // spurious
    const word = v >>> 5;
    const bit = 1 << (v & 31);
    Atomics.and(this.regs.words, R.IRR + word, ~bit);
    this.regs.set(R.ISR + word, this.regs.get(R.ISR + word) | bit);
    this.#updatePpr();
    return v;
  }

  /** Accepts a locally generated interrupt with `vector` (LVT, self). */
  #accept(vector: number, level: boolean): void {
    if (vector < 16) {
      this.#error(ESR.RECEIVE_ILLEGAL_VECTOR);
      return;
    }
    this.regs.acceptVector(vector, level);
  }

  /**
   * The LINT0/LINT1 pin (index 0 or 1) was asserted: delivers by that LVT
   * entry. Returns the entry's delivery mode when it is not a vector the
   * APIC handles itself (ExtINT, NMI), so the caller acts; else -1.
   */
  localInterrupt(pin: 0 | 1): number {
    const lvt = this.regs.get(pin === 0 ? R.LVT_LINT0 : R.LVT_LINT1);
    if (lvt & LVT_MASKED) return -1;
    const mode = (lvt >> 8) & 7;
    if (mode !== DeliveryMode.FIXED) return mode;
    const level = (lvt & LVT_LEVEL) !== 0;
    if (level) {
      if (lvt & LVT_REMOTE_IRR) return -1;
      this.regs.set(pin === 0 ? R.LVT_LINT0 : R.LVT_LINT1, lvt | LVT_REMOTE_IRR);
    }
    this.#accept(lvt & 0xff, level);
    return -1;
  }

  /** Takes the events other CPUs and the I/O APIC delivered (INIT, SIPI, NMI, ExtINT). */
  takeEvents(): ApicEvents | undefined {
    if (!this.regs.hasPending()) return undefined;
    const p = this.regs.takePending();
    const startup = this.regs.takeStartup();
    if (p & Pending.SMI) guestLog.log(`${this.name}: SMI ignored (no system management mode)`);
    return {
      init: (p & Pending.INIT) !== 0,
      startup,
      nmi: (p & Pending.NMI) !== 0,
      extint: (p & Pending.EXTINT) !== 0,
    };
  }

  #updatePpr(): void {
    const tpr = this.regs.get(R.TPR);
    const isrv = Math.max(highestBit(this.regs, R.ISR), 0);
    this.regs.set(R.PPR, (tpr & 0xf0) >= (isrv & 0xf0) ? tpr : isrv & 0xf0);
  }

  #endOfInterrupt(): void {
    const v = highestBit(this.regs, R.ISR);
    if (v < 0) return;
    const word = v >>> 5;
    const bit = 1 << (v & 31);
    this.regs.set(R.ISR + word, this.regs.get(R.ISR + word) & ~bit);
    this.#updatePpr();
    if (this.regs.get(R.TMR + word) & bit) {
      Atomics.and(this.regs.words, R.TMR + word, ~bit);
      // LINT pins in level mode have their own remote IRR.
      for (const lint of [R.LVT_LINT0, R.LVT_LINT1]) {
        const lvt = this.regs.get(lint);
        if ((lvt & 0xff) === v) this.regs.set(lint, lvt & ~LVT_REMOTE_IRR);
      }
      this.#eoi(v);
    }
  }

  #error(bits: number): void {
    const first = (this.#errors & bits) !== bits;
    this.#errors |= bits;
    const lvt = this.regs.get(R.LVT_ERROR);
    if (first && (lvt & LVT_MASKED) === 0 && (lvt & 0xff) >= 16) {
      this.regs.acceptVector(lvt & 0xff, false);
    }
  }

  #sendIpi(icr: number): void {
    const mode = (icr >> 8) & 7;
    const vector = icr & 0xff;
    const shorthand = (icr >> 18) & 3;
    if (mode === 3 || (mode === DeliveryMode.EXTINT)) {
      guestLog.log(`${this.name}: ICR with reserved delivery mode ${mode} ignored`);
      return;
    }
    if ((mode === DeliveryMode.FIXED || mode === DeliveryMode.LOWEST) && vector < 16) {
      this.#error(ESR.SEND_ILLEGAL_VECTOR);
      return;
    }
    const m: ApicMessage = {
      vector,
      mode,
      logical: (icr & (1 << 11)) !== 0,
      dest: this.regs.get(R.ICR_HI) >>> 24,
      level: (icr & (1 << 15)) !== 0,
      assert: (icr & (1 << 14)) !== 0,
      shorthand,
      source: this.id,
    };
    // INIT and SIPI must be edge; the INIT level de-assert form is the one exception.
    if (mode === DeliveryMode.STARTUP || (mode === DeliveryMode.INIT && m.assert)) m.level = false;
    this.#bus.deliver(m);
  }

  // ---- timer ----

  #tickNs(): number {
    return timerDivisor(this.regs.get(R.TIMER_DIVIDE)) * 1e9 / LAPIC_TIMER_HZ;
  }

  #periodNs(): number {
    const ns = this.regs.get(R.TIMER_INITIAL) * this.#tickNs();
    return this.#periodic ? Math.max(ns, LAPIC_MIN_PERIOD_NS) : ns;
  }

  get #periodic(): boolean {
    return (this.regs.get(R.LVT_TIMER) & LVT_TIMER_PERIODIC) !== 0;
  }

  #startTimer(now: number): void {
    this.#startNs = now;
    this.#deadlineNs = this.regs.get(R.TIMER_INITIAL) === 0 ? Infinity : now + this.#periodNs();
  }

  #updateTimerMode(): void {
    // A mode switch takes effect at the next reload; a periodic period gets its clamp now.
    this.#deadlineNs = this.#startNs + this.#periodNs();
  }

  /** The current-count register at `nowNs`. */
  currentCount(nowNs: number): number {
    if (this.#deadlineNs === Infinity) return 0;
    const initial = this.regs.get(R.TIMER_INITIAL);
    const elapsed = Math.floor((nowNs - this.#startNs) / this.#tickNs());
    if (elapsed >= initial) return this.#periodic ? initial - (elapsed % initial) : 0;
    return initial - Math.max(elapsed, 0);
  }

  poll(nowNs: number): void {
    if (nowNs < this.#deadlineNs) return;
    this.timerFired++;
    const lvt = this.regs.get(R.LVT_TIMER);
    if ((lvt & LVT_MASKED) === 0) this.#accept(lvt & 0xff, false);
    if (this.#periodic) {
      const period = this.#periodNs();
      // Missed periods coalesce into the one interrupt (IRR holds one per vector).
      const periods = Math.floor((nowNs - this.#startNs) / period);
      this.#startNs += periods * period;
      this.#deadlineNs = this.#startNs + period;
    } else {
      this.#deadlineNs = Infinity; // one-shot: the count stays at 0
    }
  }

  nextDeadlineNs(): number {
    return this.#deadlineNs;
  }
}

// ---- the I/O APIC ----

/*
 * The I/O APIC (Intel 82093AA): 24 interrupt input pins, each with a 64-bit
 * redirection entry that turns it into an APIC bus message.
 *
 * MMIO at 0xFEC00000: IOREGSEL (offset 0x00, the register index) and IOWIN
 * (offset 0x10, the selected 32-bit register). Indexes: 0x00 ID, 0x01 version
 * (0x00170011: version 0x11, max redirection entry 23), 0x02 arbitration ID,
 * 0x10 + 2n / 0x11 + 2n the low / high half of entry n. The 82093AA has no
 * EOI register (that came with version 0x20): level interrupts end through
 * the local APIC's EOI broadcast ({@link IoApic.endOfInterrupt}).
 *
 * Entry bits: vector 7-0, delivery mode 10-8, logical destination 11,
 * delivery status 12 (read only; delivery is instant, so 0), polarity 13
 * (1: active low), remote IRR 14 (read only), level trigger 15, mask 16,
 * destination 63-56. Entries start masked.
 *
 * Edge: a rising edge of the asserted level on an unmasked pin sends one
 * message (masked edges are lost, as on the chip). Level: an asserted,
 * unmasked pin with remote IRR clear sends a message and sets remote IRR;
 * the EOI of its vector clears remote IRR and, if the pin is still
 * asserted, sends again.
 *
 * Threads: one thread owns an I/O APIC (the device thread, where every
 * device that raises its pins lives); messages leave through an
 * {@link ApicBus}, which any thread may use.
 *
 *  *
 */

/** The I/O APIC's physical base. */
export const IOAPIC_BASE = 0xfec00000;
/** Bytes of its MMIO window. */
export const IOAPIC_SIZE = 0x20;
/** Input pins (redirection entries). */
export const IOAPIC_PINS = 24;
/** Version register: max redirection entry 23, version 0x11 (82093AA). */
export const IOAPIC_VERSION = ((IOAPIC_PINS - 1) << 16) | 0x11;

const ENTRY_MASKED = 1 << 16;
const ENTRY_LEVEL = 1 << 15;
const ENTRY_REMOTE_IRR = 1 << 14;
const ENTRY_ACTIVE_LOW = 1 << 13;
/** Writable bits of an entry's low half: all but delivery status and remote IRR. */
const ENTRY_LOW_WRITABLE = 0x1afff;

/** One I/O APIC (see the module doc). */
export class IoApic implements BusDevice {
  readonly name = "ioapic";
  readonly #bus: ApicBus;
  #select = 0;
  #id = 0;
  readonly #low = new Uint32Array(IOAPIC_PINS).fill(ENTRY_MASKED);
  readonly #high = new Uint32Array(IOAPIC_PINS);
  /** The electrical level of each pin (true: driven high). */
  readonly #pinHigh = new Array<boolean>(IOAPIC_PINS).fill(false);

  constructor(bus: ApicBus, id = 0) {
    this.#bus = bus;
    this.#id = id & 0xf;
  }

  read(offset: number, data: Uint8Array): void {
    if (offset === 0x00) {
      setLe(data, this.#select);
    } else if (offset === 0x10 && data.length === 4) {
      setLe(data, this.#readRegister(this.#select));
    } else {
      guestLog.log(`ioapic: ${data.length}-byte read at 0x${offset.toString(16)} ignored`);
      data.fill(0);
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === 0x00) {
      this.#select = data[0];
    } else if (offset === 0x10 && data.length === 4) {
      this.#writeRegister(this.#select, getLe(data));
    } else {
      guestLog.log(`ioapic: ${data.length}-byte write at 0x${offset.toString(16)} ignored`);
    }
  }

  #readRegister(index: number): number {
    if (index === 0x00) return this.#id << 24;
    if (index === 0x01) return IOAPIC_VERSION;
    if (index === 0x02) return this.#id << 24;
    const pin = (index - 0x10) >> 1;
    if (index >= 0x10 && pin < IOAPIC_PINS) {
      return index & 1 ? this.#high[pin] : this.#low[pin];
    }
    guestLog.log(`ioapic: read of absent register 0x${index.toString(16)}`);
    return 0;
  }

  #writeRegister(index: number, value: number): void {
    if (index === 0x00) {
      this.#id = (value >>> 24) & 0xf;
      return;
    }
    const pin = (index - 0x10) >> 1;
    if (index < 0x10 || pin >= IOAPIC_PINS) {
      guestLog.log(`ioapic: write of read-only or absent register 0x${index.toString(16)}`);
      return;
    }
    if (index & 1) {
      this.#high[pin] = value & 0xff000000;
      return;
    }
    const keep = this.#low[pin] & ~ENTRY_LOW_WRITABLE;
    this.#low[pin] = (keep | (value & ENTRY_LOW_WRITABLE)) >>> 0;
    if (!(this.#low[pin] & ENTRY_LEVEL)) this.#low[pin] &= ~ENTRY_REMOTE_IRR;
    // An unmasked level pin that is asserted fires now.
    this.#serviceLevel(pin);
  }

  /** The redirection entry of `pin` as a 64-bit value (tests, `vmmctl` debugging). */
  entry(pin: number): bigint {
    return (BigInt(this.#high[pin]) << 32n) | BigInt(this.#low[pin]);
  }

  #asserted(pin: number): boolean {
    return this.#pinHigh[pin] !== ((this.#low[pin] & ENTRY_ACTIVE_LOW) !== 0);
  }

  /** Drives input `pin` to a level (true: high). */
  setPin(pin: number, high: boolean): void {
    if (pin < 0 || pin >= IOAPIC_PINS) return;
    const wasAsserted = this.#asserted(pin);
    this.#pinHigh[pin] = high;
    const low = this.#low[pin];
    if (low & ENTRY_LEVEL) {
      this.#serviceLevel(pin);
    } else if (!wasAsserted && this.#asserted(pin) && !(low & ENTRY_MASKED)) {
      this.#send(pin);
    }
  }

  /** Input `pin` as an {@link IrqLine}. */
  line(pin: number): IrqLine {
    return { setLevel: (high) => this.setPin(pin, high) };
  }

  /** A local APIC's EOI broadcast of `vector`: ends level interrupts with that vector. */
  endOfInterrupt(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const low = this.#low[pin];
      if ((low & 0xff) !== vector || !(low & ENTRY_REMOTE_IRR)) continue;
      this.#low[pin] = low & ~ENTRY_REMOTE_IRR;
      this.#serviceLevel(pin);
    }
  }

  #serviceLevel(pin: number): void {
    const low = this.#low[pin];
    if (!(low & ENTRY_LEVEL) || (low & (ENTRY_MASKED | ENTRY_REMOTE_IRR))) return;
    if (!this.#asserted(pin)) return;
    if (this.#send(pin) > 0) this.#low[pin] |= ENTRY_REMOTE_IRR;
  }

  #send(pin: number): number {
    const low = this.#low[pin];
    const mode = (low >> 8) & 7;
    if (mode === 3 || mode === DeliveryMode.STARTUP) {
      guestLog.log(`ioapic: pin ${pin} has reserved delivery mode ${mode}: not delivered`);
      return 0;
    }
    return this.#bus.deliver({
      vector: low & 0xff,
      mode,
      logical: (low & (1 << 11)) !== 0,
      dest: this.#high[pin] >>> 24,
      level: (low & ENTRY_LEVEL) !== 0,
      assert: true,
      shorthand: Shorthand.NONE,
      source: -1,
    });
  }
}

// ---- MSI-X ----

/*
 * MSI-X (PCI Local Bus 3.0, 6.8.2): a table of message address/data pairs
 * with a per-entry mask, and a pending-bit array (PBA), both in a memory
 * BAR; the capability's message control holds the enable and function-mask
 * bits.
 *
 * | table entry (16 bytes) | |
 * | --- | --- |
 * | 0x0 | message address low (dword aligned) |
 * | 0x4 | message address high |
 * | 0x8 | message data |
 * | 0xC | vector control: bit 0 mask (set at reset) |
 *
 * {@link MsixTable.signal} sends entry `n`'s message, or sets its pending
 * bit while the entry or the whole function is masked; unmasking sends a
 * pending message then. Accesses must be aligned dwords (or qwords for the
 * address pair); others and anything outside the table or PBA are logged
 * and ignored (reads give 0). The PBA is read only.
 *
 *  *
 */

/** Bytes per table entry. */
export const MSIX_ENTRY_BYTES = 16;
/** Vector control: entry masked. */
export const MSIX_ENTRY_MASKED = 1;
/** Message control: MSI-X enable (bit 15) and function mask (bit 14). */
export const MSIX_CONTROL_ENABLE = 1 << 15;
export const MSIX_CONTROL_FUNCTION_MASK = 1 << 14;

/** An MSI-X table, its PBA and its message control state. */
export class MsixTable {
  readonly size: number;
  readonly #words: Uint32Array;
  readonly #pending: Uint8Array;
  readonly #send: (address: number, data: number) => void;
  #enabled = false;
  #functionMask = false;
  /** The table region of the BAR (offsets from the table's start). */
  readonly table: BusDevice;
  /** The PBA region of the BAR (offsets from the PBA's start). */
  readonly pba: BusDevice;

  /** @param send delivers one message (the machine: APIC bus, or KVM_SIGNAL_MSI) */
  constructor(size: number, send: (address: number, data: number) => void) {
    if (!Number.isInteger(size) || size < 1 || size > 2048) {
      throw new RangeError(`MSI-X table of ${size} entries: 1 to 2048`);
    }
    this.size = size;
    this.#words = new Uint32Array(size * 4);
    this.#pending = new Uint8Array(size);
    this.#send = send;
    this.reset();
    this.table = {
      name: "msix-table",
      read: (offset, data) => this.#readTable(offset, data),
      write: (offset, data) => this.#writeTable(offset, data),
    };
    this.pba = {
      name: "msix-pba",
      read: (offset, data) => this.#readPba(offset, data),
      write: (offset, data) => {
        guestLog.log(
          `msix: ${data.length}-byte write to the PBA at 0x${offset.toString(16)} ignored`,
        );
      },
    };
  }

  /** Bytes the table takes in its BAR. */
  get tableBytes(): number {
    return this.size * MSIX_ENTRY_BYTES;
  }

  /** Bytes the PBA takes (whole qwords). */
  get pbaBytes(): number {
    return Math.ceil(this.size / 64) * 8;
  }

  /** Every entry masked and cleared, nothing pending, MSI-X off. */
  reset(): void {
    this.#words.fill(0);
    for (let i = 0; i < this.size; i++) this.#words[i * 4 + 3] = MSIX_ENTRY_MASKED;
    this.#pending.fill(0);
    this.#enabled = false;
    this.#functionMask = false;
  }

  /** MSI-X enable (message control bit 15). */
  get enabled(): boolean {
    return this.#enabled;
  }

  set enabled(on: boolean) {
    this.#enabled = on;
    this.#flush();
  }

  /** Function mask (message control bit 14). */
  get functionMasked(): boolean {
    return this.#functionMask;
  }

  set functionMasked(on: boolean) {
    this.#functionMask = on;
    this.#flush();
  }

  /** Applies a write of the capability's message control register. */
  writeControl(value: number): void {
    this.#enabled = (value & MSIX_CONTROL_ENABLE) !== 0;
    this.#functionMask = (value & MSIX_CONTROL_FUNCTION_MASK) !== 0;
    this.#flush();
  }

  /** Whether entry `n`'s pending bit is set. */
  isPending(n: number): boolean {
    return this.#pending[n] === 1;
  }

  /** Whether entry `n` is masked (by itself or by the function mask). */
  isMasked(n: number): boolean {
    return this.#functionMask || (this.#words[n * 4 + 3] & MSIX_ENTRY_MASKED) !== 0;
  }

  /**
   * Signals entry `n` (a queue's or the configuration's vector). Returns
   * false for a vector outside the table (the caller's NO_VECTOR check).
   */
  signal(n: number): boolean {
    if (!Number.isInteger(n) || n < 0 || n >= this.size) return false;
    if (!this.#enabled) return true; // MSI-X off: the device uses INTx instead
    if (this.isMasked(n)) {
      this.#pending[n] = 1;
      return true;
    }
    this.#deliver(n);
    return true;
  }

  #deliver(n: number): void {
    const w = n * 4;
    this.#pending[n] = 0;
    this.#send(this.#words[w] + this.#words[w + 1] * 2 ** 32, this.#words[w + 2]);
  }

  /** Sends what became unmasked while pending. */
  #flush(): void {
    if (!this.#enabled || this.#functionMask) return;
    for (let n = 0; n < this.size; n++) {
      if (this.#pending[n] && !this.isMasked(n)) this.#deliver(n);
    }
  }

  #aligned(offset: number, data: Uint8Array, limit: number, what: string): boolean {
    const ok = (data.length === 4 && (offset & 3) === 0) ||
      (data.length === 8 && (offset & 7) === 0);
    if (ok && offset + data.length <= limit) return true;
    guestLog.log(
      `msix: ${data.length}-byte access at 0x${offset.toString(16)} of the ${what} ignored`,
    );
    return false;
  }

  #readTable(offset: number, data: Uint8Array): void {
    if (!this.#aligned(offset, data, this.tableBytes, "table")) {
      data.fill(0);
      return;
    }
    for (let i = 0; i < data.length; i += 4) {
      setLe(data.subarray(i, i + 4), this.#words[(offset + i) >> 2]);
    }
  }

  #writeTable(offset: number, data: Uint8Array): void {
    if (!this.#aligned(offset, data, this.tableBytes, "table")) return;
    for (let i = 0; i < data.length; i += 4) {
      const word = (offset + i) >> 2;
      let v = getLe(data.subarray(i, i + 4));
      if ((word & 3) === 0) v &= ~3; // the address is dword aligned
      if ((word & 3) === 3) v &= MSIX_ENTRY_MASKED; // the rest of vector control is reserved
      this.#words[word] = v >>> 0;
      if ((word & 3) === 3 && !(v & MSIX_ENTRY_MASKED)) this.#flush();
    }
  }

  #readPba(offset: number, data: Uint8Array): void {
    if (!this.#aligned(offset, data, this.pbaBytes, "PBA")) {
      data.fill(0);
      return;
    }
    for (let i = 0; i < data.length; i++) {
      let byte = 0;
      for (let b = 0; b < 8; b++) {
        const n = (offset + i) * 8 + b;
        if (n < this.size && this.#pending[n]) byte |= 1 << b;
      }
      data[i] = byte;
    }
  }
}
