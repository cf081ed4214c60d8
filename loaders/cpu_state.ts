/**
 * Builders for the initial architectural state of a vCPU (`CpuState`), plus
 * the boot GDT and identity page tables those states point at.
 *
 * Every segment cache here is complete and self-consistent (base, limit,
 * type, S, DPL, P, D/B, L, G, accessed bit set) so that VMX guest-state
 * checks pass on both KVM and OpenBSD vmm(4), and the GDT written by
 * {@link writeBootGdt} is encoded from the very same {@link Segment} objects
 * so a guest that reloads a selector gets what its cache already holds.
 *
 * Boot GDT (at {@link BOOT_GDT_GPA}, the selectors of Linux's boot protocol):
 *
 * | selector | descriptor                                           |
 * | -------- | ---------------------------------------------------- |
 * | 0x00     | null                                                 |
 * | 0x08     | null (unused, as in Linux's own boot GDT)            |
 * | 0x10     | flat 4 GiB code: 32-bit, or 64-bit (L=1) in long mode |
 * | 0x18     | flat 4 GiB read/write data                           |
 * | 0x20     | busy TSS at {@link BOOT_TSS_GPA} (16 bytes)           |
 *
 * @module
 */

import type { CpuState, Registers, Segment, SpecialRegisters } from "../core/cpu.ts";
import type { GuestMemory } from "../core/guest_memory.ts";
import {
  BOOT_GDT_GPA,
  BOOT_TSS_GPA,
  PAGE_SIZE,
  PD_COUNT,
  PD_GPA,
  PDPT_GPA,
  PML4_GPA,
} from "../core/layout.ts";

/** CR0.PE: protected mode. */
export const CR0_PE = 1n << 0n;
/** CR0.ET: extension type (hard-wired to 1 on modern CPUs). */
export const CR0_ET = 1n << 4n;
/** CR0.NW: not write-through (set at reset). */
export const CR0_NW = 1n << 29n;
/** CR0.CD: cache disable (set at reset). */
export const CR0_CD = 1n << 30n;
/** CR0.PG: paging. */
export const CR0_PG = 1n << 31n;
/** CR4.PAE: physical address extension (required for long mode). */
export const CR4_PAE = 1n << 5n;
/** EFER.LME: long mode enable. */
export const EFER_LME = 1n << 8n;
/** EFER.LMA: long mode active. */
export const EFER_LMA = 1n << 10n;
/** RFLAGS bit 1 is reserved and always 1. */
export const RFLAGS_RESERVED = 1n << 1n;

/** Segment type: read/write data, accessed. */
export const SEG_TYPE_DATA_RW_ACCESSED = 0x3;
/** Segment type: execute/read code, accessed. */
export const SEG_TYPE_CODE_XR_ACCESSED = 0xb;
/** System segment type: LDT. */
export const SEG_TYPE_LDT = 0x2;
/** System segment type: busy 32-bit TSS (also the busy 64-bit TSS in long mode). */
export const SEG_TYPE_TSS_BUSY = 0xb;

/** Code selector of the boot GDT (Linux's `__BOOT_CS`). */
export const BOOT_CS = 0x10;
/** Data selector of the boot GDT (Linux's `__BOOT_DS`). */
export const BOOT_DS = 0x18;
/** TSS selector of the boot GDT. */
export const BOOT_TR = 0x20;
/** GDTR limit of the boot GDT: five slots, the TSS taking two (16-byte system descriptor). */
export const BOOT_GDT_LIMIT = 0x2f;
/** TSS limit: a 104-byte TSS without I/O permission bitmap. */
export const BOOT_TSS_LIMIT = 0x67;

/** Page-table entry bits. */
const PTE_PRESENT = 1n << 0n;
const PTE_WRITABLE = 1n << 1n;
const PTE_PAGE_SIZE = 1n << 7n;
const LARGE_PAGE_BYTES = 2 * 1024 * 1024;

/** Which code segment the boot GDT carries at {@link BOOT_CS}. */
export type BootMode = "protected" | "long";

