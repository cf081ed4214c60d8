/**
 * Loading a Solo5 hvt unikernel: the ELF checks a tender owes (ELF64 x86-64
 * executable, Solo5 ABI note for target hvt version 2, a valid manifest
 * note, loadable segments above the tender's low pages, inside guest memory,
 * ascending and not overlapping, the entry point inside a loaded segment),
 * then the guest's starting world: page tables, GDT, `hvt_boot_info` with
 * the manifest and command line, and the 64-bit CPL-0 register state.
 *
 * Memory map (x86-64, as the ABI fixes it): page 0 unmapped; GDT at 0x1000;
 * PML4, PDPT, four page directories and the 4 KiB page table of the first
 * 2 MiB at 0x2000-0x8fff (not mapped for the guest); boot info, manifest and
 * command line from 0x10000 (mapped read-only up to 1 MiB); the kernel from
 * 1 MiB; the stack grows down from the top of guest memory; when a network
 * ring is offered, it takes the last 2 MiB above what the guest is told.
 *
 * @example
 * ```ts
 * import { inspectUnikernel } from "./loader.ts";
 * const image = inspectUnikernel(Deno.readFileSync("hello.hvt"), "hello.hvt");
 * image.manifest.entries.length; // 1: just the reserved entry
 * ```
 * @module
 */

import type { CpuState, Segment } from "../accel/types.ts";
import type { GuestMemory } from "../core/guest_memory.ts";
import { type ElfImage, EM_X86_64, parseElf, PT_LOAD, PT_NOTE } from "../loaders/elf.ts";
import { formatBytes, hex, LoaderError } from "../loaders/common.ts";
import {
  busyTss,
  encodeSegmentDescriptor,
  unusableLdt,
  zeroRegisters,
} from "../loaders/cpu_state.ts";
import {
  ABI1_INFO_BYTES,
  ABI1_NOTE_ALIGN,
  ABI1_NOTE_TYPE,
  BOOT_INFO,
  HVT_ABI_TARGET,
  HVT_ABI_VERSION,
  HVT_CMDLINE_SIZE,
  HVT_FEATURE_RING_IO,
  HVT_GUEST_MIN_BASE,
  HVT_RING_BYTES,
  MFT1_NOTE_ALIGN,
  MFT1_NOTE_TYPE,
  MFT_MAX_ENTRIES,
  SOLO5_NHDR_BYTES,
  SOLO5_NOTE_NAME,
  X86_BOOT_INFO_BASE,
  X86_CR0_INIT,
  X86_CR4_INIT,
  X86_EFER_INIT,
  X86_GDT_BASE,
  X86_GDT_CODE_SELECTOR,
  X86_GDT_DATA_SELECTOR,
  X86_GDTR_LIMIT,
  X86_GUEST_PAGE_SIZE,
  X86_PDE_BASE,
  X86_PDPTE_BASE,
  X86_PML4_BASE,
  X86_PT0E_BASE,
} from "./abi.ts";
import { type Manifest, manifestBytes, ManifestError, parseManifest } from "./manifest.ts";

/** ET_EXEC: Solo5 unikernels are static executables. */
const ET_EXEC = 2;
const PAGE_BYTES = 0x1000;
/**
 * Largest guest memory we give a unikernel: 3 GiB keeps the top of the
 * first 4 GiB free for the hypervisors' own pages (KVM's TSS and identity
 * map, vmm(4)'s PCI hole), and is well inside the 4 GiB the ABI allows.
 */
export const SOLO5_MAX_MEMORY_BYTES = 3 * 1024 ** 3;
/** Default guest memory, as solo5-hvt's `--mem` default (512 MiB). */
export const SOLO5_DEFAULT_MEMORY_BYTES = 512 * 1024 ** 2;

/** What the ABI note says. */
export interface Solo5Abi {
  target: number;
  version: number;
}

/** A checked unikernel image (nothing loaded yet). */
export interface Solo5Image {
  elf: ElfImage;
  abi: Solo5Abi;
  manifest: Manifest;
}

interface NoteHit {
  desc: Uint8Array;
  phIndex: number;
}

/**
 * Finds the Solo5 note of `type` in the PT_NOTE segments and returns its
 * descriptor without the internal alignment padding. Returns undefined when
 * there is none; throws LoaderError when one is malformed.
 */
