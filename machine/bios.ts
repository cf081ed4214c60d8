/**
 * The PC pieces a BIOS boot adds to the machine: the firmware image in
 * memory, fw_cfg with what SeaBIOS asks for, the PIIX3 ISA bridge and port
 * 0x92. The machine calls {@link firmwareRamRange} before it creates the VM
 * (the flash copy needs backing memory), {@link attachBiosPlatform} once the
 * buses exist but before the virtio devices take PCI slots, and
 * {@link setBootOrder} after.
 *
 * What SeaBIOS gets through fw_cfg:
 * - items: RAM size, no graphics (so it mirrors its screen to COM1), CPU
 *   count, no boot menu, no legacy ACPI/SMBIOS/e820 entries;
 * - files: `etc/e820` (the RAM ranges), `bootorder` (the boot disk's PCI
 *   path), `etc/boot-fail-wait` (-1: wait forever, like vmd, after "No
 *   bootable device"), `etc/sercon-port` (0x3F8), `etc/show-boot-menu` (0).
 * Without `etc/table-loader` SeaBIOS builds its own ACPI, MP and PIR tables.
 *
 * @module
 */

import type { VmConfig } from "../config/schema.ts";
import { basename } from "node:path";
import { DEFAULT_VGA_BIOS } from "../devices/vga/text_mode.ts";
import type { Bus } from "../core/bus.ts";
import type { GuestMemory } from "../core/guest_memory.ts";
import { E820_RAM, type RamRange } from "../core/layout.ts";
import {
  FW_CFG_ACPI_TABLES,
  FW_CFG_BOOT_MENU,
  FW_CFG_E820_TABLE,
  FW_CFG_IRQ0_OVERRIDE,
  FW_CFG_MAX_CPUS,
  FW_CFG_NB_CPUS,
  FW_CFG_NOGRAPHIC,
  FW_CFG_NUMA,
  FW_CFG_PORT_DMA,
  FW_CFG_PORT_SELECTOR,
  FW_CFG_RAM_SIZE,
  FW_CFG_SMBIOS_ENTRIES,
  FwCfg,
  u16le,
  u32le,
  u64le,
} from "../devices/fw_cfg.ts";
import { DebugCon, DEBUGCON_PORT } from "../devices/debugcon.ts";
import type { PciDevice, PciHost } from "../devices/pci.ts";
import { Piix3IsaBridge, SystemControlA } from "../devices/piix.ts";
import type { RtcMc146818 } from "../devices/rtc_mc146818.ts";
export { PirqRouter } from "../devices/piix.ts";
export { firmwareEntryState } from "../loaders/firmware.ts";
import {
  findFirmware,
  type Firmware,
  flashRange,
  placeFirmware,
  readFirmware,
} from "../loaders/firmware.ts";

/** System Control Port A. */
export const PORT_A20 = 0x92;
/**
 * Legacy ISA ports nothing answers on this machine but firmware probes
 * (parallel ports, COM2-4, the 8237 DMA controllers and page registers):
 * they read all ones, as an empty ISA bus does, without a log line each.
 */
export const ABSENT_ISA_PORTS: readonly { port: number; length: number; what: string }[] = [
  { port: 0x00, length: 16, what: "dma1" },
  { port: 0x81, length: 15, what: "dma-page" },
  { port: 0xc0, length: 32, what: "dma2" },
  { port: 0x278, length: 3, what: "lpt2" },
  { port: 0x2e8, length: 8, what: "com4" },
  { port: 0x2f8, length: 8, what: "com2" },
  { port: 0x378, length: 3, what: "lpt1" },
  { port: 0x3bc, length: 3, what: "lpt3" },
  { port: 0x3e8, length: 8, what: "com3" },
];
/** PCI slot of the PIIX3 (function 0), as on QEMU's `pc` machine. */
export const PIIX3_SLOT = 1;
/** CMOS byte SeaBIOS adds one to for the CPU count. */
export const CMOS_BIOS_SMP_COUNT = 0x5f;
/** COM1, where SeaBIOS mirrors its screen ("sercon"). */
export const SERCON_PORT = 0x3f8;

