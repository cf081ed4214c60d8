/**
 * PCI configuration mechanism #1, a type-0 configuration space with BARs
 * and capabilities, and the i440FX host bridge.
 *
 * | port | device | access |
 * | --- | --- | --- |
 * | 0xCF8 | `PciHost.addressPort` (length 4) | 32-bit: bit 31 enable, 23-16 bus, 15-11 device, 10-8 function, 7-2 register |
 * | 0xCFC | `PciHost.dataPort` (length 4) | any width at any sub-offset: the selected dword's bytes |
 *
 * Only bus 0 exists. Absent devices and functions read all ones and ignore
 * writes, so a scan finds nothing there.
 *
 * {@link PciConfigSpace} holds 256 bytes with a write mask per byte, so
 * read-only fields stay put and BAR sizing works by itself: writing all ones
 * to a BAR reads back the size mask. When a BAR's decoded address changes
 * (a new base, or the command register's IO/MEM enable bit) its owner hears
 * about it through `onMove(base)`, or `onMove(undefined)` when it stops
 * decoding, and moves the device on its bus.
 *
 * @example
 * ```ts
 * import { PciConfigSpace, PciHost } from "./pci.ts";
 * const host = new PciHost();
 * const config = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
 * config.addMemoryBar(0, 0x4000, (base) => console.log("BAR0 at", base), { is64: true });
 * host.addDevice(1, { config });
 * host.addressPort.write(0, Uint8Array.of(0x00, 0x08, 0x00, 0x80)); // bus 0, device 1, reg 0
 * const id = new Uint8Array(4);
 * host.dataPort.read(0, id); // f4 1a 41 10
 * ```
 * @module
 */

import { type BusDevice, getLe, guestLog } from "../core/device.ts";

/** Vendor ID (16 bits, read-only). */
export const PCI_VENDOR_ID = 0x00;
/** Device ID (16 bits, read-only). */
export const PCI_DEVICE_ID = 0x02;
/** Command register (16 bits). */
export const PCI_COMMAND = 0x04;
/** Status register (16 bits). */
export const PCI_STATUS = 0x06;
/** Revision ID (8 bits). */
export const PCI_REVISION_ID = 0x08;
/** Class code: programming interface, subclass, base class (24 bits from here). */
export const PCI_CLASS_PROG = 0x09;
/** Cache line size (8 bits, writable). */
export const PCI_CACHE_LINE_SIZE = 0x0c;
/** Latency timer (8 bits, writable). */
export const PCI_LATENCY_TIMER = 0x0d;
/** Header type (bit 7: multi-function). */
export const PCI_HEADER_TYPE = 0x0e;
/** The first of six base address registers. */
export const PCI_BASE_ADDRESS_0 = 0x10;
/** Subsystem vendor ID. */
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
/** Subsystem ID. */
export const PCI_SUBSYSTEM_ID = 0x2e;
/** Expansion ROM base address (not implemented: reads 0). */
export const PCI_ROM_ADDRESS = 0x30;
/** Capabilities pointer. */
export const PCI_CAPABILITY_LIST = 0x34;
/** Interrupt line (8 bits, writable: firmware's routing note). */
export const PCI_INTERRUPT_LINE = 0x3c;
/** Interrupt pin (0 none, 1-4 INTA#-INTD#). */
export const PCI_INTERRUPT_PIN = 0x3d;

/** Command: I/O space decode. */
export const PCI_COMMAND_IO = 0x0001;
/** Command: memory space decode. */
export const PCI_COMMAND_MEMORY = 0x0002;
/** Command: bus master. */
export const PCI_COMMAND_MASTER = 0x0004;
/** Command: parity error response. */
export const PCI_COMMAND_PARITY = 0x0040;
/** Command: SERR# enable. */
export const PCI_COMMAND_SERR = 0x0100;
/** Command: INTx emulation disable. */
export const PCI_COMMAND_INTX_DISABLE = 0x0400;
/** Status: INTx asserted. */
export const PCI_STATUS_INTERRUPT = 0x0008;
/** Status: capabilities list present. */
export const PCI_STATUS_CAP_LIST = 0x0010;
/** Status bits that are write-one-to-clear error flags. */
export const PCI_STATUS_ERROR_BITS = 0xf900;

