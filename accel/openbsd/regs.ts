/**
 * Register codecs of the vmm(4) back-end: `struct vcpu_reg_state` (the
 * register image inside every `vm_exit`, in VMM_IOC_RESETCPU and in
 * READREGS/WRITEREGS) to and from the accelerator contract's
 * {@link Registers}/{@link SpecialRegisters}, and segments in the VMX
 * access-rights layout vmm(4) uses for both VMX and SVM hosts.
 *
 * @module
 */

import type { CpuState, Registers, Segment, SpecialRegisters } from "../types.ts";
import * as abi from "./abi.ts";

const VRS = abi.vcpu_reg_state;
const VRS_GPRS = VRS.offsetOf("vrs_gprs");
const VRS_CRS = VRS.offsetOf("vrs_crs");
const VRS_MSRS = VRS.offsetOf("vrs_msrs");
const VRS_DRS = VRS.offsetOf("vrs_drs");
const VRS_SREGS = VRS.offsetOf("vrs_sregs");
const VRS_GDTR = VRS.offsetOf("vrs_gdtr");
const VRS_IDTR = VRS.offsetOf("vrs_idtr");
const SEG = abi.vcpu_segment_info;
const SEG_SEL = SEG.offsetOf("vsi_sel");
const SEG_LIMIT = SEG.offsetOf("vsi_limit");
const SEG_AR = SEG.offsetOf("vsi_ar");
const SEG_BASE = SEG.offsetOf("vsi_base");

/** Registers -> vrs_gprs index. */
const GPR_INDEX: Readonly<Record<keyof Registers, number>> = {
  rax: abi.VCPU_REGS_RAX,
  rcx: abi.VCPU_REGS_RCX,
  rdx: abi.VCPU_REGS_RDX,
  rbx: abi.VCPU_REGS_RBX,
  rsp: abi.VCPU_REGS_RSP,
  rbp: abi.VCPU_REGS_RBP,
  rsi: abi.VCPU_REGS_RSI,
  rdi: abi.VCPU_REGS_RDI,
  r8: abi.VCPU_REGS_R8,
  r9: abi.VCPU_REGS_R9,
  r10: abi.VCPU_REGS_R10,
  r11: abi.VCPU_REGS_R11,
  r12: abi.VCPU_REGS_R12,
  r13: abi.VCPU_REGS_R13,
  r14: abi.VCPU_REGS_R14,
  r15: abi.VCPU_REGS_R15,
  rip: abi.VCPU_REGS_RIP,
  rflags: abi.VCPU_REGS_RFLAGS,
};
const GPR_KEYS = Object.keys(GPR_INDEX) as (keyof Registers)[];

/** SpecialRegisters segment -> vrs_sregs index. */
const SREG_INDEX = {
  es: abi.VCPU_REGS_ES,
  cs: abi.VCPU_REGS_CS,
  ss: abi.VCPU_REGS_SS,
  ds: abi.VCPU_REGS_DS,
  fs: abi.VCPU_REGS_FS,
  gs: abi.VCPU_REGS_GS,
  ldt: abi.VCPU_REGS_LDTR,
  tr: abi.VCPU_REGS_TR,
} as const;
const SREG_KEYS = Object.keys(SREG_INDEX) as (keyof typeof SREG_INDEX)[];

/** What vmd's flat templates put in the registers our CpuState does not carry. */
const DEFAULT_DR6 = 0xffff0ff0n;
const DEFAULT_DR7 = 0x400n;
/** XCR0 = XFEATURE_X87, as vmd's templates. */
const DEFAULT_XCR0 = 1n;

const VMX_AR_UNUSABLE = 1 << 16;
const AR_L = 1 << 13;
const AR_DB = 1 << 14;

/** Offset of GPR `index` (a VCPU_REGS_* constant) inside a `vcpu_reg_state`. */
export function gprAt(index: number): number {
  return VRS_GPRS + index * 8;
}

/** Offset of control register `index` inside a `vcpu_reg_state`. */
export function crAt(index: number): number {
  return VRS_CRS + index * 8;
}

/** Offset of MSR `index` inside a `vcpu_reg_state`. */
export function msrAt(index: number): number {
  return VRS_MSRS + index * 8;
}