function findSolo5Note(
  data: Uint8Array,
  elf: ElfImage,
  type: number,
  align: number,
  maxDescBytes: number,
): NoteHit | undefined {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < elf.programHeaders.length; i++) {
    const ph = elf.programHeaders[i];
    if (ph.type !== PT_NOTE) continue;
    if (ph.offset + ph.fileSize > BigInt(data.length)) {
      throw new LoaderError(`note segment ${i} runs past the end of the file`);
    }
    let at = Number(ph.offset);
    const end = at + Number(ph.fileSize);
    // Walk every note of the segment (4-byte padded, as x86-64 toolchains emit them).
    while (at + 12 <= end) {
      const namesz = v.getUint32(at, true);
      const descsz = v.getUint32(at + 4, true);
      const ntype = v.getUint32(at + 8, true);
      const nameAt = at + 12;
      const descAt = nameAt + ((namesz + 3) & ~3);
      const next = descAt + ((descsz + 3) & ~3);
      if (namesz > end - nameAt) break;
      const name = new TextDecoder().decode(data.subarray(nameAt, nameAt + namesz));
      if (name === SOLO5_NOTE_NAME + "\0" && ntype === type) {
        const tag = type === ABI1_NOTE_TYPE ? "ABI" : "manifest";
        if (descsz < 1 || descsz > maxDescBytes) {
          throw new LoaderError(
            `Solo5 ${tag} note has a descriptor of ${descsz} bytes (1 to ${maxDescBytes} allowed)`,
          );
        }
        if (descsz > end - descAt) {
          throw new LoaderError(`Solo5 ${tag} note runs past the end of its note segment`);
        }
        // The descriptor's content starts at the note's start + 20, aligned up to `align`.
        const contentAt = at + ((SOLO5_NHDR_BYTES + align - 1) & -align);
        const pad = contentAt - descAt;
        if (descsz <= pad) {
          throw new LoaderError(`Solo5 ${tag} note is empty after its alignment padding`);
        }
        return { desc: data.subarray(contentAt, descAt + descsz), phIndex: i };
      }
      if (descsz > end - descAt) break;
      at = next;
    }
  }
  return undefined;
}

/** The Solo5 ABI note of an ELF file, or undefined (not a Solo5 unikernel, or not ELF64). */
export function solo5Abi(data: Uint8Array): Solo5Abi | undefined {
  try {
    const elf = parseElf(data);
    if (elf.elfClass !== 64) return undefined;
    const note = findSolo5Note(data, elf, ABI1_NOTE_TYPE, ABI1_NOTE_ALIGN, 2 * ABI1_INFO_BYTES);
    if (!note || note.desc.length < 8) return undefined;
    const v = new DataView(note.desc.buffer, note.desc.byteOffset, note.desc.byteLength);
    return { target: v.getUint32(0, true), version: v.getUint32(4, true) };
  } catch {
    return undefined;
  }
}

/** True when `data` is an ELF file carrying a Solo5 ABI note (any target). */
export function isSolo5Unikernel(data: Uint8Array): boolean {
  return solo5Abi(data) !== undefined;
}

/**
 * Checks the ELF header and the two Solo5 notes of `data`. Every failure is
 * a LoaderError whose message starts with `name`.
 */