/** BAR bit 0: I/O space. */
export const PCI_BAR_SPACE_IO = 0x01;
/** BAR bits 2-1 = 10: 64-bit memory BAR. */
export const PCI_BAR_MEM_TYPE_64 = 0x04;
/** BAR bit 3: prefetchable memory. */
export const PCI_BAR_MEM_PREFETCH = 0x08;

/** Capability ID: power management. */
export const PCI_CAP_ID_PM = 0x01;
/** Capability ID: MSI. */
export const PCI_CAP_ID_MSI = 0x05;
/** Capability ID: vendor specific (virtio uses it). */
export const PCI_CAP_ID_VNDR = 0x09;
/** Capability ID: PCI Express. */
export const PCI_CAP_ID_EXP = 0x10;
/** Capability ID: MSI-X. */
export const PCI_CAP_ID_MSIX = 0x11;

/** Config address register: enable bit. */
export const PCI_CONFIG_ENABLE = 0x80000000;

/** Size of a conventional PCI configuration space. */
export const PCI_CONFIG_SPACE_BYTES = 256;
/** Where the first capability goes (after the standard header). */
const FIRST_CAPABILITY = 0x40;
/** Highest guest-physical address + 1 a 64-bit BAR may decode at (52-bit space). */
const MAX_MEMORY_ADDRESS = 2 ** 52;
/** I/O space on x86 ends at 64 KiB. */
const IO_SPACE_END = 0x10000;
/** Command bits a guest may change. */
const COMMAND_WRITABLE = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
  PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

/** Identity of a function, written into its header at construction. */
export interface PciConfigOptions {
  vendorId: number;
  deviceId: number;
  /** Base class << 16 | subclass << 8 | programming interface. */
  classCode: number;
  revisionId?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 0 = no interrupt, 1-4 = INTA#-INTD#. */
  interruptPin?: number;
  /** Sets header type bit 7 (function 0 of a multi-function device). */
  multiFunction?: boolean;
}

/** Called with a BAR's new decoded base, or `undefined` when it stops decoding. */
export type BarMoveListener = (base: number | undefined) => void;

/** Options of a memory BAR. */
export interface MemoryBarOptions {
  /** A 64-bit BAR, taking this index and the next. */
  is64?: boolean;
  /** Prefetchable memory (no side effects on reads). */
  prefetchable?: boolean;
}

/** A registered BAR. */
export interface PciBar {
  readonly index: number;
  readonly kind: "io" | "memory";
  readonly sizeBytes: number;
  readonly is64: boolean;
  readonly prefetchable: boolean;
  /** Where it decodes now, if it does. */
  readonly base: number | undefined;
}

/**
 * Device-specific behaviour for a range of config space (offsets relative
 * to the range's start). `read` may overwrite the stored bytes it is given;
 * `write` sees the bytes the guest wrote, after the masked store.
 */
export interface PciConfigHandler {
  read?(offset: number, data: Uint8Array): void;
  write?(offset: number, data: Uint8Array): void;
}

interface BarState {
  index: number;
  kind: "io" | "memory";
  sizeBytes: number;
  is64: boolean;
  prefetchable: boolean;
  onMove: BarMoveListener;
  base: number | undefined;
}

