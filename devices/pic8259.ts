/**
 * The PC's cascaded pair of 8259A programmable interrupt controllers, plus
 * the PIIX edge/level control registers (ELCR).
 *
 * | port | device | offset 0 | offset 1 |
 * | --- | --- | --- | --- |
 * | 0x20 | `master` (IRQ 0-7) | ICW1 / OCW2 / OCW3; reads IRR or ISR | ICW2-4 / OCW1 (IMR) |
 * | 0xA0 | `slave` (IRQ 8-15, into master IR2) | same | same |
 * | 0x4D0 | `elcr` | master ELCR (IRQ 3-7) | slave ELCR (IRQ 9-12, 14, 15) |
 *
 * Offset-0 writes are decoded by bits 4-3: `1x` ICW1 (starts initialization),
 * `00` OCW2 (EOI and rotation), `01` OCW3 (read register select, poll, special
 * mask). Offset-1 writes are ICW2, ICW3, ICW4 during initialization and the
 * mask (OCW1) otherwise.
 *
 * The run loop asks {@link Pic8259Pair.hasInterrupt} and, when the vCPU can
 * take one, runs the INTA cycle with {@link Pic8259Pair.acknowledge}. Edge
 * inputs latch IRR on a rising edge (a pulse high-then-low is remembered);
 * level inputs (ELCR, or ICW1 LTIM) follow the line. The cascade input IR2 of
 * the master follows the slave's INT output directly, so a slave holding INT
 * high never loses an interrupt for want of a new edge.
 *
 * @example
 * ```ts
 * import { Pic8259Pair } from "./pic8259.ts";
 * const pic = new Pic8259Pair();
 * for (const [dev, base] of [[pic.master, 0x20], [pic.slave, 0x28]] as const) {
 *   dev.write(0, Uint8Array.of(0x11)); // ICW1: edge, cascade, ICW4 needed
 *   dev.write(1, Uint8Array.of(base)); // ICW2: vector base
 *   dev.write(1, Uint8Array.of(dev === pic.master ? 0x04 : 0x02)); // ICW3
 *   dev.write(1, Uint8Array.of(0x01)); // ICW4: 8086 mode
 * }
 * pic.line(1).setLevel(true);
 * pic.hasInterrupt(); // true
 * pic.acknowledge(); // 0x21
 * ```
 * @module
 */

import { type BusDevice, guestLog, type IrqLine } from "../core/device.ts";

/** ICW1 marker: bit 4 set on an offset-0 write. */
export const PIC_ICW1 = 0x10;
/** ICW1: ICW4 will follow. */
export const PIC_ICW1_IC4 = 0x01;
/** ICW1: single chip, no ICW3. */
export const PIC_ICW1_SNGL = 0x02;
/** ICW1: level-triggered mode for all inputs. */
export const PIC_ICW1_LTIM = 0x08;
/** ICW4: 8086/8088 mode (the only mode a PC uses). */
export const PIC_ICW4_8086 = 0x01;
/** ICW4: automatic end of interrupt. */
export const PIC_ICW4_AEOI = 0x02;
/** ICW4: special fully nested mode. */
export const PIC_ICW4_SFNM = 0x10;
/** OCW3 marker: bits 4-3 = 01 on an offset-0 write. */
export const PIC_OCW3 = 0x08;
/** OCW3: read register command (with RIS). */
export const PIC_OCW3_RR = 0x02;
/** OCW3: read ISR (else IRR) when RR is set. */
export const PIC_OCW3_RIS = 0x01;
/** OCW3: poll command. */
export const PIC_OCW3_POLL = 0x04;
/** OCW3: enable special mask mode change. */
export const PIC_OCW3_ESMM = 0x40;
/** OCW3: special mask mode value. */
export const PIC_OCW3_SMM = 0x20;
/** The master input wired to the slave's INT output. */
export const PIC_CASCADE_IRQ = 2;

/** Bits of each ELCR that can be set: IRQ 0, 1, 2, 8 and 13 are always edge. */
const ELCR_WRITABLE = [0xf8, 0xde] as const;

/**
 * OCW2 commands by bits 7-5 (R, SL, EOI): which ISR bit to clear and how
 * priorities rotate.
 */