export function inspectUnikernel(data: Uint8Array, name = "unikernel"): Solo5Image {
  try {
    const elf = parseElf(data);
    if (elf.elfClass !== 64 || elf.machine !== EM_X86_64) {
      throw new LoaderError("not an x86-64 ELF64 executable");
    }
    if (elf.type !== ET_EXEC) {
      throw new LoaderError(`ELF type "${elf.type}" is not an executable (ET_EXEC, 2)`);
    }
    if (elf.programHeaders.length === 0) throw new LoaderError("ELF file has no program headers");
    const abiNote = findSolo5Note(data, elf, ABI1_NOTE_TYPE, ABI1_NOTE_ALIGN, 2 * ABI1_INFO_BYTES);
    if (!abiNote) throw new LoaderError("no Solo5 ABI information (ABI1 note) in executable");
    if (abiNote.desc.length < 8) throw new LoaderError("Solo5 ABI note is truncated");
    const av = new DataView(abiNote.desc.buffer, abiNote.desc.byteOffset, abiNote.desc.byteLength);
    const abi = { target: av.getUint32(0, true), version: av.getUint32(4, true) };
    if (abi.target !== HVT_ABI_TARGET) {
      throw new LoaderError(
        `executable is for Solo5 ABI target "${abi.target}", not hvt (${HVT_ABI_TARGET})`,
      );
    }
    if (abi.version !== HVT_ABI_VERSION) {
      throw new LoaderError(
        `executable requests hvt ABI version "${abi.version}"; this tender implements ` +
          `version ${HVT_ABI_VERSION}`,
      );
    }
    const maxManifest = MFT1_NOTE_ALIGN + manifestBytes(MFT_MAX_ENTRIES);
    const mftNote = findSolo5Note(data, elf, MFT1_NOTE_TYPE, MFT1_NOTE_ALIGN, maxManifest);
    if (!mftNote) throw new LoaderError("no Solo5 manifest (MFT1 note) in executable");
    let manifest: Manifest;
    try {
      manifest = parseManifest(mftNote.desc);
    } catch (e) {
      if (e instanceof ManifestError) throw new LoaderError(`Solo5 ${e.message}`);
      throw e;
    }
    return { elf, abi, manifest };
  } catch (e) {
    if (e instanceof LoaderError) throw new LoaderError(`${name}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** How guest memory is split. */
export interface UnikernelMemory {
  /** Bytes to allocate (what the page tables map). */
  allocBytes: number;
  /** Bytes the guest is told it has (boot info mem_size; the stack starts below). */
  guestBytes: number;
  /** Where the network ring lives, when one is offered. */
  ringGpa?: number;
}

/**
 * Rounds `requestedBytes` down to whole 2 MiB pages (at least one), checks
 * the limit, and adds 2 MiB above it for the network ring when `withRing`.
 */
export function unikernelMemory(requestedBytes: number, withRing: boolean): UnikernelMemory {
  let guest = Math.floor(requestedBytes / X86_GUEST_PAGE_SIZE) * X86_GUEST_PAGE_SIZE;
  if (guest === 0) guest = X86_GUEST_PAGE_SIZE;
  const ringBytes = withRing
    ? Math.ceil(HVT_RING_BYTES / X86_GUEST_PAGE_SIZE) * X86_GUEST_PAGE_SIZE
    : 0;
  if (guest + ringBytes > SOLO5_MAX_MEMORY_BYTES) {
    throw new RangeError(
      `Unikernel memory ${formatBytes(guest + ringBytes)} is more than the ` +
        `${formatBytes(SOLO5_MAX_MEMORY_BYTES)} vmmctl gives an hvt guest`,
    );
  }
  return withRing
    ? { allocBytes: guest + ringBytes, guestBytes: guest, ringGpa: guest }
    : { allocBytes: guest, guestBytes: guest };
}

/** What loading needs besides the image. */
export interface UnikernelLoadOptions {
  memory: GuestMemory;
  layout: UnikernelMemory;
  /** Arguments after the kernel (joined with spaces, as solo5-hvt does). */
  cmdline: string;
  /** The manifest in guest layout, with the host's answers (see encodeManifest). */
  manifest: Uint8Array;
  /** TSC frequency for `cpu_cycle_freq`. */
  tscHz: number;
  name?: string;
}

/** The loaded unikernel. */
export interface UnikernelLoadResult {
  state: CpuState;
  entry: number;
  /** End of the highest segment (aligned as the segment asks): boot info kernel_end. */
  kernelEnd: number;
  segments: { gpa: number; fileSize: number; memSize: number }[];
  summary: string;
}

function alignUp(value: bigint, align: bigint): bigint {
  return (value + align - 1n) & -align;
}

/**
 * Copies the PT_LOAD segments into guest memory with Solo5's checks.
 * Returns the entry point and the kernel's end.
 */
function loadSegments(
  data: Uint8Array,
  image: Solo5Image,
  mem: GuestMemory,
  guestBytes: number,
): { entry: number; kernelEnd: number; segments: UnikernelLoadResult["segments"] } {
  const limit = BigInt(guestBytes);
  const min = BigInt(HVT_GUEST_MIN_BASE);
  let end = 0n;
  let last = 0n;
  const segments: UnikernelLoadResult["segments"] = [];
  image.elf.programHeaders.forEach((ph, i) => {
    if (ph.type !== PT_LOAD || ph.memSize === 0n) return;
    const what = `segment ${i} at ${hex(ph.vaddr)}`;
    const align = ph.align === 0n ? 1n : ph.align;
    if ((align & (align - 1n)) !== 0n) {
      throw new LoaderError(`${what} has an alignment ${hex(ph.align)} that is not a power of 2`);
    }
    if (ph.vaddr < min) {
      throw new LoaderError(
        `${what} lies below ${hex(min)}, in the tender's reserved low memory`,
      );
    }
    if (ph.vaddr < last) throw new LoaderError(`${what} is not in ascending address order`);
    last = ph.vaddr;
    const start = ph.vaddr & -align;
    if (start < min) {
      throw new LoaderError(`${what} aligned down to ${hex(start)} lies below ${hex(min)}`);
    }
    if (start < end) {
      throw new LoaderError(`${what} overlaps the previous segment (which ends at ${hex(end)})`);
    }
    if (ph.fileSize > ph.memSize) {
      throw new LoaderError(`${what} has a file size larger than its memory size`);
    }
    const segEnd = alignUp(ph.vaddr + ph.memSize, align);
    if (segEnd > limit) {
      throw new LoaderError(
        `${what} of ${hex(ph.memSize)} bytes ends at ${hex(segEnd)}, beyond guest memory ` +
          `(${formatBytes(guestBytes)})`,
      );
    }
    if (ph.offset + ph.fileSize > BigInt(data.length)) {
      throw new LoaderError(`${what} runs past the end of the file (${data.length} bytes)`);
    }
    const gpa = Number(ph.vaddr);
    const fileSize = Number(ph.fileSize);
    const memSize = Number(ph.memSize);
    const off = Number(ph.offset);
    mem.write(gpa, data.subarray(off, off + fileSize));
    mem.fill(gpa + fileSize, memSize - fileSize, 0);
    segments.push({ gpa, fileSize, memSize });
    end = segEnd;
  });
  if (segments.length === 0) throw new LoaderError("ELF file has no loadable segment");
  const e = image.elf.entry;
  if (!segments.some((s) => e >= BigInt(s.gpa) && e < BigInt(s.gpa + s.memSize))) {
    throw new LoaderError(`entry point ${hex(e)} is not inside any loaded segment`);
  }
  return { entry: Number(e), kernelEnd: Number(end), segments };
}