interface Region {
  start: number;
  length: number;
  handler: PciConfigHandler;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** What {@link barOnBus} needs of a bus (core/bus.ts's `Bus`). */
export interface BarBus {
  readonly name: string;
  tryInsert(
    base: number,
    length: number,
    device: BusDevice,
  ): { base: number; length: number; device: { name: string } } | undefined;
  remove(device: BusDevice, base?: number): boolean;
}

/**
 * A {@link BarMoveListener} that keeps `device` on `bus` at the BAR's base.
 * The guest picks BAR addresses, so a base that overlaps another device
 * (COM1, the PIC, 0xCF8, another BAR) must not end the VM: the BAR then does
 * not decode (logged, rate-limited) and the device already there keeps its
 * range, until the guest moves the BAR again. Like a real machine with a
 * misprogrammed BAR, the guest sees its driver's accesses go elsewhere, and
 * nothing else changes.
 */
export function barOnBus(bus: BarBus, length: number, device: BusDevice): BarMoveListener {
  let at: number | undefined;
  return (base) => {
    if (at !== undefined) bus.remove(device, at);
    at = undefined;
    if (base === undefined) return;
    const clash = bus.tryInsert(base, length, device);
    if (clash) {
      guestLog.log(
        `pci: "${device.name}" BAR moved to 0x${base.toString(16)}+0x${length.toString(16)} ` +
          `overlaps "${clash.device.name}" at 0x${clash.base.toString(16)} on the ${bus.name} ` +
          "bus; it does not decode until moved",
      );
      return;
    }
    at = base;
  };
}

/** A function's 256-byte type-0 configuration space. */
export class PciConfigSpace {
  /** The stored bytes (what the guest reads, unless a handler overrides). */
  readonly bytes: Uint8Array = new Uint8Array(PCI_CONFIG_SPACE_BYTES);
  readonly #writeMask = new Uint8Array(PCI_CONFIG_SPACE_BYTES);
  readonly #clearMask = new Uint8Array(PCI_CONFIG_SPACE_BYTES); // write-one-to-clear bits
  readonly #view = new DataView(this.bytes.buffer);
  readonly #bars: (BarState | undefined)[] = new Array(6).fill(undefined);
  readonly #regions: Region[] = [];
  #lastCapability = 0;
  #capabilityEnd = FIRST_CAPABILITY;

  constructor(options: PciConfigOptions) {
    this.setU16(PCI_VENDOR_ID, options.vendorId);
    this.setU16(PCI_DEVICE_ID, options.deviceId);
    this.setU8(PCI_REVISION_ID, options.revisionId ?? 0);
    this.setU8(PCI_CLASS_PROG, options.classCode & 0xff);
    this.setU16(PCI_CLASS_PROG + 1, (options.classCode >> 8) & 0xffff);
    this.setU8(PCI_HEADER_TYPE, options.multiFunction ? 0x80 : 0x00);
    this.setU16(PCI_SUBSYSTEM_VENDOR_ID, options.subsystemVendorId ?? 0);
    this.setU16(PCI_SUBSYSTEM_ID, options.subsystemId ?? 0);
    const pin = options.interruptPin ?? 0;
    if (!Number.isInteger(pin) || pin < 0 || pin > 4) {
      throw new RangeError(`PCI interrupt pin ${pin} is not in 0..4`);
    }
    this.setU8(PCI_INTERRUPT_PIN, pin);
    this.setWriteMask(PCI_COMMAND, 2, COMMAND_WRITABLE);
    this.#clearMask[PCI_STATUS] = PCI_STATUS_ERROR_BITS & 0xff;
    this.#clearMask[PCI_STATUS + 1] = PCI_STATUS_ERROR_BITS >> 8;
    this.setWriteMask(PCI_CACHE_LINE_SIZE, 1, 0xff);
    this.setWriteMask(PCI_LATENCY_TIMER, 1, 0xff);
    this.setWriteMask(PCI_INTERRUPT_LINE, 1, 0xff);
  }

  // --- owner-side accessors (no masks) ----------------------------------

  /** Reads a byte. */
  u8(offset: number): number {
    return this.bytes[offset];
  }

  /** Reads a little-endian 16-bit value. */
  u16(offset: number): number {
    return this.#view.getUint16(offset, true);
  }

  /** Reads a little-endian 32-bit value. */
  u32(offset: number): number {
    return this.#view.getUint32(offset, true);
  }

  /** Stores a byte, bypassing the write mask. */
  setU8(offset: number, value: number): void {
    this.#view.setUint8(offset, value & 0xff);
  }

  /** Stores a 16-bit value, bypassing the write mask. */
  setU16(offset: number, value: number): void {
    this.#view.setUint16(offset, value & 0xffff, true);
  }

  /** Stores a 32-bit value, bypassing the write mask. */
  setU32(offset: number, value: number): void {
    this.#view.setUint32(offset, value >>> 0, true);
  }

  /** Makes the bits of `mask` (little-endian, `length` bytes) guest-writable at `offset`. */
  setWriteMask(offset: number, length: number, mask: number): void {
    this.#checkRange(offset, length);
    for (let i = 0; i < length; i++) {
      this.#writeMask[offset + i] = Math.floor(mask / 256 ** i) & 0xff;
    }
  }

  /** The command register. */
  get command(): number {
    return this.u16(PCI_COMMAND);
  }

  /** The interrupt line register (the IRQ firmware or the guest noted). */
  get interruptLine(): number {
    return this.u8(PCI_INTERRUPT_LINE);
  }

  /** The interrupt pin (0 none, 1-4 INTA#-INTD#). */
  get interruptPin(): number {
    return this.u8(PCI_INTERRUPT_PIN);
  }

  /** Whether the guest disabled INTx (command bit 10). */
  get intxDisabled(): boolean {
    return (this.command & PCI_COMMAND_INTX_DISABLE) !== 0;
  }

  /** Mirrors the INTx level into the status register's interrupt bit. */
  setInterruptStatus(asserted: boolean): void {
    const status = this.u16(PCI_STATUS);
    this.setU16(
      PCI_STATUS,
      asserted ? status | PCI_STATUS_INTERRUPT : status & ~PCI_STATUS_INTERRUPT,
    );
  }

  // --- BARs ---------------------------------------------------------------

  /**
   * Declares BAR `index` as `sizeBytes` (a power of two, 4-256) of I/O space.
   * `onMove` hears the base whenever the decoded address changes.
   */
  addIoBar(index: number, sizeBytes: number, onMove: BarMoveListener): void {
    if (!isPowerOfTwo(sizeBytes) || sizeBytes < 4 || sizeBytes > 256) {
      throw new RangeError(`PCI I/O BAR size ${sizeBytes} is not a power of two in 4..256`);
    }
    this.#claimBar(index, 1);
    const offset = PCI_BASE_ADDRESS_0 + 4 * index;
    this.setU32(offset, PCI_BAR_SPACE_IO);
    this.setWriteMask(offset, 4, (~(sizeBytes - 1) & ~0x3) >>> 0);
    this.#bars[index] = {
      index,
      kind: "io",
      sizeBytes,
      is64: false,
      prefetchable: false,
      onMove,
      base: undefined,
    };
  }

  /**
   * Declares BAR `index` as `sizeBytes` (a power of two, at least 16) of
   * memory space; a 64-bit BAR also takes index + 1.
   */
  addMemoryBar(
    index: number,
    sizeBytes: number,
    onMove: BarMoveListener,
    options: MemoryBarOptions = {},
  ): void {
    const is64 = options.is64 ?? false;
    const maxBytes = is64 ? MAX_MEMORY_ADDRESS / 2 : 2 ** 31;
    if (!isPowerOfTwo(sizeBytes) || sizeBytes < 16 || sizeBytes > maxBytes) {
      throw new RangeError(
        `PCI memory BAR size ${sizeBytes} is not a power of two in 16..${maxBytes}`,
      );
    }
    this.#claimBar(index, is64 ? 2 : 1);
    const offset = PCI_BASE_ADDRESS_0 + 4 * index;
    const flags = (is64 ? PCI_BAR_MEM_TYPE_64 : 0) |
      (options.prefetchable ? PCI_BAR_MEM_PREFETCH : 0);
    this.setU32(offset, flags);
    const lowMask = sizeBytes >= 2 ** 32 ? 0 : (~(sizeBytes - 1) & ~0xf) >>> 0;
    this.setWriteMask(offset, 4, lowMask);
    if (is64) {
      const highSize = Math.max(1, sizeBytes / 2 ** 32);
      this.setU32(offset + 4, 0);
      this.setWriteMask(offset + 4, 4, ~(highSize - 1) >>> 0);
    }
    this.#bars[index] = {
      index,
      kind: "memory",
      sizeBytes,
      is64,
      prefetchable: options.prefetchable ?? false,
      onMove,
      base: undefined,
    };
  }

