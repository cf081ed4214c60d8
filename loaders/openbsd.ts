/**
 * OpenBSD kernels (`bsd`, gzipped or not) loaded the way vmd(8) loads them
 * when it acts as the boot loader (usr.sbin/vmd/loadfile_elf.c), so a kernel
 * sees exactly what it would see under vmd:
 *
 * - ELF segments at their physical addresses, bss zeroed, the
 *   PT_OPENBSD_RANDOMIZE segment filled with random bytes; then, after the
 *   highest segment (8-byte aligned), a copy of the ELF header (program
 *   headers dropped, section headers right after it) and the symbol and
 *   string tables, so ddb has symbols. `end` is the first byte past them.
 *   Addresses vmd reports go through its LOADADDR mask (28 bits).
 * - A GDT at 0x10000: 0x08 32-bit code (compatibility mode), 0x10 data,
 *   0x18 64-bit code; identity page tables for the first GiB at
 *   0x11000/0x12000/0x13000 (2 MiB pages; 4 MiB pages at 0x12000 for an
 *   i386 kernel).
 * - The boot arguments at 0x2000 as `/boot` passes them (biosvar.h): a
 *   BOOTARG_MEMMAP list of `bios_memmap_t` (RAM free, everything else
 *   reserved, a zero entry last), a BOOTARG_CONSDEV `bios_consdev_t` for
 *   com0 (major 8, minor 0) at 0x3f8 and 115200 baud, then BOOTARG_END.
 * - The stack page at 0xF000 as `/boot` leaves it for the kernel's 32-bit
 *   entry: a zero return address, then howto (0), bootdev (sd0a, with the
 *   B_DEVMAGIC), bootapiver 0x0e, `end`, extmem 0, basemem 0 (the kernel
 *   then uses the BIOS map), the size of the boot arguments and their
 *   address. RSP points at the return address.
 * - vmd's flat 64-bit register set: CR0 = PE|PG|ET, CR3 = 0x11000, CR4 =
 *   PAE|PSE, EFER = LME|LMA, CS 0x08 with access rights 0xC09F (L clear: the
 *   entry runs in compatibility mode), data selectors 0x10 (0xC093), GDTR at
 *   0x10000 with limit 0xFFFF, LDTR 0x82 and TR 0x8B with limit 0xFFFF,
 *   RFLAGS 0x2, RIP the entry point.
 *
 * @module
 */

import { gunzip, gunzipPrefix, InflateLimitError, isGzip } from "../ffi/inflate.ts";
import type { CpuState } from "../core/cpu.ts";
import type { GuestMemory } from "../core/guest_memory.ts";
import { E820_RAM, type E820Entry, PCI_HOLE_BASE } from "../core/layout.ts";
import {
  formatBytes,
  hex,
  LoaderError,
  type LoadOptions,
  type LoadResult,
  Placement,
} from "./common.ts";
import { elfClass, elfNotes, parseElf, PT_LOAD, PT_NOTE, SHT_NOTE } from "./elf.ts";
import { flatSegment, zeroRegisters } from "./cpu_state.ts";

/** Where vmd puts the boot arguments. */
export const OPENBSD_BOOTARGS_GPA = 0x2000;
/** vmd's boot stack page. */
export const OPENBSD_STACK_GPA = 0xf000;
/** vmd's boot GDT. */
export const OPENBSD_GDT_GPA = 0x10000;
/** vmd's page-map level 4 (64-bit kernels). */
export const OPENBSD_PML4_GPA = 0x11000;
/** vmd's page-directory-pointer table (64-bit) or page directory (i386). */
export const OPENBSD_PML3_GPA = 0x12000;
/** vmd's page directory of 2 MiB pages (64-bit). */
export const OPENBSD_PML2_GPA = 0x13000;
const PAGE = 4096;