/** Page-table entry bits. */
const PTE_P = 1n;
const PTE_RW = 2n;
const PTE_PS = 0x80n;

/**
 * Identity page tables over `[0, allocBytes)`: 2 MiB pages, except the first
 * 2 MiB in 4 KiB pages where the tender's pages below the boot info are not
 * present and the boot-info area up to 1 MiB is read-only.
 */
export function writeUnikernelPageTables(mem: GuestMemory, allocBytes: number): void {
  mem.fill(X86_PML4_BASE, PAGE_BYTES, 0);
  mem.fill(X86_PDPTE_BASE, PAGE_BYTES, 0);
  mem.fill(X86_PDE_BASE, 4 * PAGE_BYTES, 0);
  mem.fill(X86_PT0E_BASE, PAGE_BYTES, 0);
  mem.writeU64(X86_PML4_BASE, BigInt(X86_PDPTE_BASE) | PTE_P | PTE_RW);
  for (let i = 0; i < 4; i++) {
    mem.writeU64(X86_PDPTE_BASE + 8 * i, BigInt(X86_PDE_BASE + i * PAGE_BYTES) | PTE_P | PTE_RW);
  }
  mem.writeU64(X86_PDE_BASE, BigInt(X86_PT0E_BASE) | PTE_P | PTE_RW);
  for (let gpa = X86_BOOT_INFO_BASE; gpa < X86_GUEST_PAGE_SIZE; gpa += PAGE_BYTES) {
    const flags = gpa < HVT_GUEST_MIN_BASE ? PTE_P : PTE_P | PTE_RW;
    mem.writeU64(X86_PT0E_BASE + (gpa / PAGE_BYTES) * 8, BigInt(gpa) | flags);
  }
  for (let gpa = X86_GUEST_PAGE_SIZE; gpa < allocBytes; gpa += X86_GUEST_PAGE_SIZE) {
    mem.writeU64(
      X86_PDE_BASE + (gpa / X86_GUEST_PAGE_SIZE) * 8,
      BigInt(gpa) | PTE_P | PTE_RW | PTE_PS,
    );
  }
}

function flatSegment(selector: number, code: boolean): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    // Code: execute-only, accessed (9); data: read/write, accessed (3).
    type: code ? 9 : 3,
    present: true,
    dpl: 0,
    db: !code,
    s: true,
    l: code,
    g: true,
    avl: false,
    unusable: false,
  };
}