/** Offset of segment register `index` inside a `vcpu_reg_state`. */
export function sregAt(index: number): number {
  return VRS_SREGS + index * SEG.size;
}

/**
 * A segment in the VMX access-rights layout vmm(4) uses for `vsi_ar`:
 * type | S<<4 | DPL<<5 | P<<7 | AVL<<12 | L<<13 | D/B<<14 | G<<15, bit 16
 * unusable.
 */
export function segmentAccessRights(s: Segment): number {
  return ((s.type & 0xf) | (s.s ? 1 << 4 : 0) | ((s.dpl & 3) << 5) | (s.present ? 1 << 7 : 0) |
    (s.avl ? 1 << 12 : 0) | (s.l ? AR_L : 0) | (s.db ? AR_DB : 0) | (s.g ? 1 << 15 : 0) |
    (s.unusable ? VMX_AR_UNUSABLE : 0)) >>> 0;
}

/** The inverse of {@link segmentAccessRights}. */
export function segmentFromAccessRights(
  selector: number,
  limit: number,
  ar: number,
  base: bigint,
): Segment {
  return {
    base,
    limit: limit >>> 0,
    selector,
    type: ar & 0xf,
    s: (ar & (1 << 4)) !== 0,
    dpl: (ar >> 5) & 3,
    present: (ar & (1 << 7)) !== 0,
    avl: (ar & (1 << 12)) !== 0,
    l: (ar & AR_L) !== 0,
    db: (ar & AR_DB) !== 0,
    g: (ar & (1 << 15)) !== 0,
    unusable: (ar & VMX_AR_UNUSABLE) !== 0,
  };
}

/** Reads the GPRs of the `vcpu_reg_state` at `at` of `view`. */
export function readGprs(view: DataView, at: number): Registers {
  const r = {} as Registers;
  for (const k of GPR_KEYS) r[k] = view.getBigUint64(at + gprAt(GPR_INDEX[k]), true);
  return r;
}

/** Writes the GPRs of the `vcpu_reg_state` at `at` of `view`. */
export function writeGprs(view: DataView, at: number, regs: Registers): void {
  for (const k of GPR_KEYS) {
    view.setBigUint64(at + gprAt(GPR_INDEX[k]), BigInt.asUintN(64, regs[k]), true);
  }
}

function readSegment(view: DataView, at: number): Segment {
  return segmentFromAccessRights(
    view.getUint16(at + SEG_SEL, true),
    view.getUint32(at + SEG_LIMIT, true),
    view.getUint32(at + SEG_AR, true),
    view.getBigUint64(at + SEG_BASE, true),
  );
}

function writeSegment(view: DataView, at: number, s: Segment): void {
  view.setUint16(at + SEG_SEL, s.selector & 0xffff, true);
  view.setUint32(at + SEG_LIMIT, s.limit >>> 0, true);
  view.setUint32(at + SEG_AR, segmentAccessRights(s), true);
  view.setBigUint64(at + SEG_BASE, BigInt.asUintN(64, s.base), true);
}

/** Reads segments, descriptor tables, CRs and EFER of a `vcpu_reg_state`. */
export function readSregs(view: DataView, at: number): SpecialRegisters {
  const s = {} as SpecialRegisters;
  for (const k of SREG_KEYS) s[k] = readSegment(view, at + sregAt(SREG_INDEX[k]));
  s.gdt = {
    base: view.getBigUint64(at + VRS_GDTR + SEG_BASE, true),
    limit: view.getUint32(at + VRS_GDTR + SEG_LIMIT, true),
  };
  s.idt = {
    base: view.getBigUint64(at + VRS_IDTR + SEG_BASE, true),
    limit: view.getUint32(at + VRS_IDTR + SEG_LIMIT, true),
  };
  s.cr0 = view.getBigUint64(at + crAt(abi.VCPU_REGS_CR0), true);
  s.cr2 = view.getBigUint64(at + crAt(abi.VCPU_REGS_CR2), true);
  s.cr3 = view.getBigUint64(at + crAt(abi.VCPU_REGS_CR3), true);
  s.cr4 = view.getBigUint64(at + crAt(abi.VCPU_REGS_CR4), true);
  s.cr8 = view.getBigUint64(at + crAt(abi.VCPU_REGS_CR8), true);
  s.efer = view.getBigUint64(at + msrAt(abi.VCPU_REGS_EFER), true);
  return s;
}

