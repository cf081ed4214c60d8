/**
 * Multiboot v1 loader (Multiboot Specification 0.6.96), behaving like
 * QEMU's `-kernel` where the specification leaves room.
 *
 * The kernel is either ELF (32-bit, or 64-bit with a 32-bit entry as GRUB
 * allows; PT_LOAD segments go to p_paddr) or, when header flag 16 is set,
 * loaded by the header's address fields (the "a.out kludge"), which take
 * precedence over ELF as in GRUB and QEMU. The boot information structure
 * carries memory sizes, the command line, the initrd as the one module,
 * the e820 map and the boot loader name. The vCPU starts in 32-bit protected
 * mode with EAX = 0x2BADB002 and EBX = the information structure.
 *
 * @module
 */

import {
  BOOT_STACK_TOP,
  CMDLINE_GPA,
  CMDLINE_MAX_BYTES,
  E820_RAM,
  type E820Entry,
  HIGH_MEMORY_GPA,
  MULTIBOOT_INFO_GPA,
  MULTIBOOT_INFO_MAX_BYTES,
  PAGE_SIZE,
} from "../core/layout.ts";
import {
  alignUp,
  claimBootAreas,
  encodeCmdline,
  formatBytes,
  hex,
  LoaderError,
  type LoadOptions,
  type LoadResult,
  Placement,
} from "./common.ts";
import { protectedModeState, writeBootGdt } from "./cpu_state.ts";
import { elfClass, loadElfSegments } from "./elf.ts";

/** Magic of the Multiboot header in the kernel image. */
export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
/** Magic the loader leaves in EAX. */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header must lie entirely in the first 8192 bytes, 4-byte aligned. */
export const MULTIBOOT_SEARCH_BYTES = 8192;
/** Header flag 0: modules page aligned (we always do). */
export const MULTIBOOT_PAGE_ALIGN = 1 << 0;
/** Header flag 1: memory information wanted (we always give it). */
export const MULTIBOOT_MEMORY_INFO = 1 << 1;
/** Header flag 2: video mode wanted (ignored: text console only). */
export const MULTIBOOT_VIDEO_MODE = 1 << 2;
/** Header flag 16: the address fields are valid (a.out kludge). */
export const MULTIBOOT_AOUT_KLUDGE = 1 << 16;

/** Info flag 0: mem_lower/mem_upper valid. */
export const MULTIBOOT_INFO_MEMORY = 1 << 0;
/** Info flag 2: cmdline valid. */
export const MULTIBOOT_INFO_CMDLINE = 1 << 2;
/** Info flag 3: mods_count/mods_addr valid. */
export const MULTIBOOT_INFO_MODS = 1 << 3;
/** Info flag 6: mmap_length/mmap_addr valid. */
export const MULTIBOOT_INFO_MEM_MAP = 1 << 6;
/** Info flag 9: boot_loader_name valid. */
export const MULTIBOOT_INFO_BOOT_LOADER_NAME = 1 << 9;

/** Offsets in the Multiboot information structure. */
export const MBI_FLAGS = 0;
/** KiB of lower memory (from 0). */
export const MBI_MEM_LOWER = 4;
/** KiB of upper memory (from 1 MiB to the first hole). */
export const MBI_MEM_UPPER = 8;
/** Physical address of the command line. */
export const MBI_CMDLINE = 16;
/** Number of modules. */
export const MBI_MODS_COUNT = 20;
/** Physical address of the module list. */
export const MBI_MODS_ADDR = 24;
/** Byte length of the memory map. */
export const MBI_MMAP_LENGTH = 44;
/** Physical address of the memory map. */
export const MBI_MMAP_ADDR = 48;
/** Physical address of the boot loader name. */
export const MBI_BOOT_LOADER_NAME = 64;
/** Bytes reserved for the information structure (88 in 0.6.96, 116 with framebuffer fields). */
export const MBI_BYTES = 0x80;
/** The name we give in boot_loader_name. */
export const BOOT_LOADER_NAME = "vmmctl";

