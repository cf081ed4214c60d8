/**
 * Power-off and reset registers a guest uses to end or restart the machine.
 *
 * - {@link PowerControl}: the ACPI PM1a control register at 0x604 (QEMU q35's
 *   PM block at 0x600 + 4; length 2). Setting SLP_EN (bit 13) enters the
 *   sleep state in SLP_TYP; with no sleep states here, any of them powers
 *   off. SCI_EN (bit 0) reads as set: the machine is always in ACPI mode.
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

import type { BusDevice } from "../core/device.ts";

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
