/**
 * Linux bzImage loader (x86 boot protocol 2.06 and later, see the kernel's
 * Documentation/arch/x86/boot.rst).
 *
 * The real-mode setup code is not run: the protected-mode kernel goes to
 * 1 MiB, the zero page (boot_params) is built from the image's own setup
 * header plus the loader fields, and the vCPU starts at the 64-bit entry
 * (load address + 0x200, long mode, RSI = zero page) when the kernel has
 * XLF_KERNEL_64, else at the 32-bit entry (protected mode, ESI = zero page).
 *
 * @module
 */

import type { GuestMemory } from "../core/guest_memory.ts";
import {
  BOOT_STACK_TOP,
  CMDLINE_GPA,
  CMDLINE_MAX_BYTES,
  type E820Entry,
  HIGH_MEMORY_GPA,
  ZERO_PAGE_BYTES,
  ZERO_PAGE_GPA,
} from "../core/layout.ts";
import {
  claimBootAreas,
  encodeCmdline,
  formatBytes,
  hex,
  LoaderError,
  type LoadOptions,
  type LoadResult,
  placeHigh,
  Placement,
  ramEndBelow,
} from "./common.ts";
import {
  longModeState,
  protectedModeState,
  writeBootGdt,
  writeIdentityPageTables,
} from "./cpu_state.ts";

// boot_params offsets outside the setup header.
/** boot_params.ext_ramdisk_image (high 32 bits). */
export const BP_EXT_RAMDISK_IMAGE = 0x0c0;
/** boot_params.ext_ramdisk_size (high 32 bits). */
export const BP_EXT_RAMDISK_SIZE = 0x0c4;
/** boot_params.ext_cmd_line_ptr (high 32 bits). */
export const BP_EXT_CMD_LINE_PTR = 0x0c8;
/** boot_params.e820_entries (u8). */
/** boot_params.acpi_rsdp_addr (8 bytes, protocol 2.14+). */
export const BP_ACPI_RSDP_ADDR = 0x070;
export const BP_E820_ENTRIES = 0x1e8;
/** boot_params.sentinel: must be 0 from a loader that zeroes boot_params. */
export const BP_SENTINEL = 0x1ef;
/** boot_params.e820_table: 20-byte entries {u64 addr, u64 size, u32 type}. */
export const BP_E820_TABLE = 0x2d0;
/** Entries the zero page's e820 table holds. */
export const BP_E820_MAX_ENTRIES = 128;

// Setup header fields, as boot_params offsets.
/** setup_sects (u8): 0 means 4. */
export const HDR_SETUP_SECTS = 0x1f1;
/** boot_flag (u16) = 0xAA55. */
export const HDR_BOOT_FLAG = 0x1fe;
/** The 2-byte jump; its second byte gives the header length. */
export const HDR_JUMP = 0x200;
/** header (u32) = "HdrS". */
export const HDR_MAGIC = 0x202;
/** version (u16): protocol major << 8 | minor. */
export const HDR_VERSION = 0x206;
/** type_of_loader (u8). */
export const HDR_TYPE_OF_LOADER = 0x210;
/** loadflags (u8). */
export const HDR_LOADFLAGS = 0x211;
/** code32_start (u32): the 32-bit entry point. */
export const HDR_CODE32_START = 0x214;
/** ramdisk_image (u32). */
export const HDR_RAMDISK_IMAGE = 0x218;
/** ramdisk_size (u32). */
export const HDR_RAMDISK_SIZE = 0x21c;
/** heap_end_ptr (u16). */
export const HDR_HEAP_END_PTR = 0x224;
/** cmd_line_ptr (u32). */
export const HDR_CMD_LINE_PTR = 0x228;
/** initrd_addr_max (u32): highest address the initrd may occupy. */
export const HDR_INITRD_ADDR_MAX = 0x22c;
/** kernel_alignment (u32). */
export const HDR_KERNEL_ALIGNMENT = 0x230;
/** relocatable_kernel (u8). */
export const HDR_RELOCATABLE = 0x234;
/** xloadflags (u16, protocol 2.12+). */
export const HDR_XLOADFLAGS = 0x236;
/** cmdline_size (u32, protocol 2.06+): longest command line without its NUL. */
export const HDR_CMDLINE_SIZE = 0x238;
/** pref_address (u64, protocol 2.10+). */
export const HDR_PREF_ADDRESS = 0x258;
/** init_size (u32, protocol 2.10+): bytes the kernel needs from its load address. */
export const HDR_INIT_SIZE = 0x260;