/** BOOTARG_* types (biosvar.h). */
export const BOOTARG_MEMMAP = 0;
/** See {@link BOOTARG_MEMMAP}. */
export const BOOTARG_CONSDEV = 5;
/** The end marker of the boot argument list. */
export const BOOTARG_END = 0xffffffff;
/** bios_memmap_t types. */
export const BIOS_MAP_END = 0;
/** See {@link BIOS_MAP_END}. */
export const BIOS_MAP_FREE = 1;
/** See {@link BIOS_MAP_END}. */
export const BIOS_MAP_RES = 2;
/** sizeof(bios_memmap_t): addr u64, size u64, type u32, packed. */
export const BIOS_MEMMAP_BYTES = 20;
/** sizeof(bios_consdev_t): consdev, conspeed, consaddr u64, consfreq, flags, reg_width, reg_shift. */
export const BIOS_CONSDEV_BYTES = 32;
/** The boot API version /boot reports (vmd's value). */
export const BOOTAPIVER = 0x0e;
/** sys/reboot.h: the magic in the top nibble of a boot device. */
export const B_DEVMAGIC = 0xa0000000;
/** The console vmd describes: com0 is major 8, minor 0 (OpenBSD makedev: major << 8). */
export const CONSDEV_COM0 = (8 << 8) | 0;
/** The console speed vmd describes. */
export const CONSOLE_BAUD = 115200;
/** COM1's I/O port. */
export const CONSOLE_PORT = 0x3f8;
/** vmd's LOADADDR(): addresses reported to the kernel keep 28 bits. */
const LOADADDR_MASK = 0x0fffffff;
/** p_type of the segment the boot loader fills with random bytes. */
export const PT_OPENBSD_RANDOMIZE = 0x65a3dbe6;
const SHT_SYMTAB = 2;
const SHT_STRTAB = 3;
const SHF_ALLOC = 2;
const PF_X = 1;
const PF_W = 2;
const PF_R = 4;

/** MAKEBOOTDEV(type, adaptor, controller, unit, partition) of sys/reboot.h. */
export function makeBootdev(
  type: number,
  adaptor: number,
  controller: number,
  unit: number,
  partition: number,
): number {
  return ((type << 0) | (adaptor << 24) | (controller << 20) | (unit << 16) | (partition << 8) |
    B_DEVMAGIC) >>> 0;
}

/** The boot device vmd passes: sd0a. */
export const OPENBSD_BOOTDEV = makeBootdev(4, 0, 0, 0, 0);

/**
 * How much of a gzipped kernel detection decompresses: the ELF header,
 * program headers and the note segment lie well inside it in OpenBSD kernels.
 */
export const DETECT_PREFIX_BYTES = 1024 * 1024;

/**
 * `data`, gunzipped when it is gzip (vmd opens kernels with gzdopen). More
 * than `maxBytes` of output (the guest's RAM: a kernel bigger than that
 * cannot be loaded anyway) is refused as soon as the output passes it.
 */
export function gunzipIfNeeded(data: Uint8Array, maxBytes = Infinity): Uint8Array {
  if (!isGzip(data)) return data;
  try {
    return gunzip(data, maxBytes);
  } catch (e) {
    if (e instanceof InflateLimitError) {
      throw new LoaderError(
        `gzip data decompresses to more than guest RAM (${formatBytes(maxBytes)}); refused`,
      );
    }
    throw new LoaderError(`gzip data does not decompress: ${e instanceof Error ? e.message : e}`);
  }
}

/** Whether the ELF image carries the "OpenBSD" note (`.note.openbsd.ident`), in a segment or a section. */
export function hasOpenbsdNote(elf: Uint8Array): boolean {
  if (elfClass(elf) === undefined) return false;
  try {
    const parsed = parseElf(elf);
    if (elfNotes(elf, parsed).some((n) => n.name === "OpenBSD")) return true;
    // elfNotes reads sections only without PT_NOTE segments: look at SHT_NOTE too.
    if (!parsed.programHeaders.some((p) => p.type === PT_NOTE)) return false;
    return sections(elf).some((s) =>
      s.type === SHT_NOTE && notesIn(elf, s.offset, s.size).includes("OpenBSD")
    );
  } catch {
    return false;
  }
}