  /** BAR `index` as registered, or undefined. */
  bar(index: number): PciBar | undefined {
    const b = this.#bars[index];
    if (!b) return undefined;
    const { onMove: _, ...info } = b;
    return info;
  }

  #claimBar(index: number, count: number): void {
    if (!Number.isInteger(index) || index < 0 || index + count > 6) {
      throw new RangeError(`PCI BAR index ${index} (taking ${count}) is not within 0..5`);
    }
    for (let i = index; i < index + count; i++) {
      if (this.#bars[i] || (i > 0 && this.#bars[i - 1]?.is64)) {
        throw new Error(`PCI BAR ${i} is already in use`);
      }
    }
  }

  /**
   * Where BAR `bar` decodes with the current registers, if anywhere. The
   * sizing pattern (all writable bits set) must never decode: for I/O and
   * 32-bit BARs it ends at or beyond the top of the space, so the limits
   * exclude it; a 64-bit BAR is checked for it in its low dword.
   */
  #decode(bar: BarState): number | undefined {
    const offset = PCI_BASE_ADDRESS_0 + 4 * bar.index;
    const low = this.u32(offset);
    if (bar.kind === "io") {
      if (!(this.command & PCI_COMMAND_IO)) return undefined;
      const base = (low & ~0x3) >>> 0;
      return base !== 0 && base + bar.sizeBytes <= IO_SPACE_END ? base : undefined;
    }
    if (!(this.command & PCI_COMMAND_MEMORY)) return undefined;
    const lowAddress = (low & ~0xf) >>> 0;
    if (!bar.is64) {
      return lowAddress !== 0 && lowAddress + bar.sizeBytes < 2 ** 32 ? lowAddress : undefined;
    }
    const lowMask = this.#maskAt(offset);
    if (lowMask !== 0 && lowAddress === lowMask) return undefined;
    const base = this.u32(offset + 4) * 2 ** 32 + lowAddress;
    return base !== 0 && base + bar.sizeBytes <= MAX_MEMORY_ADDRESS ? base : undefined;
  }

  #maskAt(offset: number): number {
    const m = this.#writeMask;
    return (m[offset] | (m[offset + 1] << 8) | (m[offset + 2] << 16) | (m[offset + 3] << 24)) >>> 0;
  }

  #updateBars(): void {
    for (const bar of this.#bars) {
      if (!bar) continue;
      const base = this.#decode(bar);
      if (base === bar.base) continue;
      bar.base = base;
      bar.onMove(base);
    }
  }

  // --- capabilities -------------------------------------------------------

  /**
   * Appends a capability with ID `id` whose bytes after the ID and next
   * pointer are `body`; links it into the list, sets the status register's
   * capability bit and returns its offset. `writeMask` (same length as
   * `body`) makes body bits guest-writable.
   */
  addCapability(id: number, body: ArrayLike<number>, writeMask?: ArrayLike<number>): number {
    const offset = (this.#capabilityEnd + 3) & ~3;
    const length = 2 + body.length;
    if (offset + length > PCI_CONFIG_SPACE_BYTES) {
      throw new RangeError(`PCI capability 0x${id.toString(16)} of ${length} bytes does not fit`);
    }
    if (writeMask && writeMask.length !== body.length) {
      throw new RangeError(
        `PCI capability write mask has ${writeMask.length} bytes, body ${body.length}`,
      );
    }
    this.setU8(offset, id);
    this.setU8(offset + 1, 0);
    for (let i = 0; i < body.length; i++) {
      this.setU8(offset + 2 + i, body[i]);
      this.#writeMask[offset + 2 + i] = writeMask ? writeMask[i] & 0xff : 0;
    }
    if (this.#lastCapability === 0) this.setU8(PCI_CAPABILITY_LIST, offset);
    else this.setU8(this.#lastCapability + 1, offset);
    this.setU16(PCI_STATUS, this.u16(PCI_STATUS) | PCI_STATUS_CAP_LIST);
    this.#lastCapability = offset;
    this.#capabilityEnd = offset + length;
    return offset;
  }

  /** Offsets of the capabilities with ID `id`, in list order. */
  findCapabilities(id: number): number[] {
    const found: number[] = [];
    let offset = this.u8(PCI_CAPABILITY_LIST);
    for (let hops = 0; offset !== 0 && hops < 64; hops++) {
      if (this.u8(offset) === id) found.push(offset);
      offset = this.u8(offset + 1);
    }
    return found;
  }

  /** Gives `[start, start+length)` device-specific read/write behaviour. */
  addRegion(start: number, length: number, handler: PciConfigHandler): void {
    this.#checkRange(start, length);
    this.#regions.push({ start, length, handler });
  }

  // --- guest-side access --------------------------------------------------

  /** A guest read of `data.length` bytes at `offset` (bytes past 255 read all ones). */
  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      data[i] = o < PCI_CONFIG_SPACE_BYTES ? this.bytes[o] : 0xff;
    }
    for (const r of this.#regions) {
      if (!r.handler.read) continue;
      const from = Math.max(offset, r.start);
      const to = Math.min(offset + data.length, r.start + r.length);
      if (from < to) r.handler.read(from - r.start, data.subarray(from - offset, to - offset));
    }
  }

  /** A guest write at `offset`: masked store, then BAR and handler updates. */
  write(offset: number, data: Uint8Array): void {
    const end = Math.min(offset + data.length, PCI_CONFIG_SPACE_BYTES);
    for (let o = offset; o < end; o++) {
      const v = data[o - offset];
      const mask = this.#writeMask[o];
      const cleared = v & this.#clearMask[o];
      this.bytes[o] = (this.bytes[o] & ~mask & ~cleared) | (v & mask);
    }
    if (
      (offset < PCI_COMMAND + 2 && end > PCI_COMMAND) ||
      (offset < PCI_BASE_ADDRESS_0 + 24 && end > PCI_BASE_ADDRESS_0)
    ) {
      this.#updateBars();
    }
    for (const r of this.#regions) {
      if (!r.handler.write) continue;
      const from = Math.max(offset, r.start);
      const to = Math.min(end, r.start + r.length);
      if (from < to) r.handler.write(from - r.start, data.subarray(from - offset, to - offset));
    }
  }

  #checkRange(offset: number, length: number): void {
    if (
      !Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 ||
      offset + length > PCI_CONFIG_SPACE_BYTES
    ) {
      throw new RangeError(`PCI config range ${offset}+${length} is outside 256 bytes`);
    }
  }
}