const OCW2_COMMANDS: Record<number, {
  readonly eoi: "none" | "highest" | "specific";
  readonly rotate: boolean;
  readonly autoEoiRotate?: boolean;
}> = {
  0b000: { eoi: "none", rotate: false, autoEoiRotate: false }, // clear rotate in AEOI mode
  0b001: { eoi: "highest", rotate: false }, // non-specific EOI
  0b010: { eoi: "none", rotate: false }, // no operation
  0b011: { eoi: "specific", rotate: false }, // specific EOI
  0b100: { eoi: "none", rotate: false, autoEoiRotate: true }, // set rotate in AEOI mode
  0b101: { eoi: "highest", rotate: true }, // rotate on non-specific EOI
  0b110: { eoi: "none", rotate: true }, // set priority (level L becomes lowest)
  0b111: { eoi: "specific", rotate: true }, // rotate on specific EOI
};

/** Where a chip is in its initialization sequence: the next offset-1 write is... */
type InitState = "ready" | "icw2" | "icw3" | "icw4";

/** One 8259A. Exported for tests and documentation; machines use {@link Pic8259Pair}. */
export class Pic8259 {
  /** Interrupt request register. */
  irr = 0;
  /** In-service register. */
  isr = 0;
  /** Interrupt mask register (OCW1). */
  imr = 0;
  /** Vector base from ICW2 (bits 7-3). */
  vectorBase = 0;
  /** Edge/level control: a set bit makes that input level-triggered. */
  elcr = 0;
  /** Whether the chip was initialized for single (uncascaded) operation. */
  single = false;
  /** ICW3 as written (slave bitmap on the master, identity on the slave). */
  icw3 = 0;
  /** The current initialization step. */
  initState: InitState = "ready";

  #lines = 0; // current input levels
  #forcedLevel: number; // inputs that are level-sensitive whatever ELCR says
  #ltim = false;
  #needIcw4 = false;
  #autoEoi = false;
  #rotateOnAutoEoi = false;
  #specialFullyNested = false;
  #specialMask = false;
  #readIsr = false;
  #poll = false;
  #lowestPriority = 7; // the level with the lowest priority; rotation moves it

  constructor(readonly isMaster: boolean) {
    this.#forcedLevel = isMaster ? 1 << PIC_CASCADE_IRQ : 0;
  }

