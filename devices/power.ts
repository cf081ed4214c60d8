/**
 * Power-off and reset registers a guest uses to end or restart the machine.
 *
 * - {@link PowerControl}: the ACPI PM1a control register at 0x604 (QEMU q35's
 *   PM block at 0x600 + 4; length 2). Setting SLP_EN (bit 13) enters the
 *   sleep state in SLP_TYP; with no sleep states here, any of them powers
 *   off. SCI_EN (bit 0) reads as set: the machine is always in ACPI mode.
 * - {@link AcpiPmEvents}: the ACPI PM1a event block at 0x600 (PM1_STS at
 *   offset 0, write one to clear; PM1_EN at 2). The fixed-feature power
 *   button sets PWRBTN_STS; the SCI (level, ISA IRQ 9 in the MADT) is
 *   asserted while an enabled status bit is set. A shutdown request
 *   (`vmmctl stop`) presses the button; the guest's OSPM then enters `_S5`
 *   through PM1a_CNT.
 * - {@link ResetControl}: the PIIX reset control register at 0xCF9 (length
 *   1). A write with RST_CPU (bit 2) set resets, so 0x06 (hard reset) and
 *   0x0E (full reset) both do; SYS_RST and FULL_RST are kept and read back.
 *   Port 0xCF9 lies inside the dword of the PCI address register, so it is
 *   usually reached through `PciHost`'s `resetControl` option.
 *
 * @example
 * ```ts
 * import { PowerControl, ResetControl } from "./power.ts";
 * let off = false;
 * const pm = new PowerControl(() => (off = true));
 * pm.write(0, Uint8Array.of(0x00, 0x20)); // SLP_TYP 0, SLP_EN
 * const rcr = new ResetControl(() => console.log("reset"));
 * rcr.write(0, Uint8Array.of(0x06));
 * ```
 * @module
 */

import type { BusDevice, IrqLine } from "../core/device.ts";

/** PM1 control: SCI enable (ACPI mode). */
export const ACPI_PM1_CNT_SCI_EN = 0x0001;
/** PM1 control: sleep type field (bits 12-10). */
export const ACPI_PM1_CNT_SLP_TYP_MASK = 0x1c00;
/** PM1 control: sleep enable (write-only: reads 0). */
export const ACPI_PM1_CNT_SLP_EN = 0x2000;

/** Reset control: system reset (hard) when RST_CPU fires. */
export const RCR_SYS_RST = 0x02;
/** Reset control: reset the CPU. */
export const RCR_RST_CPU = 0x04;
/** Reset control: full reset (power cycle). */
export const RCR_FULL_RST = 0x08;

/** The ACPI PM1a control register. */
export class PowerControl implements BusDevice {
  readonly name = "acpi-pm1-cnt";
  readonly #onPowerOff: () => void;
  #value = ACPI_PM1_CNT_SCI_EN;

  constructor(onPowerOff: () => void) {
    this.#onPowerOff = onPowerOff;
  }

  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      data[i] = o < 2 ? (this.#value >> (8 * o)) & 0xff : 0;
    }
  }

  write(offset: number, data: Uint8Array): void {
    // A 16-bit register: byte writes update their half, so SLP_EN may come alone.
    let value = this.#value;
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      if (o < 2) value = (value & ~(0xff << (8 * o))) | (data[i] << (8 * o));
    }
    this.#value = (value & ~ACPI_PM1_CNT_SLP_EN) | ACPI_PM1_CNT_SCI_EN;
    if (value & ACPI_PM1_CNT_SLP_EN) this.#onPowerOff();
  }
}

/** The reset control register at 0xCF9. */
export class ResetControl implements BusDevice {
  readonly name = "reset-control";
  readonly #onReset: () => void;
  #value = 0;

  constructor(onReset: () => void) {
    this.#onReset = onReset;
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
    if (data.length > 0) data[0] = this.#value;
  }

  write(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const value = data[0];
    this.#value = value & (RCR_SYS_RST | RCR_FULL_RST);
    if (value & RCR_RST_CPU) this.#onReset();
  }
}

/** PM1_STS / PM1_EN bits. */
export const PM1_TMR = 1 << 0;
export const PM1_GBL = 1 << 5;
export const PM1_PWRBTN = 1 << 8;
export const PM1_SLPBTN = 1 << 9;
export const PM1_RTC = 1 << 10;
/** PM1_STS: wake status (no enable bit). */
export const PM1_WAK_STS = 1 << 15;
const ENABLE_BITS = PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC;
const STATUS_BITS = ENABLE_BITS | PM1_WAK_STS;

/** The PM1a event registers and the SCI they drive. */
export class AcpiPmEvents implements BusDevice {
  readonly name = "acpi-pm1-evt";
  #status = 0;
  #enable = 0;
  readonly #sci: IrqLine;
  #level = false;

  constructor(sci: IrqLine) {
    this.#sci = sci;
  }

  /** The power button was pressed (`vmmctl stop`). */
  pressPowerButton(): void {
    this.#status |= PM1_PWRBTN;
    this.#update();
  }

  get status(): number {
    return this.#status;
  }

  read(offset: number, data: Uint8Array): void {
    const regs = this.#status | (this.#enable << 16);
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      data[i] = o < 4 ? (regs >>> (8 * o)) & 0xff : 0;
    }
  }

  write(offset: number, data: Uint8Array): void {
    let clear = 0;
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      if (o < 2) clear |= data[i] << (8 * o);
      else if (o < 4) {
        const shift = 8 * (o - 2);
        this.#enable = ((this.#enable & ~(0xff << shift)) | (data[i] << shift)) & ENABLE_BITS;
      }
    }
    this.#status &= ~(clear & STATUS_BITS);
    this.#update();
  }

  #update(): void {
    const level = (this.#status & this.#enable) !== 0;
    if (level !== this.#level) {
      this.#level = level;
      this.#sci.setLevel(level);
    }
  }
}
