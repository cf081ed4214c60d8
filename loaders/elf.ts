/**
 * ELF kernels: parsing (32- and 64-bit, little-endian x86), segment loading
 * shared with the Multiboot loader (and a later OpenBSD loader), and the two
 * direct-boot ABIs for an ELF64 kernel:
 *
 * - PVH (format "pvh"): the kernel carries the Xen note
 *   XEN_ELFNOTE_PHYS32_ENTRY; it is entered in 32-bit protected mode with
 *   EBX = an `hvm_start_info` (version 1, command line, memory map, initrd as
 *   module 0).
 * - The 64-bit Linux boot protocol (format "elf64", a vmlinux): zero page
 *   with e820 table and command line, RSI = zero page, long mode on
 *   identity-mapped page tables.
 *
 * Segments are loaded at their physical address (p_paddr).
 *
 * @module
 */

import type { GuestMemory } from "../core/guest_memory.ts";
import {
  BOOT_STACK_TOP,
  CMDLINE_GPA,
  CMDLINE_MAX_BYTES,
  type E820Entry,
  PVH_INFO_GPA,
  PVH_INFO_MAX_BYTES,
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
import { writeLinuxZeroPage } from "./bzimage.ts";

/** ELF identification: "\x7fELF". */
export const ELF_MAGIC = 0x464c457f;
/** e_ident[EI_CLASS] values. */
export const ELFCLASS32 = 1;
/** 64-bit objects. */
export const ELFCLASS64 = 2;
/** e_machine: Intel 80386. */
export const EM_386 = 3;
/** e_machine: AMD x86-64. */
export const EM_X86_64 = 62;
/** p_type: loadable segment. */
export const PT_LOAD = 1;
/** p_type: note segment. */
export const PT_NOTE = 4;
/** sh_type: note section. */
export const SHT_NOTE = 7;
/** Xen ELF note type carrying the 32-bit PVH entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** `hvm_start_info.magic`. */
export const HVM_START_MAGIC = 0x336ec578;
/** Size of `hvm_start_info` version 1. */
export const HVM_START_INFO_BYTES = 56;
/** Size of one `hvm_memmap_table_entry`. */
export const HVM_MEMMAP_ENTRY_BYTES = 24;
/** Size of one `hvm_modlist_entry`. */
export const HVM_MODLIST_ENTRY_BYTES = 32;

/** One program header, addresses as bigint (ELF64 virtual addresses exceed 2^53). */
export interface ElfProgramHeader {
  type: number;
  flags: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  fileSize: bigint;
  memSize: bigint;
  align: bigint;
}

/** e_type of an executable file. */
export const ET_EXEC = 2;
/** e_type of a shared object or position-independent executable. */
export const ET_DYN = 3;
const ELF_TYPE_NAMES: Record<number, string> = {
  0: "ET_NONE",
  1: "ET_REL: a relocatable object, not linked",
  4: "ET_CORE: a core dump",
};

/** A parsed ELF header with its program headers. */
export interface ElfImage {
  elfClass: 32 | 64;
  /** e_type (2 = executable). */
  type: number;
  machine: number;
  entry: bigint;
  programHeaders: ElfProgramHeader[];
  sectionHeaderOffset: bigint;
  sectionHeaderSize: number;
  sectionCount: number;
}

/** True when `data` starts with the ELF magic. */
export function isElf(data: Uint8Array): boolean {
  return data.length >= 4 && view(data).getUint32(0, true) === ELF_MAGIC;
}

/** The ELF class (32 or 64) of `data`, or undefined when it is not ELF. */
export function elfClass(data: Uint8Array): 32 | 64 | undefined {
  if (!isElf(data) || data.length < 5) return undefined;
  return data[4] === ELFCLASS32 ? 32 : data[4] === ELFCLASS64 ? 64 : undefined;
}

function view(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

/** Checks that `[offset, offset+size)` lies within the file. */
function within(data: Uint8Array, offset: bigint, size: bigint, what: string): void {
  if (offset < 0n || size < 0n || offset + size > BigInt(data.length)) {
    throw new LoaderError(
      `${what} at file offset ${hex(offset)} of ${hex(size)} bytes runs past the end of the ` +
        `file (${data.length} bytes)`,
    );
  }
}

/** Parses the ELF header and program headers; throws LoaderError on anything malformed. */
export function parseElf(data: Uint8Array): ElfImage {
  const cls = elfClass(data);
  if (cls === undefined) throw new LoaderError("not an ELF file of class 32 or 64");
  const ehsize = cls === 64 ? 64 : 52;
  if (data.length < ehsize) throw new LoaderError("ELF header is truncated");
  if (data[5] !== 1) throw new LoaderError(`ELF data encoding "${data[5]}" is not little-endian`);
  const v = view(data);
  const type = v.getUint16(16, true);
  // Only an executable (or a position-independent one) has addresses to load at.
  if (type !== ET_EXEC && type !== ET_DYN) {
    const name = ELF_TYPE_NAMES[type] ?? "unknown";
    throw new LoaderError(`ELF type ${type} (${name}) is not an executable (ET_EXEC or ET_DYN)`);
  }
  const machine = v.getUint16(18, true);
  if (machine !== EM_386 && machine !== EM_X86_64) {
    throw new LoaderError(`ELF machine "${machine}" is not x86 (3) or x86-64 (62)`);
  }
  const entry = cls === 64 ? v.getBigUint64(24, true) : BigInt(v.getUint32(24, true));
  const phoff = cls === 64 ? v.getBigUint64(32, true) : BigInt(v.getUint32(28, true));
  const shoff = cls === 64 ? v.getBigUint64(40, true) : BigInt(v.getUint32(32, true));
  const phentsize = v.getUint16(cls === 64 ? 54 : 42, true);
  const phnum = v.getUint16(cls === 64 ? 56 : 44, true);
  const shentsize = v.getUint16(cls === 64 ? 58 : 46, true);
  const shnum = v.getUint16(cls === 64 ? 60 : 48, true);
  const minPhent = cls === 64 ? 56 : 32;
  if (phnum > 0 && phentsize < minPhent) {
    throw new LoaderError(`ELF program header size "${phentsize}" is too small`);
  }
  within(data, phoff, BigInt(phentsize) * BigInt(phnum), "ELF program header table");
  const programHeaders: ElfProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = Number(phoff) + i * phentsize;
    programHeaders.push(
      cls === 64
        ? {
          type: v.getUint32(o, true),
          flags: v.getUint32(o + 4, true),
          offset: v.getBigUint64(o + 8, true),
          vaddr: v.getBigUint64(o + 16, true),
          paddr: v.getBigUint64(o + 24, true),
          fileSize: v.getBigUint64(o + 32, true),
          memSize: v.getBigUint64(o + 40, true),
          align: v.getBigUint64(o + 48, true),
        }
        : {
          type: v.getUint32(o, true),
          offset: BigInt(v.getUint32(o + 4, true)),
          vaddr: BigInt(v.getUint32(o + 8, true)),
          paddr: BigInt(v.getUint32(o + 12, true)),
          fileSize: BigInt(v.getUint32(o + 16, true)),
          memSize: BigInt(v.getUint32(o + 20, true)),
          flags: v.getUint32(o + 24, true),
          align: BigInt(v.getUint32(o + 28, true)),
        },
    );
  }
  return {
    elfClass: cls,
    type,
    machine,
    entry,
    programHeaders,
    sectionHeaderOffset: shoff,
    sectionHeaderSize: shentsize,
    sectionCount: shnum,
  };
}

/** An ELF note: its name (without NUL), type and descriptor bytes. */
export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

function parseNotes(data: Uint8Array, offset: bigint, size: bigint, align: bigint): ElfNote[] {
  within(data, offset, size, "ELF note area");
  const pad = align === 8n ? 8 : 4;
  const v = view(data);
  const notes: ElfNote[] = [];
  let o = Number(offset);
  const end = o + Number(size);
  while (o + 12 <= end) {
    const namesz = v.getUint32(o, true);
    const descsz = v.getUint32(o + 4, true);
    const type = v.getUint32(o + 8, true);
    const nameAt = o + 12;
    const descAt = nameAt + Math.ceil(namesz / pad) * pad;
    const next = descAt + Math.ceil(descsz / pad) * pad;
    if (descAt + descsz > end || next < o) break; // truncated note: stop, as readelf does
    const nameBytes = data.subarray(nameAt, nameAt + namesz);
    const nul = nameBytes.indexOf(0);
    notes.push({
      name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes),
      type,
      desc: data.subarray(descAt, descAt + descsz),
    });
    o = next;
  }
  return notes;
}

