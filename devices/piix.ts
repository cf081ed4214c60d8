/**
 * The PIIX3 south bridge pieces a BIOS programs: the PCI-to-ISA bridge
 * function (8086:7000, slot 1 function 0 as on QEMU's `pc` machine) with its
 * PIRQ route registers, and System Control Port A (port 0x92: fast A20 gate
 * and fast reset).
 *
 * | config offset | register | reset value |
 * | --- | --- | --- |
 * | 0x60-0x63 | PIRQRC[A-D]: bit 7 disables routing, bits 3-0 the ISA IRQ | 0x80 |
 *
 * SeaBIOS routes PIRQA-D to IRQs 10, 10, 11, 11 and sets them level-triggered
 * in the ELCR (ports 0x4D0/0x4D1, which the PIC models). {@link PirqRouter}
 * gives each PCI slot's INTA# the ISA IRQ those registers say, at the time
 * it is raised, with wired-OR sharing, as the guest's firmware and OS expect.
 *
 * @example
 * ```ts
 * import { Piix3IsaBridge, SystemControlA } from "./piix.ts";
 * const isa = new Piix3IsaBridge();
 * isa.config.write(0x60, Uint8Array.of(10));
 * isa.pirqRoute(0); // 10
 * const port92 = new SystemControlA(() => console.log("reset"));
 * port92.write(0, Uint8Array.of(0x02)); // A20 on
 * port92.a20; // true
 * ```
 * @module
 */

import type { BusDevice, IrqLine } from "../core/device.ts";
import { PciConfigSpace, type PciDevice } from "./pci.ts";

/** PIIX3 config: the first PIRQ route control register. */
export const PIIX_PIRQRC = 0x60;
/** PIRQ route control: routing disabled. */
export const PIIX_PIRQRC_DISABLE = 0x80;
/** System Control Port A: fast reset (writing 1 resets; reads 0). */
export const PORT92_FAST_RESET = 0x01;
/** System Control Port A: A20 gate. */
export const PORT92_A20 = 0x02;

/** The PIIX3 PCI-to-ISA bridge (function 0 of a multi-function device). */
export class Piix3IsaBridge implements PciDevice {
  readonly config: PciConfigSpace = new PciConfigSpace({
    vendorId: 0x8086,
    deviceId: 0x7000,
    classCode: 0x060100,
    multiFunction: true,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
  });

  constructor() {
    for (let i = 0; i < 4; i++) this.config.setU8(PIIX_PIRQRC + i, PIIX_PIRQRC_DISABLE);
    this.config.setWriteMask(PIIX_PIRQRC, 4, 0x8f8f8f8f);
  }

  /** The ISA IRQ PIRQ `n` (0-3 for A-D) is routed to, or undefined when routing is off. */
  pirqRoute(n: number): number | undefined {
    const v = this.config.u8(PIIX_PIRQRC + n);
    if (v & PIIX_PIRQRC_DISABLE) return undefined;
    const irq = v & 0x0f;
    // IRQs 0-2, 8 and 13 are reserved in PIIX3's table: those values route nowhere.
    return [0, 1, 2, 8, 13].includes(irq) ? undefined : irq;
  }
}

/**
 * PCI interrupt lines through the PIIX3's PIRQ routing registers. INTA# of
 * the device in slot `s` is PIRQ[(s - 1) mod 4] (QEMU's `pc` wiring, which
 * SeaBIOS's tables describe); several lines on one ISA IRQ are ORed.
 */
export class PirqRouter {
  readonly #isa: Piix3IsaBridge;
  readonly #line: (irq: number) => IrqLine;
  /** ISA IRQ -> slots holding it high. */
  readonly #high = new Map<number, Set<number>>();

  /** @param line the interrupt controller's input `irq` */
  constructor(isa: Piix3IsaBridge, line: (irq: number) => IrqLine) {
    this.#isa = isa;
    this.#line = line;
  }

  /** The PIRQ (0-3 for A-D) INTA# of `slot` is wired to. */
  static link(slot: number): number {
    return (slot + 3) & 3;
  }

  /** INTA# of the device in `slot`. */
  lineFor(slot: number): IrqLine {
    let routed: number | undefined;
    return {
      setLevel: (high) => {
        const irq = this.#isa.pirqRoute(PirqRouter.link(slot));
        if (routed !== undefined && (routed !== irq || !high)) this.#drop(routed, slot);
        routed = undefined;
        if (high && irq !== undefined) {
          routed = irq;
          let set = this.#high.get(irq);
          if (!set) this.#high.set(irq, set = new Set());
          set.add(slot);
          this.#line(irq).setLevel(true);
        }
      },
    };
  }

  #drop(irq: number, slot: number): void {
    const set = this.#high.get(irq);
    if (!set?.delete(slot)) return;
    if (set.size === 0) this.#line(irq).setLevel(false);
  }
}

/**
 * Port 0x92 (length 1). KVM does not mask address line 20 (neither does
 * QEMU under KVM); the bit is kept so a guest reads back what it set.
 */
export class SystemControlA implements BusDevice {
  readonly name = "port92";
  #value = PORT92_A20;
  readonly #reset: () => void;

  constructor(reset: () => void) {
    this.#reset = reset;
  }

  /** Whether the guest has the A20 gate open (it starts open, as SeaBIOS expects after POST). */
  get a20(): boolean {
    return (this.#value & PORT92_A20) !== 0;
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = this.#value;
  }

  write(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.#value = data[0] & PORT92_A20;
    if (data[0] & PORT92_FAST_RESET) this.#reset();
  }
}