/** A PCI function: anything with a configuration space. */
export interface PciDevice {
  readonly config: PciConfigSpace;
}

/** i440FX: the first PAM (programmable attribute map) register, for 0xF0000-0xFFFFF. */
export const I440FX_PAM0 = 0x59;
/** i440FX: number of PAM registers (0x59-0x5F). */
export const I440FX_PAM_COUNT = 7;
/** i440FX: the SMRAM control register. */
export const I440FX_SMRAM = 0x72;

/**
 * The i440FX host bridge (PMC), function 0 of slot 0, with QEMU's subsystem
 * IDs (1af4:1100: SeaBIOS takes them as "running on QEMU" and then reads
 * fw_cfg). The PAM registers and SMRAM are plain read/write storage: guest
 * RAM backs 0xC0000-0xFFFFF all the time, as on vmd, so shadowing needs no
 * remapping (see loaders/firmware.ts).
 */
export class PciHostBridge implements PciDevice {
  readonly config: PciConfigSpace = new PciConfigSpace({
    vendorId: 0x8086,
    deviceId: 0x1237,
    classCode: 0x060000,
    revisionId: 0x02,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
  });

  constructor() {
    // PAM0 has only the high nibble (0xF0000 segment); PAM1-6 two nibbles of RE/WE bits.
    this.config.setWriteMask(I440FX_PAM0, 1, 0x30);
    this.config.setWriteMask(I440FX_PAM0 + 1, I440FX_PAM_COUNT - 1, 0x333333333333);
    this.config.setU8(I440FX_SMRAM, 0x02);
    this.config.setWriteMask(I440FX_SMRAM, 1, 0x78);
  }