/** All notes of PT_NOTE segments, or of SHT_NOTE sections when there is no PT_NOTE. */
export function elfNotes(data: Uint8Array, elf: ElfImage = parseElf(data)): ElfNote[] {
  const notes: ElfNote[] = [];
  for (const ph of elf.programHeaders) {
    if (ph.type === PT_NOTE) notes.push(...parseNotes(data, ph.offset, ph.fileSize, ph.align));
  }
  if (notes.length > 0 || elf.sectionCount === 0) return notes;
  const minShent = elf.elfClass === 64 ? 64 : 40;
  if (elf.sectionHeaderSize < minShent) return notes;
  const table = BigInt(elf.sectionHeaderSize) * BigInt(elf.sectionCount);
  if (elf.sectionHeaderOffset + table > BigInt(data.length)) return notes;
  const v = view(data);
  for (let i = 0; i < elf.sectionCount; i++) {
    const o = Number(elf.sectionHeaderOffset) + i * elf.sectionHeaderSize;
    if (v.getUint32(o + 4, true) !== SHT_NOTE) continue;
    const [offset, size, align] = elf.elfClass === 64
      ? [v.getBigUint64(o + 24, true), v.getBigUint64(o + 32, true), v.getBigUint64(o + 48, true)]
      : [
        BigInt(v.getUint32(o + 16, true)),
        BigInt(v.getUint32(o + 20, true)),
        BigInt(v.getUint32(o + 32, true)),
      ];
    notes.push(...parseNotes(data, offset, size, align));
  }
  return notes;
}