/** Where the boot GDT and TSS live (defaults: the layout's addresses). */
export interface BootTablesOptions {
  gdtBase?: number;
  tssBase?: number;
}

/** Options of {@link protectedModeState}. */
export interface ProtectedModeOptions extends BootTablesOptions {
  /** Initial RSP; 0 when the loaded code brings its own stack. */
  stackTop?: number;
}

/** Options of {@link longModeState}. */
export interface LongModeOptions extends ProtectedModeOptions {
  /** Guest-physical address of the PML4 (CR3). */
  pml4?: number;
}

/** Every general-purpose register zero, RFLAGS with only its reserved bit 1 set. */
export function zeroRegisters(): Registers {
  return {
    rax: 0n,
    rbx: 0n,
    rcx: 0n,
    rdx: 0n,
    rsi: 0n,
    rdi: 0n,
    rsp: 0n,
    rbp: 0n,
    r8: 0n,
    r9: 0n,
    r10: 0n,
    r11: 0n,
    r12: 0n,
    r13: 0n,
    r14: 0n,
    r15: 0n,
    rip: 0n,
    rflags: RFLAGS_RESERVED,
  };
}

/** A real-mode segment: base = selector * 16, 64 KiB limit, present, accessed. */
export function realModeSegment(selector: number, code = false): Segment {
  return {
    base: BigInt(selector & 0xffff) << 4n,
    limit: 0xffff,
    selector: selector & 0xffff,
    type: code ? SEG_TYPE_CODE_XR_ACCESSED : SEG_TYPE_DATA_RW_ACCESSED,
    present: true,
    dpl: 0,
    db: false,
    s: true,
    l: false,
    g: false,
    avl: false,
    unusable: false,
  };
}

/** The unusable LDTR every state here starts with (VMX ignores its other fields). */
export function unusableLdt(): Segment {
  return {
    base: 0n,
    limit: 0,
    selector: 0,
    type: SEG_TYPE_LDT,
    present: false,
    dpl: 0,
    db: false,
    s: false,
    l: false,
    g: false,
    avl: false,
    unusable: true,
  };
}

/** A busy TSS segment (type 11, present), as VMX requires of TR. */
export function busyTss(selector: number, base: number, limit: number): Segment {
  return {
    base: BigInt(base),
    limit,
    selector,
    type: SEG_TYPE_TSS_BUSY,
    present: true,
    dpl: 0,
    db: false,
    s: false,
    l: false,
    g: false,
    avl: false,
    unusable: false,
  };
}

/**
 * A flat 4 GiB present ring-0 code or data segment (base 0, page-granular,
 * 32-bit) of descriptor `type` at `selector`, with `extra` overriding fields.
 */
export function flatSegment(selector: number, type: number, extra: Partial<Segment> = {}): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type,
    present: true,
    dpl: 0,
    db: true,
    s: true,
    l: false,
    g: true,
    avl: false,
    unusable: false,
    ...extra,
  };
}

/** The flat 4 GiB segments of the boot GDT for `mode`. */
export function bootSegments(
  mode: BootMode,
  tssBase: number = BOOT_TSS_GPA,
): { code: Segment; data: Segment; tss: Segment } {
  return {
    // A 64-bit code segment must have D=0 when L=1.
    code: flatSegment(BOOT_CS, SEG_TYPE_CODE_XR_ACCESSED, {
      db: mode === "protected",
      l: mode === "long",
    }),
    data: flatSegment(BOOT_DS, SEG_TYPE_DATA_RW_ACCESSED),
    tss: busyTss(BOOT_TR, tssBase, BOOT_TSS_LIMIT),
  };
}

/**
 * Encodes `seg` as a GDT descriptor: 8 bytes for code/data, 16 bytes for a
 * system segment in long mode (`wide`: base bits 63..32 in the second half).
 */