  #levelMask(): number {
    return this.#ltim ? 0xff : (this.elcr | this.#forcedLevel);
  }

  /** Drives input `irq` (0-7). */
  setInput(irq: number, high: boolean): void {
    const bit = 1 << irq;
    const wasHigh = (this.#lines & bit) !== 0;
    if (high) this.#lines |= bit;
    else this.#lines &= ~bit;
    if (this.#levelMask() & bit) {
      if (high) this.irr |= bit;
      else this.irr &= ~bit;
    } else if (high && !wasHigh) {
      this.irr |= bit; // edge: latched until acknowledged
    }
  }

  /** Re-reads level inputs after ELCR or LTIM changed. */
  resampleLevels(): void {
    const level = this.#levelMask();
    this.irr = (this.irr & ~level) | (this.#lines & level);
  }

  /** How many places `irq` is below the highest priority (0 = highest). */
  #rank(irq: number): number {
    return (irq - this.#lowestPriority - 1 + 8) & 7;
  }

  /** The set bit of `bits` with the highest priority, or -1. */
  #highest(bits: number): number {
    for (let r = 0; r < 8; r++) {
      const irq = (this.#lowestPriority + 1 + r) & 7;
      if (bits & (1 << irq)) return irq;
    }
    return -1;
  }

  /** The request INT would deliver now, or -1 (priority resolution). */
  pending(): number {
    const request = this.#highest(this.irr & ~this.imr);
    if (request < 0) return -1;
    let blocking = this.isr;
    // Special mask mode: a masked in-service level does not hold back others.
    if (this.#specialMask) blocking &= ~this.imr;
    // Special fully nested: the slave's own priority sorts its requests.
    if (this.#specialFullyNested && this.isMaster) blocking &= ~(1 << PIC_CASCADE_IRQ);
    const inService = this.#highest(blocking);
    if (inService >= 0 && this.#rank(inService) <= this.#rank(request)) return -1;
    return request;
  }

  /** The INTA cycle for `irq`: into service (unless auto-EOI), edge request consumed. */
  acknowledge(irq: number): void {
    const bit = 1 << irq;
    if (this.#autoEoi) {
      if (this.#rotateOnAutoEoi) this.#lowestPriority = irq;
    } else {
      this.isr |= bit;
    }
    if (!(this.#levelMask() & bit)) this.irr &= ~bit;
  }

  /** Whether the next offset-0 or offset-1 read is a poll (OCW3 P). */
  get polling(): boolean {
    return this.#poll;
  }

  /** A poll read: acknowledges the highest request; bit 7 says whether there was one. */
  pollRead(): number {
    this.#poll = false;
    const irq = this.pending();
    if (irq < 0) return 0;
    this.acknowledge(irq);
    return 0x80 | irq;
  }

  read(offset: number): number {
    if (this.#poll) return this.pollRead();
    if (offset === 0) return this.#readIsr ? this.isr : this.irr;
    return this.imr;
  }

  write(offset: number, value: number): void {
    if (offset === 0) {
      if (value & PIC_ICW1) this.#icw1(value);
      else if (value & PIC_OCW3) this.#ocw3(value);
      else this.#ocw2(value);
      return;
    }
    switch (this.initState) {
      case "icw2":
        this.vectorBase = value & 0xf8;
        this.initState = this.single ? (this.#needIcw4 ? "icw4" : "ready") : "icw3";
        return;
      case "icw3":
        this.icw3 = value;
        this.initState = this.#needIcw4 ? "icw4" : "ready";
        return;
      case "icw4":
        if (!(value & PIC_ICW4_8086)) {
          guestLog.log(`pic: ICW4 0x${value.toString(16)} selects 8080 mode; treated as 8086`);
        }
        this.#autoEoi = (value & PIC_ICW4_AEOI) !== 0;
        this.#specialFullyNested = (value & PIC_ICW4_SFNM) !== 0;
        this.initState = "ready";
        return;
      case "ready":
        this.imr = value;
        return;
    }
  }

  /** ICW1 starts (or restarts) initialization from a known state. */
  #icw1(value: number): void {
    this.#needIcw4 = (value & PIC_ICW1_IC4) !== 0;
    this.single = (value & PIC_ICW1_SNGL) !== 0;
    this.#ltim = (value & PIC_ICW1_LTIM) !== 0;
    this.imr = 0;
    this.isr = 0;
    this.#lowestPriority = 7;
    this.#readIsr = false;
    this.#poll = false;
    this.#specialMask = false;
    this.#autoEoi = false; // ICW4 functions are zero unless ICW4 says otherwise
    this.#rotateOnAutoEoi = false;
    this.#specialFullyNested = false;
    // The edge detectors reset: an input already high must fall and rise again.
    const level = this.#levelMask();
    this.irr = this.#lines & level;
    this.initState = "icw2";
  }

  #ocw2(value: number): void {
    const command = OCW2_COMMANDS[value >> 5];
    const level = value & 7;
    if (command.autoEoiRotate !== undefined) this.#rotateOnAutoEoi = command.autoEoiRotate;
    let target = -1;
    if (command.eoi === "highest") target = this.#highest(this.isr);
    else if (command.eoi === "specific") target = level;
    if (target >= 0) this.isr &= ~(1 << target);
    if (command.rotate) {
      if (command.eoi === "none") this.#lowestPriority = level; // set priority
      else if (target >= 0) this.#lowestPriority = target;
    }
  }

  #ocw3(value: number): void {
    if (value & PIC_OCW3_ESMM) this.#specialMask = (value & PIC_OCW3_SMM) !== 0;
    if (value & PIC_OCW3_RR) this.#readIsr = (value & PIC_OCW3_RIS) !== 0;
    if (value & PIC_OCW3_POLL) this.#poll = true;
  }
}

/**
 * Master and slave 8259A with ELCR, as on a PIIX PC. Register `master` at
 * 0x20 and `slave` at 0xA0 (length 2 each), `elcr` at 0x4D0 (length 2).
 */
export class Pic8259Pair {
  /** The master PIC's two ports (0x20-0x21). */
  readonly master: BusDevice;
  /** The slave PIC's two ports (0xA0-0xA1). */
  readonly slave: BusDevice;
  /** The edge/level control registers (0x4D0-0x4D1). */
  readonly elcr: BusDevice;
  /** Called whenever the INT output changes (the run loop wakes a halted vCPU). */
  onChange?: () => void;

  readonly #chips = [new Pic8259(true), new Pic8259(false)] as const;
  readonly #lines: IrqLine[];
  #int = false;

  constructor() {
    const chipDevice = (index: 0 | 1, name: string): BusDevice => ({
      name,
      read: (offset, data) => {
        data.fill(0);
        if (data.length === 0) return;
        data[0] = offset <= 1 ? this.#chips[index].read(offset) : 0xff;
        this.#update();
      },
      write: (offset, data) => {
        if (data.length === 0) return;
        if (offset > 1) {
          guestLog.log(`${name}: write at offset ${offset} beyond its two ports`);
          return;
        }
        this.#chips[index].write(offset, data[0]);
        this.#update();
      },
    });
    this.master = chipDevice(0, "pic-master");
    this.slave = chipDevice(1, "pic-slave");
    this.elcr = {
      name: "elcr",
      // The two ELCRs are plain registers: a 16-bit access reaches both.
      read: (offset, data) => {
        for (let i = 0; i < data.length; i++) {
          const o = offset + i;
          data[i] = o <= 1 ? this.#chips[o].elcr : 0xff;
        }
      },
      write: (offset, data) => {
        for (let i = 0; i < data.length; i++) {
          const o = offset + i;
          if (o > 1) continue;
          const chip = this.#chips[o];
          chip.elcr = data[i] & ELCR_WRITABLE[o];
          chip.resampleLevels();
        }
        this.#update();
      },
    };
    this.#lines = Array.from({ length: 16 }, (_, irq) => ({
      setLevel: (high: boolean) => this.#setIrq(irq, high),
    }));
  }

  /**
   * The input line for IRQ `irq` (0-15). IRQ 2 is the cascade; like the ISA
   * bus of an AT, a device on "IRQ 2" is wired to IRQ 9.
   */
  line(irq: number): IrqLine {
    if (!Number.isInteger(irq) || irq < 0 || irq > 15) {
      throw new RangeError(`PIC IRQ ${irq} is not in 0..15`);
    }
    return this.#lines[irq];
  }

  /** The master's INT output: an interrupt is waiting for an INTA cycle. */
  hasInterrupt(): boolean {
    return this.#int;
  }

  /**
   * The INTA cycle: returns the vector to deliver and moves the request into
   * service. With nothing pending (a level request went away, or it was
   * masked) the chip answers with its IRQ7 vector without setting ISR
   * (spurious IRQ7). Were the master to see IR2 with the slave holding no
   * request, the slave would answer with its IRQ7 vector (spurious IRQ15)
   * and only the master's IR2 would go into service; here IR2 follows the
   * slave's INT in the same step, so a withdrawn slave request shows up as
   * the master's spurious IRQ7 instead.
   */
  acknowledge(): number {
    const [master, slave] = this.#chips;
    const irq = master.pending();
    let vector: number;
    if (irq < 0) {
      vector = master.vectorBase + 7;
    } else if (irq === PIC_CASCADE_IRQ && !master.single) {
      const slaveIrq = slave.pending();
      if (slaveIrq >= 0) {
        slave.acknowledge(slaveIrq);
        vector = slave.vectorBase + slaveIrq;
      } else {
        vector = slave.vectorBase + 7;
      }
      master.acknowledge(irq);
    } else {
      master.acknowledge(irq);
      vector = master.vectorBase + irq;
    }
    this.#update();
    return vector;
  }

  #setIrq(irq: number, high: boolean): void {
    if (irq === PIC_CASCADE_IRQ) irq = 9;
    if (irq < 8) this.#chips[0].setInput(irq, high);
    else this.#chips[1].setInput(irq - 8, high);
    this.#update();
  }

  /** Propagates the slave's INT into master IR2 and reports INT changes. */
  #update(): void {
    const [master, slave] = this.#chips;
    master.setInput(PIC_CASCADE_IRQ, slave.pending() >= 0);
    const int = master.pending() >= 0;
    if (int !== this.#int) {
      this.#int = int;
      this.onChange?.();
    }
  }
}