/** The PVH 32-bit entry point (XEN_ELFNOTE_PHYS32_ENTRY), or undefined. */
export function pvhEntry(data: Uint8Array, elf: ElfImage = parseElf(data)): number | undefined {
  const note = elfNotes(data, elf).find((n) =>
    n.name === "Xen" && n.type === XEN_ELFNOTE_PHYS32_ENTRY
  );
  if (!note) return undefined;
  if (note.desc.length !== 4 && note.desc.length !== 8) {
    throw new LoaderError(`PVH entry note has a ${note.desc.length}-byte value (expected 4 or 8)`);
  }
  const v = view(note.desc);
  const entry = note.desc.length === 8 ? v.getBigUint64(0, true) : BigInt(v.getUint32(0, true));
  if (entry > 0xffffffffn) throw new LoaderError(`PVH entry point ${hex(entry)} is above 4 GiB`);
  return Number(entry);
}

/** What {@link loadElfSegments} loaded. */
export interface ElfSegments {
  /** Physical entry point (e_entry, translated through its segment when it is virtual). */
  entry: number;
  /** Lowest guest-physical address loaded. */
  lowest: number;
  /** End (exclusive) of the highest segment, bss included. */
  highest: number;
  /** The loaded PT_LOAD segments. */
  segments: { gpa: number; fileSize: number; memSize: number }[];
  elf: ElfImage;
}

/**
 * Copies every PT_LOAD segment of `data` to its p_paddr and zeroes its bss.
 * Each segment is claimed in `placement` (fit in RAM, no overlap with what
 * the loader already placed). The entry point is taken as physical when it
 * lies in a segment's physical range, else translated from the segment whose
 * virtual range holds it (as GRUB does).
 */