export function encodeSegmentDescriptor(seg: Segment, wide = false): Uint8Array {
  const rawLimit = seg.g ? seg.limit >>> 12 : seg.limit;
  if (rawLimit > 0xfffff || (seg.g && (seg.limit & 0xfff) !== 0xfff)) {
    throw new RangeError(
      `Segment limit "0x${seg.limit.toString(16)}" cannot be encoded with G=${seg.g ? 1 : 0}`,
    );
  }
  const base = BigInt.asUintN(64, seg.base);
  if (!wide && base > 0xffffffffn) {
    throw new RangeError(`Segment base "0x${base.toString(16)}" needs a 16-byte descriptor`);
  }
  const baseLow = Number(base & 0xffffffffn);
  const low = ((rawLimit & 0xffff) | ((baseLow & 0xffff) << 16)) >>> 0;
  const high = (((baseLow >>> 16) & 0xff) |
    ((seg.type & 0xf) << 8) |
    ((seg.s ? 1 : 0) << 12) |
    ((seg.dpl & 3) << 13) |
    ((seg.present ? 1 : 0) << 15) |
    (((rawLimit >>> 16) & 0xf) << 16) |
    ((seg.avl ? 1 : 0) << 20) |
    ((seg.l ? 1 : 0) << 21) |
    ((seg.db ? 1 : 0) << 22) |
    ((seg.g ? 1 : 0) << 23) |
    (((baseLow >>> 24) & 0xff) << 24)) >>> 0;
  const out = new Uint8Array(wide ? 16 : 8);
  const view = new DataView(out.buffer);
  view.setUint32(0, low, true);
  view.setUint32(4, high, true);
  if (wide) view.setUint32(8, Number(base >> 32n), true);
  return out;
}

/**
 * Writes the boot GDT (see the module doc) and a zeroed TSS whose I/O map
 * base points past its limit (no I/O bitmap).
 */
export function writeBootGdt(
  mem: GuestMemory,
  mode: BootMode,
  options: BootTablesOptions = {},
): void {
  const gdtBase = options.gdtBase ?? BOOT_GDT_GPA;
  const tssBase = options.tssBase ?? BOOT_TSS_GPA;
  const { code, data, tss } = bootSegments(mode, tssBase);
  mem.fill(gdtBase, BOOT_GDT_LIMIT + 1, 0);
  mem.write(gdtBase + BOOT_CS, encodeSegmentDescriptor(code));
  mem.write(gdtBase + BOOT_DS, encodeSegmentDescriptor(data));
  mem.write(gdtBase + BOOT_TR, encodeSegmentDescriptor(tss, true));
  mem.fill(tssBase, BOOT_TSS_LIMIT + 1, 0);
  // TSS offset 0x66: I/O map base; beyond the limit means "no bitmap".
  mem.writeU16(tssBase + 0x66, BOOT_TSS_LIMIT + 1);
}

/**
 * Writes 4-level page tables at the layout's PML4/PDPT/PD addresses that
 * identity-map the first 4 GiB with 2 MiB pages (writable, supervisor).
 */
export function writeIdentityPageTables(mem: GuestMemory): void {
  mem.fill(PML4_GPA, PAGE_SIZE, 0);
  mem.fill(PDPT_GPA, PAGE_SIZE, 0);
  mem.writeU64(PML4_GPA, BigInt(PDPT_GPA) | PTE_PRESENT | PTE_WRITABLE);
  for (let i = 0; i < PD_COUNT; i++) {
    const pd = PD_GPA + i * PAGE_SIZE;
    mem.writeU64(PDPT_GPA + i * 8, BigInt(pd) | PTE_PRESENT | PTE_WRITABLE);
    for (let j = 0; j < 512; j++) {
      const gpa = BigInt((i * 512 + j) * LARGE_PAGE_BYTES);
      mem.writeU64(pd + j * 8, gpa | PTE_PRESENT | PTE_WRITABLE | PTE_PAGE_SIZE);
    }
  }
}

/**
 * The x86 reset state: real mode, CS selector 0xF000 with base 0xFFFF0000,
 * IP 0xFFF0 (the first fetch is at 0xFFFFFFF0), caches disabled in CR0,
 * EDX holding a family-6 processor signature.
 */