/** True when `data` (gzipped or not) is an OpenBSD ELF kernel. */
export function isOpenbsdKernel(data: Uint8Array): boolean {
  if (!isGzip(data)) return hasOpenbsdNote(data);
  // Decompress only the head: a gzip "kernel" may expand to gigabytes.
  let head: Uint8Array;
  try {
    head = gunzipPrefix(data, DETECT_PREFIX_BYTES);
  } catch {
    return false;
  }
  if (head.length < DETECT_PREFIX_BYTES) return hasOpenbsdNote(head); // the whole output
  // Only OpenBSD kernels come gzipped; loading checks the note on the whole (capped) output.
  return hasOpenbsdNote(head) || elfClass(head) !== undefined;
}

function dv(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

function notesIn(data: Uint8Array, offset: number, size: number): string[] {
  const v = dv(data);
  const names: string[] = [];
  let o = offset;
  while (o + 12 <= offset + size && o + 12 <= data.length) {
    const namesz = v.getUint32(o, true);
    const descsz = v.getUint32(o + 4, true);
    const name = data.subarray(o + 12, Math.min(o + 12 + namesz, data.length));
    const nul = name.indexOf(0);
    names.push(new TextDecoder().decode(nul >= 0 ? name.subarray(0, nul) : name));
    o += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
  }
  return names;
}

/** One section header, with its index. */
interface Section {
  name: number;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
  /** Where its header starts in the file. */
  at: number;
}

function sections(data: Uint8Array): Section[] {
  const elf = parseElf(data);
  const wide = elf.elfClass === 64;
  const entry = wide ? 64 : 40;
  const count = elf.sectionCount;
  const base = Number(elf.sectionHeaderOffset);
  if (count === 0) return [];
  if (elf.sectionHeaderSize < entry || base + count * elf.sectionHeaderSize > data.length) {
    throw new LoaderError("ELF section header table runs past the end of the file");
  }
  const v = dv(data);
  const out: Section[] = [];
  for (let i = 0; i < count; i++) {
    const at = base + i * elf.sectionHeaderSize;
    out.push(
      wide
        ? {
          name: v.getUint32(at, true),
          type: v.getUint32(at + 4, true),
          flags: v.getBigUint64(at + 8, true),
          offset: Number(v.getBigUint64(at + 24, true)),
          size: Number(v.getBigUint64(at + 32, true)),
          at,
        }
        : {
          name: v.getUint32(at, true),
          type: v.getUint32(at + 4, true),
          flags: BigInt(v.getUint32(at + 8, true)),
          offset: v.getUint32(at + 16, true),
          size: v.getUint32(at + 20, true),
          at,
        },
    );
  }
  return out;
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * The memory map vmd passes: one entry per range of the VM (RAM free, the
 * rest reserved; here the machine's e820 table plus the PCI hole, which the
 * OpenBSD back-end gives to vmm(4) as VM_MEM_MMIO), sorted, and a zero entry.
 */
export function openbsdMemoryMap(
  e820: readonly E820Entry[],
): { addr: number; size: number; type: number }[] {
  const map = e820.map((e) => ({
    addr: e.gpa,
    size: e.size,
    type: e.type === E820_RAM ? BIOS_MAP_FREE : BIOS_MAP_RES,
  }));
  const hole = { addr: PCI_HOLE_BASE, size: 2 ** 32 - PCI_HOLE_BASE, type: BIOS_MAP_RES };
  if (!map.some((m) => m.addr < hole.addr + hole.size && hole.addr < m.addr + m.size)) {
    map.push(hole);
  }
  map.sort((a, b) => a.addr - b.addr);
  map.push({ addr: 0, size: 0, type: BIOS_MAP_END });
  return map;
}

/** The boot argument block (BOOTARG_MEMMAP, BOOTARG_CONSDEV, BOOTARG_END) for `map`. */
export function openbsdBootArgs(
  map: readonly { addr: number; size: number; type: number }[],
): Uint8Array {
  const memmapBytes = 12 + map.length * BIOS_MEMMAP_BYTES;
  const consdevBytes = 12 + BIOS_CONSDEV_BYTES;
  const out = new Uint8Array(memmapBytes + consdevBytes + 4);
  const v = dv(out);
  // Each argument: type, size (header included), offset to the next, then its data.
  v.setUint32(0, BOOTARG_MEMMAP, true);
  v.setUint32(4, memmapBytes, true);
  v.setUint32(8, memmapBytes, true);
  map.forEach((m, i) => {
    const at = 12 + i * BIOS_MEMMAP_BYTES;
    v.setBigUint64(at, BigInt(m.addr), true);
    v.setBigUint64(at + 8, BigInt(m.size), true);
    v.setUint32(at + 16, m.type, true);
  });
  const c = memmapBytes;
  v.setUint32(c, BOOTARG_CONSDEV, true);
  v.setUint32(c + 4, consdevBytes, true);
  v.setUint32(c + 8, consdevBytes, true);
  v.setInt32(c + 12, CONSDEV_COM0, true); // consdev
  v.setInt32(c + 16, CONSOLE_BAUD, true); // conspeed
  v.setBigUint64(c + 20, BigInt(CONSOLE_PORT), true); // consaddr
  // consfreq, flags, reg_width, reg_shift: 0.
  v.setUint32(c + consdevBytes, BOOTARG_END, true);
  return out;
}

/**
 * The boot stack page (4 KiB) and the RSP that points into it: from the
 * top, the boot arguments' address and size, basemem 0, extmem 0, `end`,
 * bootapiver, bootdev, howto and a zero return address.
 */
export function openbsdBootStack(
  bootargsBytes: number,
  end: number,
): { page: Uint8Array; rsp: number } {
  const page = new Uint8Array(PAGE);
  const v = dv(page);
  const words = [OPENBSD_BOOTARGS_GPA, bootargsBytes, 0, 0, end, BOOTAPIVER, OPENBSD_BOOTDEV, 0];
  let at = PAGE;
  for (const w of words) {
    at -= 4;
    v.setUint32(at, w >>> 0, true);
  }
  at -= 4; // the return address slot (zero)
  return { page, rsp: OPENBSD_STACK_GPA + at };
}

/** vmd's boot GDT (a page): null, 0x08 compat code, 0x10 data, 0x18 64-bit code. */
export function openbsdGdt(): Uint8Array {
  const page = new Uint8Array(PAGE);
  const v = dv(page);
  // Flat 4 GiB descriptors: base 0, limit 0xfffff pages, present, DPL 0.
  v.setBigUint64(0x08, 0x00cf9b000000ffffn, true); // SDT_MEMERA, D=1, G=1
  v.setBigUint64(0x10, 0x00cf93000000ffffn, true); // SDT_MEMRWA, D=1, G=1
  v.setBigUint64(0x18, 0x00af9b000000ffffn, true); // SDT_MEMERA, L=1, G=1
  return page;
}

const PG_V = 0x1n;
const PG_RW = 0x2n;
const PG_U = 0x4n;
const PG_PS = 0x80n;

function writePageTables(mem: GuestMemory, i386: boolean): void {
  if (i386) {
    // One page directory of 4 MiB pages covering 4 GiB.
    for (let i = 0; i < 1024; i++) {
      mem.writeU32(OPENBSD_PML3_GPA + i * 4, Number(PG_V | PG_RW | PG_U | PG_PS) + i * 0x400000);
    }
    return;
  }
  mem.fill(OPENBSD_PML4_GPA, 3 * PAGE, 0);
  mem.writeU64(OPENBSD_PML4_GPA, PG_V | BigInt(OPENBSD_PML3_GPA)); // as vmd: no RW at this level
  mem.writeU64(OPENBSD_PML3_GPA, PG_V | PG_RW | PG_U | BigInt(OPENBSD_PML2_GPA));
  for (let i = 0; i < 512; i++) {
    mem.writeU64(OPENBSD_PML2_GPA + i * 8, PG_V | PG_RW | PG_U | PG_PS | (BigInt(i) << 21n));
  }
}

/** vmd's flat register set for entry `rip` with stack `rsp` (i386: CR3/CR4/EFER for 32-bit paging). */
export function openbsdCpuState(rip: number, rsp: number, i386: boolean): CpuState {
  const data = flatSegment(0x10, 0x3);
  const system = (type: number) =>
    flatSegment(0, type, { s: false, db: false, g: false, limit: 0xffff });
  return {
    regs: { ...zeroRegisters(), rsp: BigInt(rsp), rip: BigInt(rip) },
    sregs: {
      cs: flatSegment(0x08, 0xf), // access rights 0xC09F, as vmd
      ds: data,
      es: { ...data },
      fs: { ...data },
      gs: { ...data },
      ss: { ...data },
      ldt: system(0x2),
      tr: system(0xb),
      gdt: { base: BigInt(OPENBSD_GDT_GPA), limit: 0xffff },
      idt: { base: 0n, limit: 0xffff },
      cr0: 0x80000011n, // PG | ET | PE
      cr2: 0n,
      cr3: BigInt(i386 ? OPENBSD_PML3_GPA : OPENBSD_PML4_GPA),
      cr4: i386 ? 0x10n : 0x30n, // PSE (| PAE)
      cr8: 0n,
      efer: i386 ? 0n : 0x500n, // LMA | LME
    },
  };
}

/** What loading the ELF image left behind. */
interface LoadedImage {
  entry: number;
  /** vmd's MARK_END: past the kernel, its ELF header copy and its symbols. */
  end: number;
  lowest: number;
  highest: number;
  symbols: number;
  i386: boolean;
}

function loadImage(data: Uint8Array, placement: Placement): LoadedImage {
  const elf = parseElf(data);
  const wide = elf.elfClass === 64;
  let minp = Infinity;
  let maxp = 0;
  for (const ph of elf.programHeaders) {
    if (ph.type === PT_OPENBSD_RANDOMIZE) {
      const gpa = Number(ph.paddr);
      const random = new Uint8Array(Number(ph.fileSize));
      for (let i = 0; i < random.length; i += 65536) {
        crypto.getRandomValues(random.subarray(i, i + 65536));
      }
      if (random.length > 0) placement.put(gpa, random, "random data segment");
      continue;
    }
    if (ph.type !== PT_LOAD || (ph.flags & (PF_W | PF_R | PF_X)) === 0) continue;
    if (ph.fileSize > ph.memSize || ph.offset + ph.fileSize > BigInt(data.length)) {
      throw new LoaderError(`ELF segment at ${hex(ph.paddr)} does not fit its file or memory size`);
    }
    const gpa = Number(ph.paddr);
    const file = data.subarray(Number(ph.offset), Number(ph.offset + ph.fileSize));
    placement.put(gpa, file, "kernel segment", Number(ph.memSize));
    minp = Math.min(minp, gpa);
    maxp = Math.max(maxp, gpa + file.length, gpa + Number(ph.memSize));
  }
  if (maxp === 0) throw new LoaderError("ELF file has no loadable segment");

  // The ELF header and the symbol tables after the kernel, as ddb finds them.
  const addrBytes = wide ? 8 : 4;
  const ehdrBytes = wide ? 64 : 52;
  const shdrBytes = wide ? 64 : 40;
  const elfp = roundUp(maxp, addrBytes);
  maxp = elfp + ehdrBytes;
  const all = sections(data);
  const shpp = maxp;
  const shdrTable = all.length * shdrBytes;
  maxp += roundUp(shdrTable, addrBytes);
  const v = dv(data);
  const shstrndx = v.getUint16(wide ? 62 : 50, true);
  const shstr = all[shstrndx];
  const nameOf = (s: Section): string => {
    if (!shstr) return "";
    const at = shstr.offset + s.name;
    const bytes = data.subarray(at, Math.min(at + 64, data.length));
    const nul = bytes.indexOf(0);
    return new TextDecoder().decode(nul >= 0 ? bytes.subarray(0, nul) : bytes);
  };
  const haveSymbols = all.some((s) => s.type === SHT_SYMTAB);
  const table = new Uint8Array(shdrTable);
  const tv = dv(table);
  let off = roundUp(ehdrBytes + shdrTable, addrBytes);
  let symbolBytes = 0;
  all.forEach((s, i) => {
    table.set(data.subarray(s.at, s.at + shdrBytes), i * shdrBytes);
    const name = nameOf(s);
    const wanted = s.type === SHT_SYMTAB || s.type === SHT_STRTAB || name === ".debug_line" ||
      (wide && name === ".SUNW_ctf");
    if (!wanted) return;
    if (s.offset + s.size > data.length) {
      throw new LoaderError(`ELF section "${name}" runs past the end of the file`);
    }
    if (haveSymbols) {
      placement.put(maxp, data.subarray(s.offset, s.offset + s.size), `section ${name || i}`);
      symbolBytes += s.size;
    }
    maxp += roundUp(s.size, addrBytes);
    // The copy's headers describe the sections where they are now, relative to the header copy.
    if (wide) {
      tv.setBigUint64(i * shdrBytes + 24, BigInt(off), true);
      tv.setBigUint64(i * shdrBytes + 8, s.flags | BigInt(SHF_ALLOC), true);
    } else {
      tv.setUint32(i * shdrBytes + 16, off, true);
      tv.setUint32(i * shdrBytes + 8, Number(s.flags) | SHF_ALLOC, true);
    }
    off += roundUp(s.size, addrBytes);
  });
  if (table.length > 0) placement.put(shpp, table, "section headers");
  const ehdr = data.slice(0, ehdrBytes);
  const ev = dv(ehdr);
  if (wide) {
    ev.setBigUint64(32, 0n, true); // e_phoff
    ev.setBigUint64(40, BigInt(ehdrBytes), true); // e_shoff
    ev.setUint16(54, 0, true); // e_phentsize
    ev.setUint16(56, 0, true); // e_phnum
  } else {
    ev.setUint32(28, 0, true);
    ev.setUint32(32, ehdrBytes, true);
    ev.setUint16(42, 0, true);
    ev.setUint16(44, 0, true);
  }
  placement.put(elfp, ehdr, "ELF header copy");
  return {
    entry: Number(elf.entry & BigInt(LOADADDR_MASK)),
    end: maxp & LOADADDR_MASK,
    lowest: minp,
    highest: elfp,
    symbols: symbolBytes,
    i386: !wide,
  };
}

/** Loads an OpenBSD kernel (gzipped or not) as vmd does; see the module doc. */
export function loadOpenbsd(image: Uint8Array, options: LoadOptions): LoadResult {
  const data = gunzipIfNeeded(image, options.memory.size);
  if (!hasOpenbsdNote(data)) {
    throw new LoaderError('not an OpenBSD kernel: no "OpenBSD" ELF note (.note.openbsd.ident)');
  }
  const mem = options.memory;
  const placement = new Placement(mem);
  const map = openbsdMemoryMap(options.e820);
  const bootargs = openbsdBootArgs(map);
  if (bootargs.length > PAGE) {
    throw new LoaderError(`boot arguments of ${bootargs.length} bytes exceed a page`);
  }
  placement.put(OPENBSD_BOOTARGS_GPA, bootargs, "boot arguments", PAGE);
  placement.claim(OPENBSD_STACK_GPA, PAGE, "boot stack");
  placement.put(OPENBSD_GDT_GPA, openbsdGdt(), "boot GDT");
  placement.claim(OPENBSD_PML4_GPA, 3 * PAGE, "page tables");
  const loaded = loadImage(data, placement);
  writePageTables(mem, loaded.i386);
  const stack = openbsdBootStack(bootargs.length, loaded.end);
  mem.write(OPENBSD_STACK_GPA, stack.page);
  if (!mem.contains(loaded.entry, 1)) {
    throw new LoaderError(
      `entry point ${hex(loaded.entry)} is outside guest RAM (${formatBytes(mem.size)})`,
    );
  }
  const ignored = options.cmdline
    ? ` (command line "${options.cmdline}" ignored: vmd passes none)`
    : "";
  return {
    format: "openbsd",
    state: openbsdCpuState(loaded.entry, stack.rsp, loaded.i386),
    entry: loaded.entry,
    summary: `OpenBSD ${loaded.i386 ? "i386" : "amd64"} kernel ${hex(loaded.lowest)}-` +
      `${hex(loaded.highest)}, entry ${hex(loaded.entry)}, end ${hex(loaded.end)}, ` +
      `${formatBytes(loaded.symbols)} of symbols, console com0 115200${ignored}`,
    used: placement.sorted(),
  };
}