export function loadElfSegments(
  mem: GuestMemory,
  data: Uint8Array,
  placement: Placement = new Placement(mem),
): ElfSegments {
  const elf = parseElf(data);
  const segments: ElfSegments["segments"] = [];
  const loads = elf.programHeaders.filter((ph) => ph.type === PT_LOAD && ph.memSize > 0n);
  if (loads.length === 0) throw new LoaderError("ELF file has no loadable segment");
  for (const ph of loads) {
    if (ph.fileSize > ph.memSize) {
      throw new LoaderError(
        `ELF segment at ${hex(ph.paddr)} has a file size ${hex(ph.fileSize)} larger than its ` +
          `memory size ${hex(ph.memSize)}`,
      );
    }
    within(data, ph.offset, ph.fileSize, `ELF segment at ${hex(ph.paddr)}`);
    if (ph.paddr + ph.memSize > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new LoaderError(
        `segment at ${hex(ph.paddr)} of ${hex(ph.memSize)} bytes does not fit in guest RAM ` +
          `(${formatBytes(mem.size)})`,
      );
    }
    const gpa = Number(ph.paddr);
    const fileSize = Number(ph.fileSize);
    const memSize = Number(ph.memSize);
    const offset = Number(ph.offset);
    placement.put(gpa, data.subarray(offset, offset + fileSize), "segment", memSize);
    segments.push({ gpa, fileSize, memSize });
  }
  const inPhys = loads.find((ph) => elf.entry >= ph.paddr && elf.entry < ph.paddr + ph.memSize);
  const inVirt = loads.find((ph) => elf.entry >= ph.vaddr && elf.entry < ph.vaddr + ph.memSize);
  let entry: number;
  if (inPhys) entry = Number(elf.entry);
  else if (inVirt) entry = Number(elf.entry - inVirt.vaddr + inVirt.paddr);
  else throw new LoaderError(`ELF entry point ${hex(elf.entry)} is not inside any loaded segment`);
  return {
    entry,
    lowest: Math.min(...segments.map((s) => s.gpa)),
    highest: Math.max(...segments.map((s) => s.gpa + s.memSize)),
    segments,
    elf,
  };
}

/** Writes the memory map entries in the e820 layout shared by Linux and PVH (24 or 20 bytes). */
function writeMemmap(mem: GuestMemory, gpa: number, e820: readonly E820Entry[]): void {
  e820.forEach((e, i) => {
    const at = gpa + i * HVM_MEMMAP_ENTRY_BYTES;
    mem.writeU64(at, BigInt(e.gpa));
    mem.writeU64(at + 8, BigInt(e.size));
    mem.writeU32(at + 16, e.type);
    mem.writeU32(at + 20, 0);
  });
}

/**
 * Loads an ELF kernel: PVH when it has the PVH note, else (ELF64 only) the
 * 64-bit Linux boot protocol. ELF32 kernels without a PVH note are rejected.
 */
export function loadElf(data: Uint8Array, options: LoadOptions): LoadResult {
  const elf = parseElf(data);
  const pvh = pvhEntry(data, elf);
  if (pvh !== undefined) return loadPvh(data, options, pvh);
  if (elf.elfClass === 32) {
    throw new LoaderError(
      "32-bit ELF kernel without a Multiboot header or PVH note: no boot protocol to enter it " +
        "(add a Multiboot header, or build it as ELF64)",
    );
  }
  return loadLinuxElf64(data, options);
}

