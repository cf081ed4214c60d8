/**
 * QEMU's firmware configuration interface (fw_cfg), as SeaBIOS reads it:
 * numbered items and named files the machine fills before the guest starts,
 * read through a selector/data port pair or by DMA.
 *
 * | port | length | access |
 * | --- | --- | --- |
 * | 0x510 | 2 | offset 0, 16-bit write: select an item (resets the read offset) |
 * | 0x511 | (offset 1) | 8-bit read: the next byte of the item (0 past its end or when none) |
 * | 0x514 | 8 | DMA: 32-bit big-endian writes, high half at offset 0, low half at 4 starts the transfer; reads give "QEMU CFG" |
 *
 * A DMA descriptor (16 bytes, big-endian: control, length, address) asks to
 * select (control bit 3, item in bits 31-16), read (bit 1), skip (bit 2) or
 * write (bit 4). The device answers by storing the control word back as 0,
 * or with the error bit (bit 0) when the buffer is outside guest RAM or the
 * guest tried to write (no item here is writable). Reads past an item's end
 * give zeros, as QEMU does.
 *
 * Every access is bounded: the descriptor and the buffer go through the
 * memory's range check, so a guest can never make the device touch memory
 * outside its RAM.
 *
 * @example
 * ```ts
 * import { FwCfg, FW_CFG_SIGNATURE } from "./fw_cfg.ts";
 * const mem = new Uint8Array(4096);
 * const fw = new FwCfg({
 *   memory: {
 *     contains: (gpa, n) => gpa >= 0 && gpa + n <= mem.length,
 *     read: (gpa, n) => mem.slice(gpa, gpa + n),
 *     write: (gpa, data) => mem.set(data, gpa),
 *     fill: (gpa, n, v = 0) => void mem.fill(v, gpa, gpa + n),
 *   },
 * });
 * fw.addFile("etc/boot-fail-wait", Uint8Array.of(0xff, 0xff, 0xff, 0xff));
 * fw.selectorPort.write(0, Uint8Array.of(FW_CFG_SIGNATURE, 0));
 * const b = new Uint8Array(1);
 * fw.selectorPort.read(1, b); // "Q"
 * ```
 * @module
 */

import { type BusDevice, guestLog } from "../core/device.ts";

/** I/O port of the selector register (the data register is the next port). */
export const FW_CFG_PORT_SELECTOR = 0x510;
/** I/O port of the data register. */
export const FW_CFG_PORT_DATA = 0x511;
/** I/O port of the DMA address register (8 bytes). */
export const FW_CFG_PORT_DMA = 0x514;

/** Item: the four bytes "QEMU". */
export const FW_CFG_SIGNATURE = 0x00;
/** Item: u32 feature bits ({@link FW_CFG_VERSION} | {@link FW_CFG_VERSION_DMA}). */
export const FW_CFG_ID = 0x01;
/** Item: 16-byte machine UUID. */
export const FW_CFG_UUID = 0x02;
/** Item: u64 RAM size. */
export const FW_CFG_RAM_SIZE = 0x03;
/** Item: u16, non-zero when there is no graphical console. */
export const FW_CFG_NOGRAPHIC = 0x04;
/** Item: u16 number of CPUs present at boot. */
export const FW_CFG_NB_CPUS = 0x05;
/** Item: u64 count of NUMA nodes, then the node maps. */
export const FW_CFG_NUMA = 0x0d;
/** Item: u16, non-zero to show the boot menu. */
export const FW_CFG_BOOT_MENU = 0x0e;
/** Item: u16 largest CPU count. */
export const FW_CFG_MAX_CPUS = 0x0f;
/** Item: the file directory (big-endian count, then 64-byte entries). */
export const FW_CFG_FILE_DIR = 0x19;
/** Selector of the first file. */
export const FW_CFG_FILE_FIRST = 0x20;
/** Selector bit: the x86-specific items. */
export const FW_CFG_ARCH_LOCAL = 0x8000;
/** x86 item: u16 count of legacy ACPI tables (we hand over none). */
export const FW_CFG_ACPI_TABLES = FW_CFG_ARCH_LOCAL + 0;
/** x86 item: u16 count of legacy SMBIOS entries. */
export const FW_CFG_SMBIOS_ENTRIES = FW_CFG_ARCH_LOCAL + 1;
/** x86 item: u8, 1 when the PIT's IRQ 0 reaches IOAPIC pin 2. */
export const FW_CFG_IRQ0_OVERRIDE = FW_CFG_ARCH_LOCAL + 2;
/** x86 item: u32 count of e820 reservations (legacy; files use etc/e820). */
export const FW_CFG_E820_TABLE = FW_CFG_ARCH_LOCAL + 3;
/** Selector bit QEMU once used for writes; ignored when selecting. */
export const FW_CFG_WRITE_CHANNEL = 0x4000;