/** "HdrS". */
export const SETUP_HEADER_MAGIC = 0x53726448;
/** The boot sector signature. */
export const BOOT_FLAG = 0xaa55;
/** loadflags: protected-mode code is loaded at 0x100000. */
export const LOADED_HIGH = 0x01;
/** loadflags: heap_end_ptr is valid. */
export const CAN_USE_HEAP = 0x80;
/** xloadflags: the kernel has the 64-bit entry at load address + 0x200. */
export const XLF_KERNEL_64 = 0x01;
/** type_of_loader for a loader without an assigned ID. */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** Oldest boot protocol we load (cmdline_size appeared in 2.06). */
export const MIN_BOOT_PROTOCOL = 0x0206;
/** Where the protected-mode kernel goes. */
export const BZIMAGE_LOAD_GPA = HIGH_MEMORY_GPA;
/** Offset of the 64-bit entry (startup_64) from the load address. */
export const STARTUP_64_OFFSET = 0x200;
/** heap_end_ptr value: the setup heap ends at 0xFE00 + 0x200 in the (unused) real-mode segment. */
export const HEAP_END_PTR = 0xfe00;

/** The setup header fields a loader needs. */
export interface SetupHeader {
  /** Protocol version, e.g. 0x020f. */
  version: number;
  /** Setup sectors (after the boot sector), 0 already turned into 4. */
  setupSects: number;
  loadflags: number;
  xloadflags: number;
  code32Start: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatable: boolean;
  /** Longest command line, NUL excluded. */
  cmdlineSize: number;
  prefAddress: bigint;
  /** Bytes from the load address the kernel needs while decompressing (0 before 2.10). */
  initSize: number;
  /** File offset of the protected-mode kernel: (setupSects + 1) * 512. */
  kernelOffset: number;
  /** Bytes of protected-mode kernel in the file. */
  kernelSize: number;
  /** The header bytes from 0x1F1 to its end (0x202 + byte at 0x201), as copied to the zero page. */
  raw: Uint8Array;
}

/** True when `data` has the bzImage signature: boot flag 0xAA55 and "HdrS" at 0x202. */
export function isBzImage(data: Uint8Array): boolean {
  if (data.length < HDR_MAGIC + 4) return false;
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return v.getUint16(HDR_BOOT_FLAG, true) === BOOT_FLAG &&
    v.getUint32(HDR_MAGIC, true) === SETUP_HEADER_MAGIC;
}