export function resetState(): CpuState {
  const regs = zeroRegisters();
  regs.rip = 0xfff0n;
  regs.rdx = 0x600n;
  const cs = realModeSegment(0xf000, true);
  cs.base = 0xffff0000n;
  const data = realModeSegment(0);
  const sregs: SpecialRegisters = {
    cs,
    ds: { ...data },
    es: { ...data },
    fs: { ...data },
    gs: { ...data },
    ss: { ...data },
    tr: busyTss(0, 0, 0xffff),
    ldt: unusableLdt(),
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
    cr0: CR0_CD | CR0_NW | CR0_ET,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
  };
  return { regs, sregs };
}

/**
 * Real mode at `cs:ip` with DS/ES/FS/GS/SS = `dataSelector` (default `cs`)
 * and SP = `sp`, as a boot sector or Linux real-mode setup code expects.
 */
export function realModeState(
  cs: number,
  ip: number,
  options: { dataSelector?: number; sp?: number } = {},
): CpuState {
  const state = resetState();
  state.regs.rip = BigInt(ip & 0xffff);
  state.regs.rdx = 0n;
  state.regs.rsp = BigInt((options.sp ?? 0) & 0xffff);
  const data = realModeSegment(options.dataSelector ?? cs);
  const s = state.sregs;
  s.cs = realModeSegment(cs, true);
  s.ds = { ...data };
  s.es = { ...data };
  s.fs = { ...data };
  s.gs = { ...data };
  s.ss = { ...data };
  s.cr0 = CR0_ET;
  s.idt = { base: 0n, limit: 0x3ff };
  return state;
}

function flatState(entry: number, mode: BootMode, options: ProtectedModeOptions): CpuState {
  if (!Number.isSafeInteger(entry) || entry < 0 || (mode === "protected" && entry > 0xffffffff)) {
    throw new RangeError(`Entry point "0x${entry.toString(16)}" is out of range`);
  }
  const { code, data, tss } = bootSegments(mode, options.tssBase ?? BOOT_TSS_GPA);
  const regs = zeroRegisters();
  regs.rip = BigInt(entry);
  regs.rsp = BigInt(options.stackTop ?? 0);
  const sregs: SpecialRegisters = {
    cs: code,
    ds: { ...data },
    es: { ...data },
    fs: { ...data },
    gs: { ...data },
    ss: { ...data },
    tr: tss,
    ldt: unusableLdt(),
    gdt: { base: BigInt(options.gdtBase ?? BOOT_GDT_GPA), limit: BOOT_GDT_LIMIT },
    // No IDT: the guest sets up its own before it enables interrupts.
    idt: { base: 0n, limit: 0 },
    cr0: CR0_PE | CR0_ET,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
  };
  return { regs, sregs };
}

/**
 * 32-bit protected mode at `entry`: flat 4 GiB CS 0x10 / data 0x18 (Linux's
 * boot selectors), paging off, IF=0, TR the boot TSS. Pair with
 * `writeBootGdt(mem, "protected")`.
 */
export function protectedModeState(entry: number, options: ProtectedModeOptions = {}): CpuState {
  return flatState(entry, "protected", options);
}

/**
 * 64-bit long mode at `entry`: CR0 PE|PG|ET, CR4 PAE, EFER LME|LMA, CR3 =
 * `pml4`, CS 0x10 with L=1, data 0x18, IF=0. Pair with
 * `writeBootGdt(mem, "long")` and {@link writeIdentityPageTables}.
 */
export function longModeState(entry: number, options: LongModeOptions = {}): CpuState {
  const state = flatState(entry, "long", options);
  const s = state.sregs;
  s.cr0 = CR0_PE | CR0_ET | CR0_PG;
  s.cr3 = BigInt(options.pml4 ?? PML4_GPA);
  s.cr4 = CR4_PAE;
  s.efer = EFER_LME | EFER_LMA;
  return state;
}