/** ID bit: the port interface. */
export const FW_CFG_VERSION = 0x01;
/** ID bit: the DMA interface. */
export const FW_CFG_VERSION_DMA = 0x02;

/** DMA control: error (set by the device). */
export const FW_CFG_DMA_CTL_ERROR = 0x01;
/** DMA control: read. */
export const FW_CFG_DMA_CTL_READ = 0x02;
/** DMA control: skip. */
export const FW_CFG_DMA_CTL_SKIP = 0x04;
/** DMA control: select the item in bits 31-16 first. */
export const FW_CFG_DMA_CTL_SELECT = 0x08;
/** DMA control: write. */
export const FW_CFG_DMA_CTL_WRITE = 0x10;
/** "QEMU CFG" as a big-endian u64: what a read of the DMA register gives. */
export const FW_CFG_DMA_SIGNATURE = 0x51454d5520434647n;

/** Bytes of a file name in a directory entry, NUL included. */
export const FW_CFG_MAX_FILE_NAME = 56;
/** Most files the directory holds (selectors 0x20..0x3fff fit far more; a bound keeps it small). */
export const FW_CFG_MAX_FILES = 256;
/** Bytes of one DMA descriptor. */
export const FW_CFG_DMA_DESCRIPTOR_BYTES = 16;

/** The guest memory fw_cfg DMA may touch; every call is range-checked first. */
export interface FwCfgMemory {
  contains(gpa: number, length: number): boolean;
  read(gpa: number, length: number): Uint8Array;
  write(gpa: number, data: Uint8Array): void;
  fill(gpa: number, length: number, value?: number): void;
}

/** Options of {@link FwCfg}. */
export interface FwCfgOptions {
  /** Guest RAM for DMA; without it the DMA interface is not offered. */
  memory?: FwCfgMemory;
}

/** A named file in the directory. */
export interface FwCfgFile {
  name: string;
  selector: number;
  bytes: Uint8Array;
}

/** The fw_cfg device: items, files, the port interface and DMA. */
export class FwCfg {
  /** Ports 0x510-0x511: the selector (offset 0, 16-bit) and data (offset 1, 8-bit) registers. */
  readonly selectorPort: BusDevice;
  /** Ports 0x514-0x51b: the DMA address register. */
  readonly dmaPort: BusDevice;
  readonly #items = new Map<number, Uint8Array>();
  readonly #files: FwCfgFile[] = [];
  readonly #memory?: FwCfgMemory;
  #selected: Uint8Array | undefined;
  #offset = 0;
  #dmaHigh = 0;

  constructor(options: FwCfgOptions = {}) {
    this.#memory = options.memory;
    this.setItem(FW_CFG_SIGNATURE, new TextEncoder().encode("QEMU"));
    this.setItem(
      FW_CFG_ID,
      u32le(FW_CFG_VERSION | (this.#memory ? FW_CFG_VERSION_DMA : 0)),
    );
    this.#updateDirectory();
    this.selectorPort = {
      name: "fw_cfg",
      read: (offset, data) => this.#readPort(offset, data),
      write: (offset, data) => this.#writePort(offset, data),
    };
    this.dmaPort = {
      name: "fw_cfg-dma",
      read: (offset, data) => this.#readDma(offset, data),
      write: (offset, data) => this.#writeDma(offset, data),
    };
  }

  /** Sets numbered item `key` (below 0x20, or an x86 item with bit 15) to `bytes`. */
  setItem(key: number, bytes: Uint8Array): void {
    const index = key & ~FW_CFG_ARCH_LOCAL;
    if (!Number.isInteger(key) || key < 0 || key > 0xffff || index >= FW_CFG_FILE_FIRST) {
      throw new RangeError(`fw_cfg item "0x${key.toString(16)}" is not a numbered item`);
    }
    this.#items.set(key, bytes);
  }

  /** Adds a file to the directory; returns its selector. Names are unique, under 56 bytes. */
  addFile(name: string, bytes: Uint8Array): number {
    const encoded = new TextEncoder().encode(name);
    if (encoded.length === 0 || encoded.length >= FW_CFG_MAX_FILE_NAME) {
      throw new RangeError(`fw_cfg file name "${name}" must be 1 to 55 bytes`);
    }
    if (this.#files.some((f) => f.name === name)) {
      throw new Error(`fw_cfg file "${name}" exists already`);
    }
    if (this.#files.length >= FW_CFG_MAX_FILES) {
      throw new RangeError(`fw_cfg holds at most ${FW_CFG_MAX_FILES} files`);
    }
    const selector = FW_CFG_FILE_FIRST + this.#files.length;
    this.#files.push({ name, selector, bytes });
    this.#updateDirectory();
    return selector;
  }

  /** The files, in directory order (sorted by name). */
  files(): readonly FwCfgFile[] {
    return [...this.#files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The bytes of the item or file `selector` selects, if any. */
  item(selector: number): Uint8Array | undefined {
    const key = selector & ~FW_CFG_WRITE_CHANNEL;
    if ((key & ~FW_CFG_ARCH_LOCAL) >= FW_CFG_FILE_FIRST && !(key & FW_CFG_ARCH_LOCAL)) {
      return this.#files[key - FW_CFG_FILE_FIRST]?.bytes;
    }
    return this.#items.get(key);
  }

  #updateDirectory(): void {
    const files = this.files();
    const dir = new Uint8Array(4 + 64 * files.length);
    const view = new DataView(dir.buffer);
    view.setUint32(0, files.length);
    files.forEach((f, i) => {
      const at = 4 + 64 * i;
      view.setUint32(at, f.bytes.length);
      view.setUint16(at + 4, f.selector);
      dir.set(new TextEncoder().encode(f.name), at + 8);
    });
    this.#items.set(FW_CFG_FILE_DIR, dir);
  }

  #select(selector: number): void {
    this.#selected = this.item(selector & 0xffff);
    this.#offset = 0;
  }

  #readPort(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset === 1 && data.length === 1) {
      const item = this.#selected;
      if (item && this.#offset < item.length) data[0] = item[this.#offset];
      if (this.#offset < 0xffffffff) this.#offset++;
    }
  }

  #writePort(offset: number, data: Uint8Array): void {
    if (offset === 0 && data.length === 2) this.#select(data[0] | (data[1] << 8));
    else guestLog.log(`fw_cfg: ${data.length}-byte write at offset ${offset} ignored`);
  }

  #readDma(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (!this.#memory) return;
    const sig = new Uint8Array(8);
    new DataView(sig.buffer).setBigUint64(0, FW_CFG_DMA_SIGNATURE);
    for (let i = 0; i < data.length && offset + i < 8; i++) data[i] = sig[offset + i];
  }