/** Header flag bits 0-15 a loader must understand; we understand 0, 1 and 2. */
const REQUIRED_FLAGS_MASK = 0xffff;
const SUPPORTED_REQUIRED_FLAGS = MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO |
  MULTIBOOT_VIDEO_MODE;

/** A Multiboot header found in a kernel image. */
export interface MultibootHeader {
  /** File offset of the header. */
  offset: number;
  flags: number;
  /** The address fields, present when flag 16 is set and the file holds them. */
  address?: {
    headerAddr: number;
    loadAddr: number;
    loadEndAddr: number;
    bssEndAddr: number;
    entryAddr: number;
  };
  /** The video fields, present when flag 2 is set and the file holds them. */
  video?: { modeType: number; width: number; height: number; depth: number };
}

/**
 * Finds a Multiboot v1 header: magic 0x1BADB002 at a 4-byte aligned offset
 * in the first 8192 bytes, with magic + flags + checksum = 0 (mod 2^32).
 */
export function findMultibootHeader(data: Uint8Array): MultibootHeader | undefined {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const limit = Math.min(data.length, MULTIBOOT_SEARCH_BYTES);
  for (let off = 0; off + 12 <= limit; off += 4) {
    if (v.getUint32(off, true) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = v.getUint32(off + 4, true);
    const checksum = v.getUint32(off + 8, true);
    if (((MULTIBOOT_HEADER_MAGIC + flags + checksum) >>> 0) !== 0) continue;
    const header: MultibootHeader = { offset: off, flags };
    const u32 = (i: number) => v.getUint32(off + i, true);
    if ((flags & MULTIBOOT_AOUT_KLUDGE) !== 0 && off + 32 <= data.length) {
      header.address = {
        headerAddr: u32(12),
        loadAddr: u32(16),
        loadEndAddr: u32(20),
        bssEndAddr: u32(24),
        entryAddr: u32(28),
      };
    }
    if ((flags & MULTIBOOT_VIDEO_MODE) !== 0 && off + 48 <= data.length) {
      header.video = { modeType: u32(32), width: u32(36), height: u32(40), depth: u32(44) };
    }
    return header;
  }
  return undefined;
}

/** mem_lower and mem_upper in KiB, from the e820 RAM ranges at 0 and at 1 MiB. */
export function multibootMemory(e820: readonly E820Entry[]): { lower: number; upper: number } {
  const at = (gpa: number) => e820.find((e) => e.type === E820_RAM && e.gpa === gpa);
  const low = at(0);
  const high = at(HIGH_MEMORY_GPA);
  return {
    lower: low ? Math.floor(Math.min(low.size, 640 * 1024) / 1024) : 0,
    upper: high ? Math.floor(high.size / 1024) : 0,
  };
}

/** Loads the image by the header's address fields; returns entry and end of bss. */
function loadAout(
  data: Uint8Array,
  header: MultibootHeader,
  placement: Placement,
): { entry: number; lowest: number; highest: number } {
  const a = header.address;
  if (!a) {
    throw new LoaderError("Multiboot header with flag 16 is cut off before its address fields");
  }
  if (a.headerAddr < a.loadAddr) {
    throw new LoaderError(
      `Multiboot header_addr ${hex(a.headerAddr)} is below load_addr ${hex(a.loadAddr)}`,
    );
  }
  const fileOffset = header.offset - (a.headerAddr - a.loadAddr);
  if (fileOffset < 0) {
    throw new LoaderError(
      `Multiboot load_addr ${hex(a.loadAddr)} lies before the start of the file ` +
        `(header_addr ${hex(a.headerAddr)} at file offset ${hex(header.offset)})`,
    );
  }
  let loadSize: number;
  if (a.loadEndAddr === 0) {
    loadSize = data.length - fileOffset;
  } else {
    if (a.loadEndAddr < a.loadAddr) {
      throw new LoaderError(
        `Multiboot load_end_addr ${hex(a.loadEndAddr)} is below load_addr ${hex(a.loadAddr)}`,
      );
    }
    loadSize = a.loadEndAddr - a.loadAddr;
    if (fileOffset + loadSize > data.length) {
      throw new LoaderError(
        `Multiboot load_end_addr ${hex(a.loadEndAddr)} needs ${hex(loadSize)} bytes from file ` +
          `offset ${hex(fileOffset)}, past the end of the file (${data.length} bytes)`,
      );
    }
  }
  const loadEnd = a.loadAddr + loadSize;
  let memSize = loadSize;
  if (a.bssEndAddr !== 0) {
    if (a.bssEndAddr < loadEnd) {
      throw new LoaderError(
        `Multiboot bss_end_addr ${hex(a.bssEndAddr)} is below the end of the loaded image ` +
          `${hex(loadEnd)}`,
      );
    }
    memSize = a.bssEndAddr - a.loadAddr;
  }
  if (a.entryAddr < a.loadAddr || a.entryAddr >= a.loadAddr + memSize) {
    throw new LoaderError(
      `Multiboot entry_addr ${hex(a.entryAddr)} is outside the image ` +
        `${hex(a.loadAddr)}-${hex(a.loadAddr + memSize)}`,
    );
  }
  placement.put(a.loadAddr, data.subarray(fileOffset, fileOffset + loadSize), "kernel", memSize);
  return { entry: a.entryAddr, lowest: a.loadAddr, highest: a.loadAddr + memSize };
}

/** Loads a Multiboot v1 kernel (see the module doc). */
export function loadMultiboot(data: Uint8Array, options: LoadOptions): LoadResult {
  const { memory: mem, e820 } = options;
  const header = findMultibootHeader(data);
  if (!header) throw new LoaderError("no Multiboot header in the first 8192 bytes");
  const unsupported = header.flags & REQUIRED_FLAGS_MASK & ~SUPPORTED_REQUIRED_FLAGS;
  if (unsupported !== 0) {
    throw new LoaderError(
      `Multiboot header requires features this loader does not have (flags ${hex(unsupported)}` +
        `; supported: page-aligned modules, memory info, video mode ignored)`,
    );
  }
  const warnings: string[] = [];
  if ((header.flags & MULTIBOOT_VIDEO_MODE) !== 0) {
    const v = header.video;
    const mode = v ? ` (mode ${v.modeType}, ${v.width}x${v.height}x${v.depth})` : "";
    warnings.push(`warning: video mode request${mode} ignored, text console only`);
  }

  const placement = new Placement(mem);
  claimBootAreas(placement, false);
  placement.claim(MULTIBOOT_INFO_GPA, MULTIBOOT_INFO_MAX_BYTES, "Multiboot info");
  const cmdline = encodeCmdline(options.cmdline, CMDLINE_MAX_BYTES, "the command line area");
  placement.put(CMDLINE_GPA, cmdline, "command line");

  let kernel: { entry: number; lowest: number; highest: number };
  let kind: string;
  if (header.address) {
    kernel = loadAout(data, header, placement);
    kind = "a.out kludge";
  } else if ((header.flags & MULTIBOOT_AOUT_KLUDGE) !== 0) {
    throw new LoaderError("Multiboot header with flag 16 is cut off before its address fields");
  } else {
    const cls = elfClass(data);
    if (cls === undefined) {
      throw new LoaderError(
        "Multiboot kernel is not ELF and its header has no address fields (flag 16)",
      );
    }
    const seg = loadElfSegments(mem, data, placement);
    if (seg.highest > 2 ** 32) {
      throw new LoaderError(
        `Multiboot ELF${cls} kernel extends above 4 GiB (to ${hex(seg.highest)})`,
      );
    }
    if (seg.entry >= 2 ** 32) {
      throw new LoaderError(`Multiboot ELF${cls} entry point ${hex(seg.entry)} is above 4 GiB`);
    }
    kernel = seg;
    kind = `ELF${cls}`;
  }

  // The information structure, then mmap, module list and strings in the bounded area.
  const mbi = MULTIBOOT_INFO_GPA;
  const mmapGpa = mbi + MBI_BYTES;
  const mmapBytes = e820.length * 24;
  const modsGpa = mmapGpa + mmapBytes;
  const nameGpa = modsGpa + 16;
  const name = encodeCmdline(BOOT_LOADER_NAME, 64, "the boot loader name area");
  const modStringGpa = nameGpa + name.length;
  const modString = encodeCmdline(options.initrdName ?? "initrd", 1024, "the module string area");
  if (modStringGpa + modString.length > mbi + MULTIBOOT_INFO_MAX_BYTES) {
    throw new LoaderError(
      `Multiboot information (memory map of ${e820.length} entries) does not fit its ` +
        `${MULTIBOOT_INFO_MAX_BYTES}-byte area`,
    );
  }
  mem.fill(mbi, MULTIBOOT_INFO_MAX_BYTES, 0);
  const memory = multibootMemory(e820);
  mem.writeU32(
    mbi + MBI_FLAGS,
    MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE | MULTIBOOT_INFO_MODS |
      MULTIBOOT_INFO_MEM_MAP | MULTIBOOT_INFO_BOOT_LOADER_NAME,
  );
  mem.writeU32(mbi + MBI_MEM_LOWER, memory.lower);
  mem.writeU32(mbi + MBI_MEM_UPPER, memory.upper);
  mem.writeU32(mbi + MBI_CMDLINE, CMDLINE_GPA);
  mem.writeU32(mbi + MBI_MODS_COUNT, 0);
  mem.writeU32(mbi + MBI_MODS_ADDR, modsGpa);
  mem.writeU32(mbi + MBI_MMAP_LENGTH, mmapBytes);
  mem.writeU32(mbi + MBI_MMAP_ADDR, mmapGpa);
  mem.writeU32(mbi + MBI_BOOT_LOADER_NAME, nameGpa);
  e820.forEach((e, i) => {
    // Each entry: u32 size (20, not counting itself), u64 base, u64 length, u32 type.
    const at = mmapGpa + i * 24;
    mem.writeU32(at, 20);
    mem.writeU64(at + 4, BigInt(e.gpa));
    mem.writeU64(at + 12, BigInt(e.size));
    mem.writeU32(at + 20, e.type);
  });
  mem.write(nameGpa, name);

  let moduleNote = "";
  if (options.initrd && options.initrd.length > 0) {
    const size = options.initrd.length;
    const gpa = alignUp(kernel.highest, PAGE_SIZE);
    if (gpa + size > 2 ** 32) {
      throw new LoaderError(
        `module of ${formatBytes(size)} at ${hex(gpa)} would extend above 4 GiB`,
      );
    }
    placement.put(gpa, options.initrd, "module");
    mem.write(modStringGpa, modString);
    mem.writeU32(mbi + MBI_MODS_COUNT, 1);
    mem.writeU32(modsGpa, gpa); // mod_start
    mem.writeU32(modsGpa + 4, gpa + size); // mod_end (exclusive, as GRUB and QEMU)
    mem.writeU32(modsGpa + 8, modStringGpa);
    moduleNote = `, module ${formatBytes(size)} at ${hex(gpa)}`;
  }

  writeBootGdt(mem, "protected");
  const state = protectedModeState(kernel.entry, { stackTop: BOOT_STACK_TOP });
  state.regs.rax = BigInt(MULTIBOOT_BOOTLOADER_MAGIC);
  state.regs.rbx = BigInt(mbi);
  const summary = [
    `Multiboot ${kind}, 32-bit entry at ${hex(kernel.entry)}, kernel ` +
    `${hex(kernel.lowest)}-${hex(kernel.highest)}${moduleNote}, cmdline ${
      cmdline.length - 1
    } bytes`,
    ...warnings,
  ].join("; ");
  return { format: "multiboot", state, entry: kernel.entry, summary, used: placement.sorted() };
}