/** The register state the ABI promises at the entry point. */
export function unikernelCpuState(entry: number, stackTop: number): CpuState {
  const code = flatSegment(X86_GDT_CODE_SELECTOR, true);
  const data = flatSegment(X86_GDT_DATA_SELECTOR, false);
  return {
    regs: {
      ...zeroRegisters(),
      // The single argument of _start: the boot info.
      rdi: BigInt(X86_BOOT_INFO_BASE),
      // (RSP + 8) % 16 == 0 at entry, as after a call.
      rsp: BigInt(stackTop - 8),
      rip: BigInt(entry),
    },
    sregs: {
      cs: code,
      ds: { ...data },
      es: { ...data },
      fs: { ...data },
      gs: { ...data },
      ss: { ...data },
      tr: busyTss(0, 0, 0),
      ldt: unusableLdt(),
      gdt: { base: BigInt(X86_GDT_BASE), limit: X86_GDTR_LIMIT },
      idt: { base: 0n, limit: 0 },
      cr0: X86_CR0_INIT,
      cr2: 0n,
      cr3: BigInt(X86_PML4_BASE),
      cr4: X86_CR4_INIT,
      cr8: 0n,
      efer: X86_EFER_INIT,
    },
  };
}

/** Encodes the command line with its terminator; throws when it is too long. */
export function encodeUnikernelCmdline(cmdline: string): Uint8Array {
  const bytes = new TextEncoder().encode(cmdline);
  if (bytes.length >= HVT_CMDLINE_SIZE) {
    throw new LoaderError(
      `guest command line of ${bytes.length} bytes is too long (at most ${HVT_CMDLINE_SIZE - 1})`,
    );
  }
  if (bytes.includes(0)) throw new LoaderError("guest command line contains a NUL byte");
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * Loads a checked unikernel into `options.memory` and writes the tender's
 * low pages. Every failure is a LoaderError starting with the image name.
 */
export function loadUnikernel(
  data: Uint8Array,
  image: Solo5Image,
  options: UnikernelLoadOptions,
): UnikernelLoadResult {
  const name = options.name ?? "unikernel";
  const mem = options.memory;
  const { layout } = options;
  try {
    const { entry, kernelEnd, segments } = loadSegments(data, image, mem, layout.guestBytes);
    const gdt = new Uint8Array(X86_GDTR_LIMIT + 1);
    gdt.set(encodeSegmentDescriptor(flatSegment(X86_GDT_CODE_SELECTOR, true)), 8);
    gdt.set(encodeSegmentDescriptor(flatSegment(X86_GDT_DATA_SELECTOR, false)), 16);
    mem.write(X86_GDT_BASE, gdt);
    writeUnikernelPageTables(mem, layout.allocBytes);
    const cmdline = encodeUnikernelCmdline(options.cmdline);
    const mftGpa = X86_BOOT_INFO_BASE + BOOT_INFO.BYTES;
    const cmdlineGpa = mftGpa + options.manifest.length;
    if (cmdlineGpa + HVT_CMDLINE_SIZE > HVT_GUEST_MIN_BASE) {
      throw new LoaderError("boot info, manifest and command line do not fit below 1 MiB");
    }
    const bi = X86_BOOT_INFO_BASE;
    mem.fill(bi, cmdlineGpa + HVT_CMDLINE_SIZE - bi, 0);
    mem.writeU64(bi + BOOT_INFO.MEM_SIZE, BigInt(layout.guestBytes));
    mem.writeU64(bi + BOOT_INFO.KERNEL_END, BigInt(kernelEnd));
    mem.writeU64(bi + BOOT_INFO.CPU_CYCLE_FREQ, BigInt(Math.round(options.tscHz)));
    mem.writeU64(bi + BOOT_INFO.CMDLINE, BigInt(cmdlineGpa));
    mem.writeU64(bi + BOOT_INFO.MFT, BigInt(mftGpa));
    mem.writeU32(bi + BOOT_INFO.HOST_FEATURES, layout.ringGpa ? HVT_FEATURE_RING_IO : 0);
    mem.writeU32(bi + BOOT_INFO.GUEST_FEATURES, 0);
    mem.writeU64(bi + BOOT_INFO.NET_RING, BigInt(layout.ringGpa ?? 0));
    mem.write(mftGpa, options.manifest);
    mem.write(cmdlineGpa, cmdline);
    if (layout.ringGpa) mem.fill(layout.ringGpa, HVT_RING_BYTES, 0);
    const state = unikernelCpuState(entry, layout.guestBytes);
    const summary = `Solo5 hvt unikernel (ABI ${image.abi.version}), entry at ${hex(entry)}, ` +
      `${segments.length} segment(s) up to ${hex(kernelEnd)}, ` +
      `${formatBytes(layout.guestBytes)} of memory` +
      (layout.ringGpa ? `, network ring at ${hex(layout.ringGpa)}` : "");
    return { state, entry, kernelEnd, segments, summary };
  } catch (e) {
    if (e instanceof LoaderError) throw new LoaderError(`${name}: ${e.message}`, { cause: e });
    throw e;
  }
}