  #writeDma(offset: number, data: Uint8Array): void {
    if (!this.#memory) return;
    if (data.length !== 4 || (offset !== 0 && offset !== 4)) {
      guestLog.log(`fw_cfg: ${data.length}-byte DMA register write at offset ${offset} ignored`);
      return;
    }
    const value = new DataView(data.buffer, data.byteOffset, 4).getUint32(0); // big-endian
    if (offset === 0) {
      this.#dmaHigh = value;
      return;
    }
    const gpa = this.#dmaHigh * 2 ** 32 + value;
    this.#dmaHigh = 0;
    this.#transfer(gpa);
  }

  /** Runs the DMA descriptor at `gpa` and stores its control word back. */
  #transfer(gpa: number): void {
    const mem = this.#memory!;
    if (!Number.isSafeInteger(gpa) || !mem.contains(gpa, FW_CFG_DMA_DESCRIPTOR_BYTES)) {
      guestLog.log(`fw_cfg: DMA descriptor at 0x${gpa.toString(16)} is outside guest RAM`);
      return;
    }
    const desc = new DataView(mem.read(gpa, FW_CFG_DMA_DESCRIPTOR_BYTES).buffer);
    const control = desc.getUint32(0);
    const length = desc.getUint32(4);
    const address = Number(desc.getBigUint64(8));
    let error = false;
    if (control & FW_CFG_DMA_CTL_SELECT) this.#select(control >>> 16);
    const read = (control & FW_CFG_DMA_CTL_READ) !== 0;
    const write = !read && (control & FW_CFG_DMA_CTL_WRITE) !== 0;
    const skip = !read && !write && (control & FW_CFG_DMA_CTL_SKIP) !== 0;
    if (read || write || skip) {
      if (write) {
        error = length > 0; // nothing here is writable
      } else if (read && !mem.contains(address, length)) {
        error = length > 0;
      } else {
        const item = this.#selected;
        const available = item ? Math.max(0, item.length - this.#offset) : 0;
        const n = Math.min(length, available);
        if (read) {
          if (n > 0) mem.write(address, item!.subarray(this.#offset, this.#offset + n));
          if (length > n) mem.fill(address + n, length - n, 0);
        }
        this.#offset += n;
      }
    }
    const back = new Uint8Array(4);
    new DataView(back.buffer).setUint32(0, error ? FW_CFG_DMA_CTL_ERROR : 0);
    mem.write(gpa, back);
  }
}

/** `value` as 4 little-endian bytes. */
export function u32le(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

/** `value` as 2 little-endian bytes. */
export function u16le(value: number): Uint8Array {
  return Uint8Array.of(value & 0xff, (value >> 8) & 0xff);
}

/** `value` as 8 little-endian bytes. */
export function u64le(value: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(value), true);
  return b;
}