/** Writes segments, descriptor tables, CRs and EFER of a `vcpu_reg_state`. */
export function writeSregs(view: DataView, at: number, s: SpecialRegisters): void {
  for (const k of SREG_KEYS) writeSegment(view, at + sregAt(SREG_INDEX[k]), s[k]);
  for (const [off, t] of [[VRS_GDTR, s.gdt], [VRS_IDTR, s.idt]] as const) {
    view.setUint16(at + off + SEG_SEL, 0, true);
    view.setUint32(at + off + SEG_LIMIT, t.limit >>> 0, true);
    view.setUint32(at + off + SEG_AR, 0, true);
    view.setBigUint64(at + off + SEG_BASE, BigInt.asUintN(64, t.base), true);
  }
  const crs: [number, bigint][] = [
    [abi.VCPU_REGS_CR0, s.cr0],
    [abi.VCPU_REGS_CR2, s.cr2],
    [abi.VCPU_REGS_CR3, s.cr3],
    [abi.VCPU_REGS_CR4, s.cr4],
    [abi.VCPU_REGS_CR8, s.cr8],
  ];
  for (const [i, v] of crs) view.setBigUint64(at + crAt(i), BigInt.asUintN(64, v), true);
  view.setBigUint64(at + msrAt(abi.VCPU_REGS_EFER), BigInt.asUintN(64, s.efer), true);
}

/**
 * A `vcpu_reg_state` (568 bytes) for `state`: GPRs, segments (VMX access
 * rights), GDTR/IDTR, CR0/2/3/4/8 and EFER from the CpuState; XCR0 = x87,
 * DR6/DR7 at their reset values and the other MSRs zero, as vmd's templates.
 */
export function encodeVcpuRegState(state: CpuState): Uint8Array {
  const buf = new Uint8Array(VRS.size);
  const view = new DataView(buf.buffer);
  writeGprs(view, 0, state.regs);
  writeSregs(view, 0, state.sregs);
  view.setBigUint64(crAt(abi.VCPU_REGS_XCR0), DEFAULT_XCR0, true);
  view.setBigUint64(VRS_DRS + abi.VCPU_REGS_DR6 * 8, DEFAULT_DR6, true);
  view.setBigUint64(VRS_DRS + abi.VCPU_REGS_DR7 * 8, DEFAULT_DR7, true);
  return buf;
}

/** The CpuState a `vcpu_reg_state` holds (the inverse of {@link encodeVcpuRegState}). */
export function decodeVcpuRegState(vrs: Uint8Array): CpuState {
  const view = new DataView(vrs.buffer, vrs.byteOffset, vrs.byteLength);
  return { regs: readGprs(view, 0), sregs: readSregs(view, 0) };
}

/**
 * The width mask of RIP in the code mode of the `vcpu_reg_state` at `at`
 * (16, 32 or 64 bits), read from CR0.PE, RFLAGS.VM, EFER.LMA and CS's L/D
 * bits without decoding the whole image.
 */
export function ipMaskOf(view: DataView, at: number): bigint {
  const pe = (view.getBigUint64(at + crAt(abi.VCPU_REGS_CR0), true) & 1n) !== 0n;
  const vm86 = (view.getBigUint64(at + gprAt(abi.VCPU_REGS_RFLAGS), true) & (1n << 17n)) !== 0n;
  if (!pe || vm86) return 0xffffn;
  const ar = view.getUint32(at + sregAt(abi.VCPU_REGS_CS) + SEG_AR, true);
  const lma = (view.getBigUint64(at + msrAt(abi.VCPU_REGS_EFER), true) & (1n << 10n)) !== 0n;
  if (lma && (ar & AR_L) !== 0) return 0xffffffffffffffffn;
  return (ar & AR_DB) !== 0 ? 0xffffffffn : 0xffffn;
}