/** "2.15" from 0x020f. */
export function protocolString(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, "0")}`;
}

/** Parses and validates the setup header of a bzImage. */
export function parseBzImage(data: Uint8Array): SetupHeader {
  if (!isBzImage(data)) throw new LoaderError('not a bzImage (no "HdrS" setup header)');
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const version = v.getUint16(HDR_VERSION, true);
  if (version < MIN_BOOT_PROTOCOL) {
    throw new LoaderError(
      `Linux boot protocol ${protocolString(version)} is too old (need 2.06 or later)`,
    );
  }
  const headerEnd = HDR_MAGIC + data[HDR_JUMP + 1];
  if (headerEnd < HDR_CMDLINE_SIZE + 4 || data.length < headerEnd) {
    throw new LoaderError(`setup header ends at ${hex(headerEnd)}, before its 2.06 fields`);
  }
  const loadflags = data[HDR_LOADFLAGS];
  if ((loadflags & LOADED_HIGH) === 0) {
    throw new LoaderError("zImage (kernel not loaded high) is not supported; use a bzImage");
  }
  const setupSects = data[HDR_SETUP_SECTS] === 0 ? 4 : data[HDR_SETUP_SECTS];
  const kernelOffset = (setupSects + 1) * 512;
  if (kernelOffset >= data.length) {
    throw new LoaderError(
      `setup code of ${setupSects} sectors leaves no kernel in a file of ${data.length} bytes`,
    );
  }
  const at10 = version >= 0x020a && headerEnd >= HDR_INIT_SIZE + 4;
  const kernelAlignment = v.getUint32(HDR_KERNEL_ALIGNMENT, true);
  // boot.rst: a power of two. Anything else is a corrupt header, not an alignment to honour.
  if (kernelAlignment !== 0 && (kernelAlignment & (kernelAlignment - 1)) !== 0) {
    throw new LoaderError(`kernel_alignment ${hex(kernelAlignment)} is not a power of two`);
  }
  return {
    version,
    setupSects,
    loadflags,
    xloadflags: version >= 0x020c ? v.getUint16(HDR_XLOADFLAGS, true) : 0,
    code32Start: v.getUint32(HDR_CODE32_START, true),
    initrdAddrMax: v.getUint32(HDR_INITRD_ADDR_MAX, true),
    kernelAlignment,
    relocatable: data[HDR_RELOCATABLE] !== 0,
    cmdlineSize: v.getUint32(HDR_CMDLINE_SIZE, true),
    prefAddress: at10 ? v.getBigUint64(HDR_PREF_ADDRESS, true) : 0n,
    initSize: at10 ? v.getUint32(HDR_INIT_SIZE, true) : 0,
    kernelOffset,
    kernelSize: data.length - kernelOffset,
    raw: data.subarray(HDR_SETUP_SECTS, headerEnd),
  };
}

/**
 * Where the kernel decompresses and runs: `init_size` bytes from its runtime
 * start (boot.rst, "init_size"). Before protocol 2.10 (no init_size) the
 * file itself is the whole area.
 */
export function kernelRuntimeArea(
  hdr: SetupHeader,
  loadGpa: number,
): { gpa: number; size: number } {
  if (hdr.initSize === 0) return { gpa: loadGpa, size: hdr.kernelSize };
  const pref = Number(hdr.prefAddress);
  let start: number;
  if (hdr.relocatable) {
    const align = hdr.kernelAlignment > 0 ? hdr.kernelAlignment : 1;
    start = Math.ceil(Math.max(loadGpa, pref) / align) * align;
  } else {
    start = pref !== 0 ? pref : loadGpa;
  }
  return { gpa: start, size: hdr.initSize };
}

/** What goes into a Linux zero page besides the kernel's own header. */
export interface ZeroPageFields {
  /** The setup header bytes from 0x1F1 (bzImage); undefined for a vmlinux. */
  header: Uint8Array | undefined;
  cmdlineGpa: number;
  initrd?: { gpa: number; size: number };
  e820: readonly E820Entry[];
  /** boot_params.acpi_rsdp_addr (protocol 2.14+; older kernels ignore the field). */
  acpiRsdpGpa?: number;
}

/**
 * Writes boot_params at the layout's zero page: the image's setup header (or,
 * for a vmlinux, a minimal one with boot flag, "HdrS" and version 2.15), then
 * the loader fields: type_of_loader 0xFF, CAN_USE_HEAP with heap_end_ptr,
 * command line, initrd and the e820 table.
 */
export function writeLinuxZeroPage(mem: GuestMemory, fields: ZeroPageFields): void {
  const zp = ZERO_PAGE_GPA;
  if (fields.e820.length > BP_E820_MAX_ENTRIES) {
    throw new LoaderError(`e820 table of ${fields.e820.length} entries does not fit the zero page`);
  }
  mem.fill(zp, ZERO_PAGE_BYTES, 0);
  if (fields.header) {
    mem.write(zp + HDR_SETUP_SECTS, fields.header);
  } else {
    mem.writeU16(zp + HDR_BOOT_FLAG, BOOT_FLAG);
    mem.writeU32(zp + HDR_MAGIC, SETUP_HEADER_MAGIC);
    mem.writeU16(zp + HDR_VERSION, 0x020f);
    mem.writeU8(zp + HDR_LOADFLAGS, LOADED_HIGH);
    mem.writeU32(zp + HDR_KERNEL_ALIGNMENT, 0x1000000);
  }
  mem.writeU8(zp + HDR_TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
  mem.writeU8(zp + HDR_LOADFLAGS, mem.readU8(zp + HDR_LOADFLAGS) | CAN_USE_HEAP);
  mem.writeU16(zp + HDR_HEAP_END_PTR, HEAP_END_PTR);
  mem.writeU32(zp + HDR_CMD_LINE_PTR, fields.cmdlineGpa);
  mem.writeU32(zp + BP_EXT_CMD_LINE_PTR, Math.floor(fields.cmdlineGpa / 2 ** 32));
  if (fields.initrd) {
    mem.writeU32(zp + HDR_RAMDISK_IMAGE, fields.initrd.gpa % 2 ** 32);
    mem.writeU32(zp + HDR_RAMDISK_SIZE, fields.initrd.size % 2 ** 32);
    mem.writeU32(zp + BP_EXT_RAMDISK_IMAGE, Math.floor(fields.initrd.gpa / 2 ** 32));
    mem.writeU32(zp + BP_EXT_RAMDISK_SIZE, Math.floor(fields.initrd.size / 2 ** 32));
  }
  if (fields.acpiRsdpGpa) mem.writeU64(zp + BP_ACPI_RSDP_ADDR, BigInt(fields.acpiRsdpGpa));
  mem.writeU8(zp + BP_E820_ENTRIES, fields.e820.length);
  fields.e820.forEach((e, i) => {
    const at = zp + BP_E820_TABLE + i * 20;
    mem.writeU64(at, BigInt(e.gpa));
    mem.writeU64(at + 8, BigInt(e.size));
    mem.writeU32(at + 16, e.type);
  });
}

/** Loads a bzImage (see the module doc). */
export function loadBzImage(data: Uint8Array, options: LoadOptions): LoadResult {
  const { memory: mem, e820 } = options;
  const hdr = parseBzImage(data);
  const cmdline = encodeCmdline(
    options.cmdline,
    Math.min(hdr.cmdlineSize + 1, CMDLINE_MAX_BYTES),
    `the kernel's cmdline_size`,
  );
  const placement = new Placement(mem);
  const is64 = (hdr.xloadflags & XLF_KERNEL_64) !== 0;
  claimBootAreas(placement, is64);
  placement.claim(ZERO_PAGE_GPA, ZERO_PAGE_BYTES, "zero page");
  placement.put(CMDLINE_GPA, cmdline, "command line");

  // The file goes to 1 MiB; the kernel then decompresses into its runtime
  // area of init_size bytes (boot.rst: relocatable kernels run at
  // align_up(max(load address, pref_address), kernel_alignment), others at
  // pref_address). The initrd must stay clear of both.
  const run = kernelRuntimeArea(hdr, BZIMAGE_LOAD_GPA);
  const fileEnd = BZIMAGE_LOAD_GPA + hdr.kernelSize;
  const kernelRanges = run.gpa < fileEnd && BZIMAGE_LOAD_GPA < run.gpa + run.size
    ? [{ gpa: BZIMAGE_LOAD_GPA, size: Math.max(fileEnd, run.gpa + run.size) - BZIMAGE_LOAD_GPA }]
    : [{ gpa: BZIMAGE_LOAD_GPA, size: hdr.kernelSize }, run];
  for (const k of kernelRanges) {
    if (!mem.contains(k.gpa, k.size)) {
      throw new LoaderError(
        `kernel needs ${formatBytes(k.size)} at ${hex(k.gpa)} (file ${hex(hdr.kernelSize)} bytes` +
          `, init_size ${hex(hdr.initSize)}): larger than guest RAM (${formatBytes(mem.size)})`,
      );
    }
  }
  placement.put(BZIMAGE_LOAD_GPA, data.subarray(hdr.kernelOffset), "kernel", kernelRanges[0].size);
  if (kernelRanges.length > 1) placement.claim(run.gpa, run.size, "kernel runtime area");
  const kernelEnd = Math.max(...kernelRanges.map((k) => k.gpa + k.size));

  let initrd: { gpa: number; size: number } | undefined;
  if (options.initrd && options.initrd.length > 0) {
    const size = options.initrd.length;
    const limit = Math.min(hdr.initrdAddrMax + 1, ramEndBelow(e820, 2 ** 32));
    const gpa = placeHigh(placement, e820, size, HIGH_MEMORY_GPA, limit);
    if (gpa === undefined) {
      throw new LoaderError(
        `initrd of ${formatBytes(size)} is too big: no room for it below ${hex(limit)} outside ` +
          `the kernel ${hex(BZIMAGE_LOAD_GPA)}-${hex(kernelEnd)} (initrd_addr_max ` +
          `${hex(hdr.initrdAddrMax)}, guest RAM ${formatBytes(mem.size)})`,
      );
    }
    placement.put(gpa, options.initrd, "initrd");
    initrd = { gpa, size };
  }

  writeLinuxZeroPage(mem, {
    header: hdr.raw,
    cmdlineGpa: CMDLINE_GPA,
    initrd,
    e820,
    acpiRsdpGpa: options.acpiRsdpGpa,
  });
  // We loaded the kernel at 1 MiB: say so where a kernel looks for it.
  mem.writeU32(ZERO_PAGE_GPA + HDR_CODE32_START, BZIMAGE_LOAD_GPA);

  let entry: number;
  let state;
  if (is64) {
    entry = BZIMAGE_LOAD_GPA + STARTUP_64_OFFSET;
    writeBootGdt(mem, "long");
    writeIdentityPageTables(mem);
    state = longModeState(entry, { stackTop: BOOT_STACK_TOP });
  } else {
    entry = BZIMAGE_LOAD_GPA;
    writeBootGdt(mem, "protected");
    state = protectedModeState(entry, { stackTop: BOOT_STACK_TOP });
  }
  // Both protocols: boot_params in RSI/ESI; EBP, EDI, EBX zero (already).
  state.regs.rsi = BigInt(ZERO_PAGE_GPA);
  const initrdNote = initrd ? `, initrd ${formatBytes(initrd.size)} at ${hex(initrd.gpa)}` : "";
  return {
    format: "bzimage",
    state,
    entry,
    summary: `bzImage protocol ${protocolString(hdr.version)}, ${is64 ? 64 : 32}-bit entry at ` +
      `${hex(entry)}, kernel ${hex(BZIMAGE_LOAD_GPA)}-${hex(kernelEnd)}${initrdNote}, ` +
      `cmdline ${cmdline.length - 1} bytes`,
    used: placement.sorted(),
  };
}