function loadPvh(data: Uint8Array, options: LoadOptions, entry: number): LoadResult {
  const { memory: mem, e820 } = options;
  const placement = new Placement(mem);
  claimBootAreas(placement, false);
  placement.claim(PVH_INFO_GPA, PVH_INFO_MAX_BYTES, "PVH start info");
  const cmdline = encodeCmdline(options.cmdline, CMDLINE_MAX_BYTES, "the command line area");
  placement.put(CMDLINE_GPA, cmdline, "command line");
  const seg = loadElfSegments(mem, data, placement);
  if (!seg.segments.some((s) => entry >= s.gpa && entry < s.gpa + s.memSize)) {
    throw new LoaderError(`PVH entry point ${hex(entry)} is not inside any loaded segment`);
  }

  // hvm_start_info, then the memmap, then one module entry and its string.
  const memmapGpa = PVH_INFO_GPA + 64;
  const modlistGpa = memmapGpa + e820.length * HVM_MEMMAP_ENTRY_BYTES;
  const modStringGpa = modlistGpa + HVM_MODLIST_ENTRY_BYTES;
  const modString = encodeCmdline(options.initrdName ?? "initrd", 256, "the module string area");
  if (modStringGpa + modString.length > PVH_INFO_GPA + PVH_INFO_MAX_BYTES) {
    throw new LoaderError(`memory map of ${e820.length} entries does not fit the PVH area`);
  }
  mem.fill(PVH_INFO_GPA, PVH_INFO_MAX_BYTES, 0);
  mem.writeU32(PVH_INFO_GPA + 0, HVM_START_MAGIC);
  mem.writeU32(PVH_INFO_GPA + 4, 1); // version
  mem.writeU32(PVH_INFO_GPA + 8, 0); // flags
  mem.writeU64(PVH_INFO_GPA + 24, BigInt(CMDLINE_GPA));
  mem.writeU64(PVH_INFO_GPA + 32, BigInt(options.acpiRsdpGpa ?? 0)); // rsdp_paddr (0: none)
  mem.writeU64(PVH_INFO_GPA + 40, BigInt(memmapGpa));
  mem.writeU32(PVH_INFO_GPA + 48, e820.length);
  writeMemmap(mem, memmapGpa, e820);

  let initrdNote = "";
  if (options.initrd && options.initrd.length > 0) {
    const size = options.initrd.length;
    const gpa = placeHigh(placement, e820, size, seg.highest, ramEndBelow(e820, 2 ** 32));
    if (gpa === undefined) {
      throw new LoaderError(
        `initrd of ${formatBytes(size)} does not fit in guest RAM (${formatBytes(mem.size)}) ` +
          `above the kernel`,
      );
    }
    placement.put(gpa, options.initrd, "initrd");
    mem.write(modStringGpa, modString);
    mem.writeU32(PVH_INFO_GPA + 12, 1); // nr_modules
    mem.writeU64(PVH_INFO_GPA + 16, BigInt(modlistGpa));
    mem.writeU64(modlistGpa, BigInt(gpa));
    mem.writeU64(modlistGpa + 8, BigInt(size));
    mem.writeU64(modlistGpa + 16, BigInt(modStringGpa));
    initrdNote = `, initrd ${formatBytes(size)} at ${hex(gpa)}`;
  }

  writeBootGdt(mem, "protected");
  const state = protectedModeState(entry, { stackTop: BOOT_STACK_TOP });
  state.regs.rbx = BigInt(PVH_INFO_GPA);
  return {
    format: "pvh",
    state,
    entry,
    summary: `PVH ELF${seg.elf.elfClass}, 32-bit entry at ${hex(entry)}, kernel ` +
      `${hex(seg.lowest)}-${hex(seg.highest)}${initrdNote}, cmdline ${cmdline.length - 1} bytes`,
    used: placement.sorted(),
  };
}

function loadLinuxElf64(data: Uint8Array, options: LoadOptions): LoadResult {
  const { memory: mem, e820 } = options;
  const placement = new Placement(mem);
  claimBootAreas(placement, true);
  placement.claim(ZERO_PAGE_GPA, ZERO_PAGE_BYTES, "zero page");
  const cmdline = encodeCmdline(options.cmdline, CMDLINE_MAX_BYTES, "the command line area");
  placement.put(CMDLINE_GPA, cmdline, "command line");
  const seg = loadElfSegments(mem, data, placement);

  let initrd: { gpa: number; size: number } | undefined;
  if (options.initrd && options.initrd.length > 0) {
    const size = options.initrd.length;
    const gpa = placeHigh(placement, e820, size, seg.highest, ramEndBelow(e820, 2 ** 32));
    if (gpa === undefined) {
      throw new LoaderError(
        `initrd of ${formatBytes(size)} does not fit in guest RAM (${formatBytes(mem.size)}) ` +
          `above the kernel`,
      );
    }
    placement.put(gpa, options.initrd, "initrd");
    initrd = { gpa, size };
  }
  writeLinuxZeroPage(mem, {
    header: undefined,
    cmdlineGpa: CMDLINE_GPA,
    initrd,
    e820,
    acpiRsdpGpa: options.acpiRsdpGpa,
  });
  writeBootGdt(mem, "long");
  writeIdentityPageTables(mem);
  const state = longModeState(seg.entry, { stackTop: BOOT_STACK_TOP });
  state.regs.rsi = BigInt(ZERO_PAGE_GPA);
  const initrdNote = initrd ? `, initrd ${formatBytes(initrd.size)} at ${hex(initrd.gpa)}` : "";
  return {
    format: "elf64",
    state,
    entry: seg.entry,
    summary: `ELF64 Linux boot protocol, 64-bit entry at ${hex(seg.entry)}, kernel ` +
      `${hex(seg.lowest)}-${hex(seg.highest)}${initrdNote}, cmdline ${cmdline.length - 1} bytes`,
    used: placement.sorted(),
  };
}
