/**
 * The PC machine's fixed port-I/O map: the one table both the machine's
 * wiring (machine/machine.ts) and the config checks (config/validate.ts) read,
 * so `vmmctl check` refuses exactly the `exit_port` values `vmmctl up` would.
 *
 * | ports | device |
 * | --- | --- |
 * | 0x20-0x21, 0xA0-0xA1, 0x4D0-0x4D1 | PICs and ELCR |
 * | 0x40-0x43, 0x61 | PIT and port 0x61 |
 * | 0x60, 0x64 | i8042 |
 * | 0x70-0x71 | RTC/CMOS |
 * | 0x80 | POST codes |
 * | 0x3F8-0x3FF | COM1 |
 * | 0x604-0x605 | ACPI-style power-off |
 * | 0xCF8-0xCFF | PCI configuration (a byte at 0xCF9: reset control) |
 * | 0xC000 + 0x100 x n | virtio legacy I/O BARs, one per function |
 *
 * The PIC, PIT and ELCR ports are reserved even with the in-kernel irqchip,
 * which then claims them before an exit reaches us.
 *
 * @module
 */

/** A fixed range of ports. */
export interface PortRange {
  readonly name: string;
  readonly base: number;
  readonly length: number;
}

/** Base port of each fixed device. */
export const PORTS = {
  PIC_MASTER: 0x20,
  /** The IMCR's select (0x22) and data (0x23) registers. */
  IMCR: 0x22,
  PIT: 0x40,
  I8042_DATA: 0x60,
  PORT61: 0x61,
  I8042_COMMAND: 0x64,
  RTC: 0x70,
  POST: 0x80,
  PIC_SLAVE: 0xa0,
  COM1: 0x3f8,
  ELCR: 0x4d0,
  /** ACPI PM1a event block (status, enable); PM1a control follows at POWER. */
  PM1A_EVT: 0x600,
  POWER: 0x604,
  /** 0xCF8 (32-bit) PCI address; a byte at 0xCF9 is reset control. */
  PCI_ADDRESS: 0xcf8,
  PCI_DATA: 0xcfc,
} as const;

/** How many ports each fixed device decodes from its base. */
export const PORT_BYTES: Readonly<Record<keyof typeof PORTS, number>> = {
  PIC_MASTER: 2,
  IMCR: 2,
  PIT: 4,
  I8042_DATA: 1,
  PORT61: 1,
  I8042_COMMAND: 1,
  RTC: 2,
  POST: 1,
  PIC_SLAVE: 2,
  COM1: 8,
  ELCR: 2,
  PM1A_EVT: 4,
  POWER: 2,
  PCI_ADDRESS: 4,
  PCI_DATA: 4,
};

/** The VGA registers and the Bochs VBE (DISPI) index/data ports, with `[display]` only. */
export const VGA_PORTS = { BASE: 0x3c0, COUNT: 0x20, DISPI: 0x1ce, DISPI_COUNT: 3 } as const;

/** Ports the debug exit device decodes from `exit_port`. */
export const DEBUG_EXIT_BYTES = 4;
/** First port of the virtio legacy I/O BARs. */
export const VIRTIO_IO_BASE = 0xc000;
/** Port stride between two virtio functions' legacy BARs. */
export const VIRTIO_IO_STRIDE = 0x100;

/**
 * How many virtio functions a machine with these devices has: the entropy
 * device, one per disk and interface, and vmmci (devices/virtio/attach.ts).
 */
export function virtioFunctionCount(disks: number, interfaces: number): number {
  return 2 + disks + interfaces;
}

/**
 * Every fixed range, plus the legacy I/O BARs of `virtioFunctions` virtio
 * functions and, with `display`, the VGA ports.
 */
export function fixedPortRanges(virtioFunctions: number, display = false): PortRange[] {
  const fixed = (Object.keys(PORTS) as (keyof typeof PORTS)[]).map((k) => ({
    name: k.toLowerCase().replaceAll("_", " "),
    base: PORTS[k],
    length: PORT_BYTES[k],
  }));
  const bars = Array.from({ length: virtioFunctions }, (_, i) => ({
    name: `virtio function ${i} I/O BAR`,
    base: VIRTIO_IO_BASE + VIRTIO_IO_STRIDE * i,
    length: VIRTIO_IO_STRIDE,
  }));
  const vga = display
    ? [
      { name: "vga registers", base: VGA_PORTS.BASE, length: VGA_PORTS.COUNT },
      { name: "vga dispi", base: VGA_PORTS.DISPI, length: VGA_PORTS.DISPI_COUNT },
    ]
    : [];
  return [...fixed, ...bars, ...vga];
}

/** The first fixed range `[base, base+length)` overlaps, if any. */
export function portClash(
  base: number,
  length: number,
  virtioFunctions: number,
  display = false,
): PortRange | undefined {
  return fixedPortRanges(virtioFunctions, display).find((r) =>
    base < r.base + r.length && r.base < base + length
  );
}