/** Finds, reads and checks the firmware for `config` (boot.bios or SeaBIOS). */
export function loadFirmwareFor(config: VmConfig): Firmware {
  return readFirmware(findFirmware(config.boot.bios));
}

/** The backing range the flash copy needs below 4 GiB (not RAM to the guest). */
export function firmwareRamRange(fw: Firmware): RamRange & { reserved: true } {
  return { ...flashRange(fw), reserved: true };
}

/**
 * `etc/e820`: one 20-byte little-endian entry (address, length, type) per RAM
 * range, the ranges below 4 GiB given as one from 0 (as QEMU does: a VGA
 * window hole is SeaBIOS's to describe, not a gap in RAM's size).
 */
export function encodeE820(all: readonly RamRange[]): Uint8Array {
  const lowEnd = all.filter((r) => r.gpa < 2 ** 32).reduce(
    (n, r) => Math.max(n, r.gpa + r.size),
    0,
  );
  const ranges = [
    ...(lowEnd > 0 ? [{ gpa: 0, size: lowEnd }] : []),
    ...all.filter((r) => r.gpa >= 2 ** 32),
  ];
  const out = new Uint8Array(20 * ranges.length);
  const v = new DataView(out.buffer);
  ranges.forEach((r, i) => {
    v.setBigUint64(20 * i, BigInt(r.gpa), true);
    v.setBigUint64(20 * i + 8, BigInt(r.size), true);
    v.setUint32(20 * i + 16, E820_RAM, true);
  });
  return out;
}

/** A SeaBIOS boot-order line for the PCI function in `slot` (a virtio-blk disk). */
export function pciBootPath(slot: number): string {
  return `/pci@i0cf8/*@${slot.toString(16)}`;
}

/** A boot-order line for target 0, LUN 0 behind the SCSI controller in `slot`. */
export function scsiBootPath(slot: number): string {
  return `${pciBootPath(slot)}/*@0/*@0,0`;
}

/** What {@link attachBiosPlatform} wires into. */
export interface BiosPlatformHost {
  readonly config: VmConfig;
  readonly pio: Bus;
  readonly pci: PciHost;
  readonly rtc: RtcMc146818;
  readonly memory: GuestMemory;
  /** Low RAM and RAM above 4 GiB (not the flash copy). */
  readonly ram: readonly RamRange[];
  reset(): void;
  /** The VGA BIOS SeaBIOS runs when the config has a display (see {@link readVgaBios}). */
  vgaBios?: { path: string; bytes: Uint8Array };
  /** Where SeaBIOS's debug log (port 0x402) goes, a line at a time; dropped without one. */
  debugLog?: (line: string) => void;
}

/** The devices a BIOS boot added. */
export interface BiosPlatform {
  fwCfg: FwCfg;
  isa: Piix3IsaBridge;
  port92: SystemControlA;
  debugcon: DebugCon;
}

/** A VGA option ROM is at most 128 KiB (the C0000-DFFFF window). */
const MAX_VGA_BIOS_BYTES = 128 * 1024;

/**
 * Reads the VGA BIOS a display needs under SeaBIOS (Debian's seabios package:
 * `vgabios-stdvga.bin`, the one for the standard VGA), with clear errors.
 */
export function readVgaBios(path = DEFAULT_VGA_BIOS): { path: string; bytes: Uint8Array } {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new Error(
      `VGA BIOS ${path} not found: install Debian's seabios package (apt-get install seabios)`,
    );
  }
  if (!info.isFile) throw new Error(`VGA BIOS ${path} is not a regular file`);
  if (info.size < 512 || info.size > MAX_VGA_BIOS_BYTES) {
    throw new Error(`VGA BIOS ${path} has ${info.size} bytes: not a VGA option ROM`);
  }
  const bytes = Deno.readFileSync(path);
  if (bytes[0] !== 0x55 || bytes[1] !== 0xaa) {
    throw new Error(`VGA BIOS ${path} has no option ROM signature (55 AA)`);
  }
  return { path, bytes };
}