  /** PAM register `index` (0-6) as the guest last wrote it. */
  pam(index: number): number {
    return this.config.u8(I440FX_PAM0 + index);
  }
}

/** Options of {@link PciHost}. */
export interface PciHostOptions {
  /**
   * The device answering byte accesses to port 0xCF9 (the PIIX reset
   * control register), which shares the 0xCF8 dword with the address
   * register: it is called at offset 0. Without one they are ignored.
   */
  resetControl?: BusDevice;
}

/** Configuration mechanism #1 on bus 0, with the host bridge in slot 0. */
export class PciHost {
  /** Port 0xCF8 (length 4): the configuration address register. */
  readonly addressPort: BusDevice;
  /** Port 0xCFC (length 4): the configuration data window. */
  readonly dataPort: BusDevice;
  /** The host bridge in slot 0. */
  readonly bridge: PciHostBridge = new PciHostBridge();
  readonly #functions = new Map<number, PciDevice>();
  #address = 0;

  constructor(options: PciHostOptions = {}) {
    const resetControl = options.resetControl;
    this.addressPort = {
      name: "pci-address",
      read: (offset, data) => {
        if (offset === 0 && data.length === 4) {
          data.set([
            this.#address & 0xff,
            (this.#address >>> 8) & 0xff,
            (this.#address >>> 16) & 0xff,
            this.#address >>> 24,
          ]);
        } else if (offset === 1 && data.length === 1 && resetControl) {
          resetControl.read(0, data);
        } else {
          data.fill(0xff); // only dword accesses reach the address register
        }
      },
      write: (offset, data) => {
        if (offset === 0 && data.length === 4) this.#address = getLe(data);
        else if (offset === 1 && data.length === 1 && resetControl) resetControl.write(0, data);
      },
    };
    this.dataPort = {
      name: "pci-data",
      read: (offset, data) => {
        const target = this.#target(offset, data.length);
        if (target) target.device.config.read(target.register, data);
        else data.fill(0xff);
      },
      write: (offset, data) => {
        const target = this.#target(offset, data.length);
        if (target) target.device.config.write(target.register, data);
      },
    };
    this.addDevice(0, this.bridge);
  }

  /** The configuration address register as last written. */
  get address(): number {
    return this.#address;
  }

  /** Puts `device` at bus 0, `slot` (0-31), function `fn` (0-7). */
  addDevice(slot: number, device: PciDevice, fn = 0): void {
    if (
      !Number.isInteger(slot) || slot < 0 || slot > 31 || !Number.isInteger(fn) || fn < 0 || fn > 7
    ) {
      throw new RangeError(`PCI slot ${slot} function ${fn} is not within 0..31 / 0..7`);
    }
    const key = slot * 8 + fn;
    if (this.#functions.has(key)) throw new Error(`PCI slot ${slot} function ${fn} is taken`);
    this.#functions.set(key, device);
  }

  /** The function at `slot`/`fn`, if any. */
  device(slot: number, fn = 0): PciDevice | undefined {
    return this.#functions.get(slot * 8 + fn);
  }

  /** The lowest slot with nothing in it, or undefined when all 32 are used. */
  freeSlot(): number | undefined {
    for (let slot = 0; slot < 32; slot++) {
      let used = false;
      for (let fn = 0; fn < 8 && !used; fn++) used = this.#functions.has(slot * 8 + fn);
      if (!used) return slot;
    }
    return undefined;
  }

  /** The function and register the address register selects, for an access at `offset`. */
  #target(offset: number, length: number): { device: PciDevice; register: number } | undefined {
    const a = this.#address;
    if (!(a & PCI_CONFIG_ENABLE)) return undefined;
    if (offset + length > 4) {
      guestLog.log(`pci: data port access of ${length} bytes at offset ${offset} ignored`);
      return undefined;
    }
    const bus = (a >>> 16) & 0xff;
    if (bus !== 0) return undefined;
    const device = this.#functions.get((a >>> 8) & 0xff); // slot << 3 | function
    if (!device) return undefined;
    return { device, register: (a & 0xfc) + offset };
  }
}