/** Places the firmware and attaches fw_cfg, the PIIX3 and port 0x92. */
export function attachBiosPlatform(host: BiosPlatformHost, fw: Firmware): BiosPlatform {
  placeFirmware(host.memory, fw);
  const { config } = host;
  const vcpus = config.vm.vcpus;
  host.rtc.setCmosByte(CMOS_BIOS_SMP_COUNT, vcpus - 1);

  const fwCfg = new FwCfg({ memory: host.memory });
  fwCfg.setItem(FW_CFG_RAM_SIZE, u64le(config.vm.memoryBytes));
  // With a display, SeaBIOS runs the VGA BIOS and draws on the screen (mirrored to COM1 only when
  // the config asks); without one it is told there is no graphics and uses the serial console.
  const vga = host.vgaBios;
  fwCfg.setItem(FW_CFG_NOGRAPHIC, u16le(vga ? 0 : 1));
  if (vga) fwCfg.addFile(`vgaroms/${basename(vga.path)}`, vga.bytes);
  fwCfg.setItem(FW_CFG_NB_CPUS, u16le(vcpus));
  fwCfg.setItem(FW_CFG_MAX_CPUS, u16le(vcpus));
  fwCfg.setItem(FW_CFG_NUMA, u64le(0));
  fwCfg.setItem(FW_CFG_BOOT_MENU, u16le(0));
  fwCfg.setItem(FW_CFG_ACPI_TABLES, u16le(0));
  fwCfg.setItem(FW_CFG_SMBIOS_ENTRIES, u16le(0));
  fwCfg.setItem(FW_CFG_IRQ0_OVERRIDE, Uint8Array.of(1));
  fwCfg.setItem(FW_CFG_E820_TABLE, u32le(0));
  fwCfg.addFile("etc/e820", encodeE820(host.ram));
  // -1: SeaBIOS waits forever after "No bootable device."; 0: it resets at once, ending the VM.
  fwCfg.addFile("etc/boot-fail-wait", u32le(config.boot.onFail === "end" ? 0 : 0xffffffff));
  if (!vga || config.display?.serial) fwCfg.addFile("etc/sercon-port", u16le(SERCON_PORT));
  fwCfg.addFile("etc/show-boot-menu", u16le(0));
  host.pio.insert(FW_CFG_PORT_SELECTOR, 2, fwCfg.selectorPort);
  host.pio.insert(FW_CFG_PORT_DMA, 8, fwCfg.dmaPort);

  const isa = new Piix3IsaBridge();
  host.pci.addDevice(PIIX3_SLOT, isa);
  const port92 = new SystemControlA(() => host.reset());
  host.pio.insert(PORT_A20, 1, port92);
  const debugcon = new DebugCon(host.debugLog);
  host.pio.insert(DEBUGCON_PORT, 1, debugcon);
  for (const { port, length, what } of ABSENT_ISA_PORTS) {
    if (host.pio.ranges.some((r) => port < r.base + r.length && r.base < port + length)) continue;
    host.pio.insert(port, length, {
      name: `absent-${what}`,
      read: (_offset, data) => data.fill(0xff),
      write: () => {},
    });
  }
  return { fwCfg, isa, port92, debugcon };
}

/**
 * Adds `bootorder` naming the PCI functions in `devices` (first boots first);
 * call once the devices are on the bus. Functions not on it are skipped; `scsi`
 * names the CD-ROM (target 0, LUN 0) behind a SCSI controller.
 */
export function setBootOrder(
  fwCfg: FwCfg,
  pci: PciHost,
  devices: readonly { device: PciDevice; scsi?: boolean }[],
): void {
  const lines: string[] = [];
  for (const { device, scsi } of devices) {
    for (let slot = 0; slot < 32; slot++) {
      if (pci.device(slot) === device) lines.push(scsi ? scsiBootPath(slot) : pciBootPath(slot));
    }
  }
  if (lines.length > 0) {
    fwCfg.addFile("bootorder", new TextEncoder().encode(lines.map((l) => l + "\n").join("")));
  }
}
