/**
 * The OpenBSD vmm(4) back-end: /dev/vmm through the {@link Libc} interface
 * only, so the vmm(4)-on-KVM emulation and recorded transcripts can stand in
 * for the kernel.
 *
 * vmm(4) leaves to userspace what KVM does in the kernel, and this file does
 * it the way vmd does:
 * - IO exits: after the device ran, IN data is merged into `vei_data` at the
 *   access width and RIP is advanced by `vei_insn_len` in the exit's `vrs`
 *   (the kernel applies both on the next VMM_IOC_RUN; it also sets RAX to the
 *   zero-extended `vei_data` after any IN, so the upper half of RAX is lost,
 *   as on real vmm(4)). String/REP I/O is emulated element by element through
 *   the guest page tables (see `string_io.ts`).
 * - MMIO arrives as an EPT violation / NPF with VEE_FAULT_MMIO_ASSIST and no
 *   address: the instruction at RIP is fetched (or taken from the SVM decode
 *   assist bytes), decoded, its effective address computed and translated
 *   to a guest-physical address, the access goes to the MMIO bus, and the
 *   registers the guest must see are written into `vrs` (the kernel reloads
 *   every GPR from it after an EPT exit).
 * - Interrupts go in through `vrp_inject`, one vector, only when the last
 *   run said `vrp_irqready`; `vrp_intr_pending` asks for a window exit.
 *
 * ABI eras (docs/openbsd-vmm-abi.md section 0): era A keeps everything on
 * /dev/vmm and names the VM by id; era B (2026 -current) returns a per-VM fd
 * from VMM_IOC_CREATE and answers ENOTTY to anything else on /dev/vmm.
 * The era is probed at start-up with a harmless VMM_IOC_INFO (vip_size 0):
 * success means era A, ENOTTY era B. Era B's vm_create_params was not
 * available to verify; this back-end tries one hypothesis (`vcp_fd` appended
 * after `vcp_asid`, {@link vm_create_params_era_b}) whose different size
 * makes a kernel with another layout reject the request with ENOTTY (no VM
 * is created), and confirms the returned fd with a VMM_IOC_READREGS on it.
 * Anything else fails with a message naming what was expected.
 *
 * The process must not be pledged yet when this runs (VMM_IOC_INFO and
 * VMM_IOC_CREATE need the "proc" promise besides "vmm"): see
 * `openbsd_host.ts`.
 *
 * @module
 */

import type { IoctlRequest, Libc } from "../../ffi/libc.ts";
import { IoctlError, SyscallError } from "../../ffi/errno.ts";
import { openbsdIowr } from "../../ffi/ioctl.ts";
import { array, defineStruct, type StructLayout } from "../../ffi/struct.ts";
import { GuestMemory, type MemoryRegion } from "../../core/guest_memory.ts";
import { PCI_HOLE_BASE } from "../../core/layout.ts";
import type {
  Accel,
  CpuState,
  KickToken,
  Registers,
  Segment,
  SpecialRegisters,
  Vcpu,
  VcpuExit,
  Vm,
  VmOptions,
} from "../types.ts";
import { VcpuBase } from "../vcpu_base.ts";
import { kickVcpu } from "../kick.ts";
import * as abi from "./abi.ts";
import { emulateMmio, type MmioEmulateResult } from "./mmio_emulate.ts";
import { fetchInstruction, type PagingMode, translate } from "./page_walk.ts";
import {
  advanceStringIo,
  decodeStringIo,
  planStringIo,
  type StringIoInstruction,
  stringIoRemaining,
} from "./string_io.ts";
import {
  cpuModeOf,
  type DecodedMmio,
  decodeMmioInstruction,
  effectiveAddress,
  hexBytes,
  X86_MAX_INSN_BYTES,
} from "./x86_decode.ts";

/** The vmm(4) ABI era of the running kernel. */
export type VmmAbiEra = "A" | "B";

/** 4 GiB: the PCI hole ends here. */
const FOUR_GIB = 2 ** 32;
const PAGE = 4096;

/**
 * Era B `struct vm_create_params` as this back-end assumes it: era A's
 * fields with `int vcp_fd` appended (2664 bytes). UNVERIFIED: the header was
 * not available; the size is part of the request number, so a kernel with
 * another layout answers ENOTTY and nothing happens.
 */
export const vm_create_params_era_b: StructLayout = defineStruct("vm_create_params", [
  ["vcp_nmemranges", "u64"],
  ["vcp_ncpus", "u64"],
  ["vcp_memranges", array(abi.vm_mem_range, abi.VMM_MAX_MEM_RANGES)],
  ["vcp_name", array("u8", abi.VMM_MAX_NAME_LEN)],
  ["vcp_sev", "i32"],
  ["vcp_seves", "i32"],
  ["vcp_id", "u32"],
  ["vcp_poscbit", "u32"],
  ["vcp_asid", array("u32", abi.VMM_MAX_VCPUS)],
  ["vcp_fd", "i32"],
]);

/** VMM_IOC_CREATE with {@link vm_create_params_era_b} (0xCA685601). */
export const VMM_IOC_CREATE_ERA_B: IoctlRequest = Object.freeze({
  name: "VMM_IOC_CREATE",
  value: openbsdIowr(abi.VMM_IOC_GROUP, 1, vm_create_params_era_b.size),
});

// vm_exit offsets used on the hot path.
const EXIT = abi.vm_exit;
const EXIT_VEI_SIZE = EXIT.offsetOf("vei.vei_size");
const EXIT_VEI_DIR = EXIT.offsetOf("vei.vei_dir");
const EXIT_VEI_REP = EXIT.offsetOf("vei.vei_rep");
const EXIT_VEI_STRING = EXIT.offsetOf("vei.vei_string");
const EXIT_VEI_PORT = EXIT.offsetOf("vei.vei_port");
const EXIT_VEI_DATA = EXIT.offsetOf("vei.vei_data");
const EXIT_VEI_INSN_LEN = EXIT.offsetOf("vei.vei_insn_len");
const EXIT_VEE_FAULT_TYPE = EXIT.offsetOf("vee.vee_fault_type");
const EXIT_VEE_INSN_INFO = EXIT.offsetOf("vee.vee_insn_info");
const EXIT_VEE_INSN_LEN = EXIT.offsetOf("vee.vee_insn_len");
const EXIT_VEE_INSN_BYTES = EXIT.offsetOf("vee.vee_insn_bytes");
const EXIT_VRS = EXIT.offsetOf("vrs");
const EXIT_CPL = EXIT.offsetOf("cpl");

// vcpu_reg_state offsets (relative to the struct).
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

// vm_run_params offsets.
const RUNP = abi.vm_run_params;
const RUNP_VM_ID = RUNP.offsetOf("vrp_vm_id");
const RUNP_VCPU_ID = RUNP.offsetOf("vrp_vcpu_id");
const RUNP_INJECT_VECTOR = RUNP.offsetOf("vrp_inject.vie_vector");
const RUNP_INJECT_ERRORCODE = RUNP.offsetOf("vrp_inject.vie_errorcode");
const RUNP_INJECT_TYPE = RUNP.offsetOf("vrp_inject.vie_type");
const RUNP_INTR_PENDING = RUNP.offsetOf("vrp_intr_pending");
const RUNP_EXIT = RUNP.offsetOf("vrp_exit");
const RUNP_EXIT_REASON = RUNP.offsetOf("vrp_exit_reason");
const RUNP_IRQREADY = RUNP.offsetOf("vrp_irqready");

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

const RFLAGS_IF = 1n << 9n;
const VMX_AR_UNUSABLE = 1 << 16;

/**
 * A segment in the VMX access-rights layout vmm(4) uses for `vsi_ar`:
 * type | S<<4 | DPL<<5 | P<<7 | AVL<<12 | L<<13 | D/B<<14 | G<<15, bit 16
 * unusable.
 */
export function segmentAccessRights(s: Segment): number {
  return ((s.type & 0xf) | (s.s ? 1 << 4 : 0) | ((s.dpl & 3) << 5) | (s.present ? 1 << 7 : 0) |
    (s.avl ? 1 << 12 : 0) | (s.l ? 1 << 13 : 0) | (s.db ? 1 << 14 : 0) | (s.g ? 1 << 15 : 0) |
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
    l: (ar & (1 << 13)) !== 0,
    db: (ar & (1 << 14)) !== 0,
    g: (ar & (1 << 15)) !== 0,
    unusable: (ar & VMX_AR_UNUSABLE) !== 0,
  };
}

/** Reads GPRs from a `vcpu_reg_state` at `at` of `view`. */
function readGprs(view: DataView, at: number): Registers {
  const r = {} as Registers;
  for (const k of GPR_KEYS) r[k] = view.getBigUint64(at + VRS_GPRS + GPR_INDEX[k] * 8, true);
  return r;
}

function writeGprs(view: DataView, at: number, regs: Registers): void {
  for (const k of GPR_KEYS) {
    view.setBigUint64(at + VRS_GPRS + GPR_INDEX[k] * 8, BigInt.asUintN(64, regs[k]), true);
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

function crAt(index: number): number {
  return VRS_CRS + index * 8;
}

/** Reads segments, descriptor tables, CRs and EFER from a `vcpu_reg_state`. */
function readSregs(view: DataView, at: number): SpecialRegisters {
  const s = {} as SpecialRegisters;
  for (const k of SREG_KEYS) s[k] = readSegment(view, at + VRS_SREGS + SREG_INDEX[k] * SEG.size);
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
  s.efer = view.getBigUint64(at + VRS_MSRS + abi.VCPU_REGS_EFER * 8, true);
  return s;
}

function writeSregs(view: DataView, at: number, s: SpecialRegisters): void {
  for (const k of SREG_KEYS) writeSegment(view, at + VRS_SREGS + SREG_INDEX[k] * SEG.size, s[k]);
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
  view.setBigUint64(at + VRS_MSRS + abi.VCPU_REGS_EFER * 8, BigInt.asUintN(64, s.efer), true);
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

/** Opens the vmm(4) device with errors that say what to do. */
function openVmm(libc: Libc, path: string): number {
  try {
    return libc.open(path, libc.consts.O_RDWR | libc.consts.O_CLOEXEC);
  } catch (e) {
    if (e instanceof SyscallError) {
      if (e.code === "ENOENT" || e.code === "ENXIO" || e.code === "ENODEV") {
        throw new Error(
          `vmm(4) is not enabled: ${path} is missing (enable VMX/SVM in the firmware; ` +
            `vmm(4) needs a CPU with EPT/RVI)`,
        );
      }
      if (e.code === "EACCES" || e.code === "EPERM") {
        throw new Error(`no permission on ${path}: run as root (doas)`);
      }
    }
    throw e;
  }
}

/**
 * Probes the ABI era on the open /dev/vmm: VMM_IOC_INFO with a zero-sized
 * buffer only reports how much it would need (era A) or is refused with
 * ENOTTY (era B, where /dev/vmm takes nothing but CREATE).
 */
export function detectVmmEra(libc: Libc, fd: number): VmmAbiEra {
  const info = abi.vm_info_params.bytes({ vip_size: 0n, vip_info_ct: 0n, vip_info: 0n });
  const r = libc.ioctlTry(fd, abi.VMM_IOC_INFO, info, ["ENOTTY"]);
  return r >= 0 ? "A" : "B";
}

/** One range passed to VMM_IOC_CREATE. */
export interface VmmMemRange {
  gpa: number;
  size: number;
  type: number;
}

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/**
 * The ranges a VM gets: the RAM ranges, plus everything below 4 GiB from
 * the end of low RAM (or `holeBase`, the PCI hole, if RAM reaches it) that
 * no RAM covers, and the gaps between low RAM ranges, as VM_MEM_MMIO: accesses there exit as MMIO and reach the
 * machine's MMIO bus (vmm(4) fails the RUN for addresses in no range at
 * all, so the gap between a small VM's RAM and the PCI hole is MMIO too).
 * Checked as vmm(4) checks them (page aligned, ascending, not overlapping,
 * ending at most at 128 GiB, at most 16), with messages that name the
 * offending range.
 */
export function vmmMemRanges(
  ram: readonly { gpa: number; size: number }[],
  holeBase: number = PCI_HOLE_BASE,
): VmmMemRange[] {
  const ranges: VmmMemRange[] = ram.map((r) => ({ ...r, type: abi.VM_MEM_RAM }));
  // Gaps inside low RAM (the VGA window at 0xA0000) are MMIO too.
  const sorted = [...ram].sort((a, b) => a.gpa - b.gpa);
  for (let i = 1; i < sorted.length; i++) {
    const end = sorted[i - 1].gpa + sorted[i - 1].size;
    if (sorted[i].gpa > end && sorted[i].gpa < Math.min(holeBase, FOUR_GIB)) {
      ranges.push({ gpa: end, size: sorted[i].gpa - end, type: abi.VM_MEM_MMIO });
    }
  }
  const lowEnd = ram.filter((r) => r.gpa < FOUR_GIB)
    .reduce((end, r) => Math.max(end, Math.min(r.gpa + r.size, FOUR_GIB)), 0);
  // Holes between RAM inside [min(low RAM end, holeBase), 4 GiB).
  let cursor = Math.min(holeBase, Math.ceil(lowEnd / PAGE) * PAGE);
  for (const r of [...ram].sort((a, b) => a.gpa - b.gpa)) {
    if (r.gpa + r.size <= cursor || r.gpa >= FOUR_GIB) continue;
    if (r.gpa > cursor) ranges.push({ gpa: cursor, size: r.gpa - cursor, type: abi.VM_MEM_MMIO });
    cursor = Math.max(cursor, r.gpa + r.size);
  }
  if (cursor < FOUR_GIB) {
    ranges.push({ gpa: cursor, size: FOUR_GIB - cursor, type: abi.VM_MEM_MMIO });
  }
  ranges.sort((a, b) => a.gpa - b.gpa);
  checkMemRanges(ranges);
  return ranges;
}

/** vmm(4)'s vm_create_check_mem_ranges, with messages. */
export function checkMemRanges(ranges: readonly VmmMemRange[]): void {
  if (ranges.length === 0) throw new Error("A VM needs at least one memory range");
  if (ranges.length > abi.VMM_MAX_MEM_RANGES) {
    throw new Error(
      `vmm(4) takes at most ${abi.VMM_MAX_MEM_RANGES} memory ranges, this VM needs ` +
        `"${ranges.length}"`,
    );
  }
  let prevEnd = 0;
  ranges.forEach((r, i) => {
    const what = `Memory range ${i} at "${hex(r.gpa)}" of "${hex(r.size)}" bytes`;
    if (!Number.isSafeInteger(r.gpa) || !Number.isSafeInteger(r.size) || r.gpa < 0) {
      throw new Error(`${what} is not a valid address range`);
    }
    if (r.gpa % PAGE !== 0 || r.size % PAGE !== 0 || r.size === 0) {
      throw new Error(`${what} is not page aligned (vmm(4) needs 4 KiB pages)`);
    }
    if (r.gpa + r.size > abi.VMM_MAX_VM_MEM_SIZE) {
      throw new Error(`${what} ends beyond vmm(4)'s limit of 128 GiB (VMM_MAX_VM_MEM_SIZE)`);
    }
    if (i > 0 && r.gpa < prevEnd) {
      throw new Error(`${what} overlaps the previous range or is not in ascending order`);
    }
    prevEnd = r.gpa + r.size;
  });
}

/** Options of {@link OpenbsdAccel}. */
export interface OpenbsdAccelOptions {
  /** Where the PCI hole starts (VM_MEM_MMIO up to 4 GiB); default the machine layout's. */
  pciHoleBase?: number;
}

/** The OpenBSD vmm(4) accelerator. */
export class OpenbsdAccel implements Accel {
  readonly name = "openbsd";
  readonly libc: Libc;
  /** The /dev/vmm fd. */
  readonly fd: number;
  readonly era: VmmAbiEra;
  readonly devicePath: string;
  readonly pciHoleBase: number;
  #closed = false;

  constructor(libc: Libc, devicePath = "/dev/vmm", options: OpenbsdAccelOptions = {}) {
    abi.assertOpenbsdAbi();
    this.libc = libc;
    this.devicePath = devicePath;
    this.pciHoleBase = options.pciHoleBase ?? PCI_HOLE_BASE;
    this.fd = openVmm(libc, devicePath);
    try {
      this.era = detectVmmEra(libc, this.fd);
    } catch (e) {
      libc.close(this.fd);
      throw e;
    }
  }

  createVm(options: VmOptions): OpenbsdVm {
    return new OpenbsdVm(this, options);
  }

  kick(token: KickToken): void {
    kickVcpu(this.libc, token);
  }

  /** Closes /dev/vmm (VMs keep their own fds in era B; era A VMs are gone by then). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.libc.close(this.fd);
  }
}

/** A VM created with VMM_IOC_CREATE. */
export class OpenbsdVm implements Vm {
  readonly accel: OpenbsdAccel;
  readonly options: VmOptions;
  readonly memory: GuestMemory;
  /** `vcp_id`. */
  readonly id: number;
  /** The fd VM ioctls go to: /dev/vmm (era A) or the VM's own fd (era B). */
  readonly fd: number;
  readonly ranges: readonly VmmMemRange[];
  #closed = false;

  constructor(accel: OpenbsdAccel, options: VmOptions) {
    this.accel = accel;
    this.options = options;
    if (options.irqchip === "kernel") {
      throw new Error(
        `irqchip "kernel" is not available with accel "openbsd": vmm(4) has no in-kernel ` +
          `interrupt controller (use irqchip = "user")`,
      );
    }
    const maxVcpus = accel.era === "A" ? 1 : abi.VMM_MAX_VCPUS_PER_VM;
    if (!Number.isInteger(options.vcpus) || options.vcpus < 1 || options.vcpus > maxVcpus) {
      throw new Error(
        accel.era === "A"
          ? `vmm(4) on this host (ABI era A) runs 1 vCPU per VM; the config asks for ` +
            `"${options.vcpus}"`
          : `vmm(4) runs 1 to ${maxVcpus} vCPUs per VM; the config asks for "${options.vcpus}"`,
      );
    }
    this.ranges = vmmMemRanges(options.ram, accel.pciHoleBase);
    const created = accel.era === "A" ? this.#createEraA() : this.#createEraB();
    this.id = created.id;
    this.fd = created.fd;
    this.memory = new GuestMemory(created.regions);
  }

  #params(layout: StructLayout): Uint8Array {
    const name = new TextEncoder().encode(this.options.name).subarray(0, abi.VMM_MAX_NAME_LEN - 1);
    return layout.bytes({
      vcp_nmemranges: BigInt(this.ranges.length),
      vcp_ncpus: BigInt(this.options.vcpus),
      vcp_memranges: this.ranges.map((r) => ({
        vmr_gpa: BigInt(r.gpa),
        vmr_va: 0n,
        vmr_size: BigInt(r.size),
        vmr_type: r.type,
      })),
      vcp_name: name,
    });
  }

  #create(request: IoctlRequest, params: Uint8Array): void {
    const libc = this.accel.libc;
    try {
      libc.ioctl(this.accel.fd, request, params);
    } catch (e) {
      if (e instanceof IoctlError) {
        if (e.code === "ENOMEM") {
          throw new Error(
            `Cannot create VM "${this.options.name}": vmm(4) is out of memory or vCPUs ` +
              `(VMM_IOC_CREATE: ENOMEM)`,
            { cause: e },
          );
        }
        if (e.code === "EINVAL") {
          const list = this.ranges.map((r) => `${hex(r.gpa)}+${hex(r.size)}`).join(", ");
          throw new Error(
            `vmm(4) rejected the memory ranges of VM "${this.options.name}" (${list}) or its ` +
              `vCPU count "${this.options.vcpus}" (VMM_IOC_CREATE: EINVAL)`,
            { cause: e },
          );
        }
      }
      throw e;
    }
  }

  /** Host mappings the kernel made: one region per RAM range, from `vmr_va`. */
  #regions(layout: StructLayout, params: Uint8Array): MemoryRegion[] {
    const d = layout.decode(new DataView(params.buffer));
    const regions: MemoryRegion[] = [];
    this.ranges.forEach((r, i) => {
      if (r.type !== abi.VM_MEM_RAM) return;
      const va = d.vcp_memranges[i].vmr_va as bigint;
      if (va === 0n || va % BigInt(PAGE) !== 0n) {
        throw new Error(
          `VMM_IOC_CREATE returned host address "${hex(va)}" for memory range ${i}: ` +
            `expected a page-aligned mapping`,
        );
      }
      regions.push({ gpa: r.gpa, bytes: this.accel.libc.memoryAt(va, r.size), hostAddress: va });
    });
    return regions;
  }

  #createEraA(): { id: number; fd: number; regions: MemoryRegion[] } {
    const params = this.#params(abi.vm_create_params);
    this.#create(abi.VMM_IOC_CREATE, params);
    const id = new DataView(params.buffer).getUint32(
      abi.vm_create_params.offsetOf("vcp_id"),
      true,
    );
    try {
      return { id, fd: this.accel.fd, regions: this.#regions(abi.vm_create_params, params) };
    } catch (e) {
      this.accel.libc.ioctlTry(
        this.accel.fd,
        abi.VMM_IOC_TERM,
        abi.vm_terminate_params.bytes({ vtp_vm_id: id }),
        ["ENOENT", "EBUSY", "EPERM"],
      );
      throw e;
    }
  }

  #createEraB(): { id: number; fd: number; regions: MemoryRegion[] } {
    const libc = this.accel.libc;
    const layout = vm_create_params_era_b;
    const params = this.#params(layout);
    const expected = `vm_create_params of ${layout.size} bytes with "int vcp_fd" after ` +
      `vcp_asid (VMM_IOC_CREATE 0x${VMM_IOC_CREATE_ERA_B.value.toString(16)})`;
    try {
      this.#create(VMM_IOC_CREATE_ERA_B, params);
    } catch (e) {
      if (e instanceof IoctlError && e.code === "ENOTTY") {
        throw new Error(
          `vmm(4) on this host has the per-VM fd ABI (era B: ${this.accel.devicePath} answers ` +
            `ENOTTY to VMM_IOC_INFO) but rejected the era-B layout vmmctl expects: ${expected}. ` +
            `Rebuild accel/openbsd/abi.ts from /usr/include/dev/vmm/vmm.h of this release`,
          { cause: e },
        );
      }
      throw e;
    }
    const view = new DataView(params.buffer);
    const id = view.getUint32(layout.offsetOf("vcp_id"), true);
    const vmFd = view.getInt32(layout.offsetOf("vcp_fd"), true);
    // Confirm that the field holds a VM fd: a register read of vCPU 0 on it must work.
    const probe = abi.vm_rwregs_params.bytes({
      vrwp_vm_id: id,
      vrwp_vcpu_id: 0,
      vrwp_mask: BigInt(abi.VM_RWREGS_GPRS),
    });
    const ok = vmFd > 2 && vmFd !== this.accel.fd &&
      libc.ioctlTry(vmFd, abi.VMM_IOC_READREGS, probe, ["ENOTTY", "EBADF", "EINVAL", "ENOENT"]) >=
        0;
    if (!ok) {
      throw new Error(
        `vmm(4) era B: VMM_IOC_CREATE succeeded but vcp_fd "${vmFd}" is not a VM fd ` +
          `(VMM_IOC_READREGS on it failed): cannot confirm the expected layout, ${expected}`,
      );
    }
    try {
      return { id, fd: vmFd, regions: this.#regions(layout, params) };
    } catch (e) {
      libc.close(vmFd);
      throw e;
    }
  }

  /** The MMIO range containing `[gpa, gpa+length)`, if any. */
  isMmio(gpa: number, length: number): boolean {
    return this.ranges.some((r) =>
      r.type === abi.VM_MEM_MMIO && gpa >= r.gpa && gpa + length <= r.gpa + r.size
    );
  }

  createVcpu(id: number, state: CpuState): OpenbsdVcpu {
    if (!Number.isInteger(id) || id < 0 || id >= this.options.vcpus) {
      throw new Error(`vCPU "${id}" does not exist: the VM has ${this.options.vcpus}`);
    }
    return new OpenbsdVcpu(this, id, state);
  }

  setIrqLine(_irq: number, _high: boolean): void {
    throw new Error(
      `vmm(4) has no in-kernel interrupt controller: interrupt lines are the machine's PIC`,
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const libc = this.accel.libc;
    if (this.accel.era === "A") {
      libc.ioctlTry(
        this.fd,
        abi.VMM_IOC_TERM,
        abi.vm_terminate_params.bytes({ vtp_vm_id: this.id }),
        ["ENOENT"],
      );
    } else {
      libc.close(this.fd);
    }
  }
}

/** The pending completion of the last exit. */
type Pending =
  | { kind: "none" }
  | { kind: "io"; dir: number; insnLength: number }
  | {
    kind: "string-io";
    insn: StringIoInstruction;
    count: number;
    gpas: number[];
    data: Uint8Array;
  }
  | { kind: "mmio-load"; data: Uint8Array; finish: (data: Uint8Array) => MmioEmulateResult }
  | { kind: "mmio-store"; result: MmioEmulateResult };

const CS_AR_AT = EXIT_VRS + VRS_SREGS + abi.VCPU_REGS_CS * SEG.size + SEG_AR;
const CR0_AT = EXIT_VRS + VRS_CRS + abi.VCPU_REGS_CR0 * 8;
const EFER_AT = EXIT_VRS + VRS_MSRS + abi.VCPU_REGS_EFER * 8;
const RFLAGS_AT = EXIT_VRS + VRS_GPRS + abi.VCPU_REGS_RFLAGS * 8;
const AR_L = 1 << 13;
const AR_DB = 1 << 14;

/** A vmm(4) vCPU; used only on the thread that runs it. */
export class OpenbsdVcpu extends VcpuBase implements Vcpu {
  readonly vm: OpenbsdVm;
  readonly #libc: Libc;
  /** The caller-owned `struct vm_exit`: passed to every RUN; its `vrs` is our register image. */
  readonly #exit = new Uint8Array(EXIT.size);
  readonly #exitView = new DataView(this.#exit.buffer);
  readonly #run = new Uint8Array(RUNP.size);
  readonly #runView = new DataView(this.#run.buffer);
  readonly #rw = new Uint8Array(abi.vm_rwregs_params.size);
  #regs?: Registers;
  #sregs?: SpecialRegisters;
  /** VM_RWREGS_* groups changed since the last RUN (written with WRITEREGS). */
  #dirty = 0;
  #irqReady = false;
  #inject?: number;
  #window = false;
  #intrLine = false;
  #pending: Pending = { kind: "none" };

  constructor(vm: OpenbsdVm, id: number, state: CpuState) {
    super(id);
    this.vm = vm;
    this.#libc = vm.accel.libc;
    const vrs = encodeVcpuRegState(state);
    this.#libc.ioctl(
      vm.fd,
      abi.VMM_IOC_RESETCPU,
      (() => {
        const p = abi.vm_resetcpu_params.bytes({ vrp_vm_id: vm.id, vrp_vcpu_id: id });
        p.set(vrs, abi.vm_resetcpu_params.offsetOf("vrp_init_state"));
        return p;
      })(),
    );
    this.#exit.set(vrs, EXIT_VRS);
    this.#runView.setUint32(RUNP_VM_ID, vm.id, true);
    this.#runView.setUint32(RUNP_VCPU_ID, id, true);
    this.#runView.setBigUint64(RUNP_EXIT, this.#libc.addressOf(this.#exit), true);
    this.configured();
  }

  /** The `vm_exit` buffer (tests look at what the next RUN will pass in). */
  get exitBuffer(): Uint8Array {
    return this.#exit;
  }

  getRegisters(): Registers {
    this.#regs ??= readGprs(this.#exitView, EXIT_VRS);
    return { ...this.#regs };
  }

  setRegisters(regs: Registers): void {
    this.#regs = { ...regs };
    writeGprs(this.#exitView, EXIT_VRS, regs);
    this.#dirty |= abi.VM_RWREGS_GPRS;
  }

  getSpecialRegisters(): SpecialRegisters {
    this.#sregs ??= readSregs(this.#exitView, EXIT_VRS);
    return structuredClone(this.#sregs);
  }

  setSpecialRegisters(sregs: SpecialRegisters): void {
    this.#sregs = structuredClone(sregs);
    writeSregs(this.#exitView, EXIT_VRS, sregs);
    this.#dirty |= abi.VM_RWREGS_SREGS | abi.VM_RWREGS_CRS | abi.VM_RWREGS_MSRS;
  }

  /** RIP's width in the current code mode (read from the image without decoding it all). */
  #ipMask(): bigint {
    const v = this.#exitView;
    const pe = (v.getBigUint64(CR0_AT, true) & 1n) !== 0n;
    const vm86 = (v.getBigUint64(RFLAGS_AT, true) & (1n << 17n)) !== 0n;
    if (!pe || vm86) return 0xffffn;
    const ar = v.getUint32(CS_AR_AT, true);
    const lma = (v.getBigUint64(EFER_AT, true) & (1n << 10n)) !== 0n;
    if (lma && (ar & AR_L) !== 0) return 0xffffffffffffffffn;
    return (ar & AR_DB) !== 0 ? 0xffffffffn : 0xffffn;
  }

  /** Updates GPRs in the image only: the kernel reloads them from `vrs` itself. */
  #setImageRegisters(regs: Registers): void {
    this.#regs = { ...regs };
    writeGprs(this.#exitView, EXIT_VRS, regs);
  }

  #flush(): void {
    if (this.#dirty === 0) return;
    const rw = this.#rw;
    rw.fill(0);
    const v = new DataView(rw.buffer);
    v.setUint32(abi.vm_rwregs_params.offsetOf("vrwp_vm_id"), this.vm.id, true);
    v.setUint32(abi.vm_rwregs_params.offsetOf("vrwp_vcpu_id"), this.id, true);
    v.setBigUint64(abi.vm_rwregs_params.offsetOf("vrwp_mask"), BigInt(this.#dirty), true);
    rw.set(
      this.#exit.subarray(EXIT_VRS, EXIT_VRS + VRS.size),
      abi.vm_rwregs_params.offsetOf("vrwp_regs"),
    );
    this.#libc.ioctl(this.vm.fd, abi.VMM_IOC_WRITEREGS, rw);
    this.#dirty = 0;
  }

  /** Reloads the register image with VMM_IOC_READREGS (after a failed RUN). */
  #reload(): void {
    const rw = this.#rw;
    rw.fill(0);
    const v = new DataView(rw.buffer);
    v.setUint32(abi.vm_rwregs_params.offsetOf("vrwp_vm_id"), this.vm.id, true);
    v.setUint32(abi.vm_rwregs_params.offsetOf("vrwp_vcpu_id"), this.id, true);
    v.setBigUint64(abi.vm_rwregs_params.offsetOf("vrwp_mask"), BigInt(abi.VM_RWREGS_ALL), true);
    this.#libc.ioctl(this.vm.fd, abi.VMM_IOC_READREGS, rw);
    const at = abi.vm_rwregs_params.offsetOf("vrwp_regs");
    this.#exit.set(rw.subarray(at, at + VRS.size), EXIT_VRS);
    this.#regs = undefined;
    this.#sregs = undefined;
  }

  protected doRun(): VcpuExit {
    if (this.#pending.kind !== "none") {
      throw new Error("OpenbsdVcpu.run: the previous IO/MMIO exit was not completed");
    }
    this.#flush();
    const rv = this.#runView;
    if (this.#inject !== undefined) {
      rv.setUint8(RUNP_INJECT_VECTOR, this.#inject);
      rv.setUint32(RUNP_INJECT_ERRORCODE, 0, true);
      rv.setUint8(RUNP_INJECT_TYPE, abi.VCPU_INJECT_INTR);
      this.#inject = undefined;
    } else {
      rv.setUint8(RUNP_INJECT_VECTOR, 0);
      rv.setUint32(RUNP_INJECT_ERRORCODE, 0, true);
      rv.setUint8(RUNP_INJECT_TYPE, abi.VCPU_INJECT_NONE);
    }
    rv.setUint8(RUNP_INTR_PENDING, this.#window ? 1 : 0);
    rv.setUint16(RUNP_EXIT_REASON, 0, true);
    rv.setUint8(RUNP_IRQREADY, 0);
    this.#regs = undefined;
    this.#sregs = undefined;
    const r = this.#libc.ioctlTry(this.vm.fd, abi.VMM_IOC_RUN, this.#run, [
      "EINTR",
      "EAGAIN",
      "EIO",
    ]);
    if (r < 0) return this.#runFailed(r);
    this.#irqReady = rv.getUint8(RUNP_IRQREADY) !== 0;
    return this.#decodeExit(rv.getUint16(RUNP_EXIT_REASON, true));
  }

  /** RUN returned -errno for one of the accepted errors. */
  #runFailed(r: number): VcpuExit {
    const err = new IoctlError("VMM_IOC_RUN", abi.VMM_IOC_RUN.value, -r, this.#libc.os);
    this.#irqReady = false;
    if (err.code !== "EIO") return { kind: "interrupted" };
    // vmm(4) fails the RUN with EIO when the guest halts with interrupts off
    // (RIP still at the HLT) and when it cannot enter the guest at all.
    this.#reload();
    const regs = this.getRegisters();
    const bytes = this.#bytesAtRip(X86_MAX_INSN_BYTES);
    if ((regs.rflags & RFLAGS_IF) === 0n && bytes?.[0] === 0xf4) {
      this.#setImageRegisters({ ...regs, rip: regs.rip + 1n });
      this.#dirty |= abi.VM_RWREGS_GPRS;
      return { kind: "halt" };
    }
    return {
      kind: "fail",
      raw: 0,
      reason: `VMM_IOC_RUN failed: ${err.message}${this.#whereAmI()}`,
    };
  }

  /** Up to `max` bytes at CS:RIP through the guest page tables, or undefined. */
  #bytesAtRip(max: number): Uint8Array | undefined {
    const regs = this.getRegisters();
    const sregs = this.getSpecialRegisters();
    const long = cpuModeOf(sregs, regs.rflags) === "long64";
    const f = fetchInstruction(
      this.vm.memory,
      pagingMode(sregs),
      long ? 0n : sregs.cs.base,
      regs.rip,
      max,
    );
    return "bytes" in f ? f.bytes : undefined;
  }

  /** " at RIP 0x...: 0f 01 ..." for failure reports. */
  #whereAmI(): string {
    try {
      const regs = this.getRegisters();
      const bytes = this.#bytesAtRip(X86_MAX_INSN_BYTES);
      return ` at RIP 0x${regs.rip.toString(16)}: ${bytes ? hexBytes(bytes) : "?"}`;
    } catch {
      return "";
    }
  }

  #decodeExit(reason: number): VcpuExit {
    switch (reason) {
      case abi.VMX_EXIT_IO:
      case abi.SVM_VMEXIT_IOIO:
        return this.#ioExit(reason);
      case abi.VMX_EXIT_EPT_VIOLATION:
      case abi.SVM_VMEXIT_NPF:
        return this.#eptExit(reason);
      case abi.VMX_EXIT_HLT:
      case abi.SVM_VMEXIT_HLT:
        return { kind: "halt" };
      case abi.VMX_EXIT_TRIPLE_FAULT:
      case abi.SVM_VMEXIT_SHUTDOWN:
        return { kind: "shutdown", reason: "triple-fault" };
      case abi.VMX_EXIT_INT_WINDOW:
      case abi.SVM_VMEXIT_VINTR:
        return { kind: "interrupt-window" };
      case abi.VMX_EXIT_EXTINT:
      case abi.SVM_VMEXIT_INTR:
      case abi.VMX_EXIT_CPUID:
      case abi.SVM_VMEXIT_CPUID:
      case abi.VMX_EXIT_RDMSR:
      case abi.VMX_EXIT_WRMSR:
      case abi.SVM_VMEXIT_MSR:
      case abi.VMX_EXIT_XSETBV:
      case abi.VM_EXIT_NONE:
        return { kind: "interrupted" };
      case abi.VM_EXIT_TERMINATED:
        return { kind: "shutdown", reason: "system-event" };
      default:
        return {
          kind: "fail",
          raw: reason,
          reason: `unexpected vmm(4) exit ${
            abi.vmmExitName(reason)
          } (${reason})${this.#whereAmI()}`,
        };
    }
  }

  #ioExit(reason: number): VcpuExit {
    const v = this.#exitView;
    const size = v.getUint8(EXIT_VEI_SIZE);
    const dir = v.getUint8(EXIT_VEI_DIR);
    const port = v.getUint16(EXIT_VEI_PORT, true);
    const insnLength = v.getUint8(EXIT_VEI_INSN_LEN);
    if (size !== 1 && size !== 2 && size !== 4) {
      return this.#fail(reason, `IO exit with access size "${size}" at port ${hex(port)}`);
    }
    if (v.getUint8(EXIT_VEI_STRING) !== 0 || v.getUint8(EXIT_VEI_REP) !== 0) {
      return this.#stringIoExit(reason, port, size, dir, insnLength);
    }
    this.#pending = { kind: "io", dir, insnLength };
    // vei_data is little-endian: its low `size` bytes are the access. The device
    // writes IN data straight into it (the merge vmm(4) wants).
    const data = this.#exit.subarray(EXIT_VEI_DATA, EXIT_VEI_DATA + size);
    return dir === abi.VEI_DIR_IN
      ? { kind: "io-in", port, size, count: 1, data }
      : { kind: "io-out", port, size, count: 1, data };
  }

  #stringIoExit(
    reason: number,
    port: number,
    size: number,
    dir: number,
    insnLength: number,
  ): VcpuExit {
    const regs = this.getRegisters();
    const sregs = this.getSpecialRegisters();
    const bytes = this.#bytesAtRip(X86_MAX_INSN_BYTES);
    if (!bytes) return this.#fail(reason, `cannot fetch the string I/O instruction`);
    const insn = decodeStringIo(bytes, cpuModeOf(sregs, regs.rflags));
    if ("error" in insn) return this.#fail(reason, insn.error);
    const expectDir = insn.op === "ins" ? abi.VEI_DIR_IN : abi.VEI_DIR_OUT;
    if (insn.width !== size || dir !== expectDir || (insnLength && insnLength !== insn.length)) {
      return this.#fail(
        reason,
        `string I/O instruction "${hexBytes(bytes.subarray(0, insn.length))}" does not match ` +
          `the exit (size ${size}, direction ${dir}, length ${insnLength})`,
      );
    }
    const remaining = stringIoRemaining(insn, regs);
    if (remaining === 0n) {
      // REP with rCX = 0 does nothing: step over it (the kernel takes RIP from vrs).
      this.#setImageRegisters({ ...regs, rip: (regs.rip + BigInt(insn.length)) & this.#ipMask() });
      this.#pending = { kind: "none" };
      return { kind: "interrupted" };
    }
    const cpl = this.#exitView.getInt32(EXIT_CPL, true);
    const plan = planStringIo(this.vm.memory, insn, regs, sregs, remaining, cpl === 3);
    if ("error" in plan) return this.#fail(reason, plan.error);
    const data = new Uint8Array(plan.count * insn.width);
    if (insn.op === "outs") plan.gpas.forEach((gpa, i) => (data[i] = this.vm.memory.readU8(gpa)));
    this.#pending = { kind: "string-io", insn, count: plan.count, gpas: plan.gpas, data };
    return insn.op === "ins"
      ? { kind: "io-in", port, size, count: plan.count, data }
      : { kind: "io-out", port, size, count: plan.count, data };
  }

  #eptExit(reason: number): VcpuExit {
    const v = this.#exitView;
    const faultType = v.getUint8(EXIT_VEE_FAULT_TYPE);
    switch (faultType) {
      case abi.VEE_FAULT_HANDLED:
        return { kind: "interrupted" };
      case abi.VEE_FAULT_MMIO_ASSIST:
        return this.#mmioExit(reason);
      case abi.VEE_FAULT_PROTECT:
        return this.#fail(reason, `the guest accessed memory it may not (VEE_FAULT_PROTECT)`);
      default:
        return this.#fail(reason, `EPT violation of fault type "${faultType}"`);
    }
  }

  #mmioExit(reason: number): VcpuExit {
    const v = this.#exitView;
    const regs = this.getRegisters();
    const sregs = this.getSpecialRegisters();
    const cpuMode = cpuModeOf(sregs, regs.rflags);
    const info = v.getUint8(EXIT_VEE_INSN_INFO);
    const insnLength = (info & abi.VEE_LEN_VALID) !== 0 ? v.getUint8(EXIT_VEE_INSN_LEN) : undefined;
    let bytes: Uint8Array;
    let fetchFault: string | undefined;
    if ((info & abi.VEE_BYTES_VALID) !== 0) {
      bytes = this.#exit.slice(EXIT_VEE_INSN_BYTES, EXIT_VEE_INSN_BYTES + X86_MAX_INSN_BYTES);
    } else {
      const long = cpuMode === "long64";
      const f = fetchInstruction(
        this.vm.memory,
        pagingMode(sregs),
        long ? 0n : sregs.cs.base,
        regs.rip,
      );
      if (!("bytes" in f)) {
        return this.#fail(reason, `cannot fetch the MMIO instruction: ${f.fault}`);
      }
      bytes = f.bytes;
      fetchFault = f.fault;
    }
    const decoded = decodeMmioInstruction(bytes, { cpuMode });
    if ("error" in decoded) {
      // emulateMmio words the failure (unsupported instruction or fetch fault).
      const r = emulateMmio({
        bytes,
        cpuMode,
        regs,
        gpa: 0,
        mmioRead: () => {},
        mmioWrite: () => {},
        insnLength,
        fetchFault,
      });
      return this.#fail(reason, "error" in r ? r.error : "MMIO instruction did not decode");
    }
    const gpa = this.#mmioAddress(decoded, regs, sregs);
    if (typeof gpa === "string") return this.#fail(reason, gpa);
    const input = { bytes, cpuMode, regs, gpa, insnLength, fetchFault };
    if (decoded.op === "load") {
      // Validate (length cross-check) before the device is touched: a dry run.
      const dry = emulateMmio({ ...input, mmioRead: () => {}, mmioWrite: () => {} });
      if ("error" in dry) return this.#fail(reason, dry.error);
      const data = new Uint8Array(decoded.width);
      this.#pending = {
        kind: "mmio-load",
        data,
        finish: (d) =>
          emulateMmio({ ...input, mmioRead: (_g, out) => out.set(d), mmioWrite: () => {} }),
      };
      return { kind: "mmio-read", gpa, data };
    }
    let written: Uint8Array | undefined;
    const result = emulateMmio({
      ...input,
      mmioRead: () => {
        throw new Error("unreachable: a store read the device");
      },
      mmioWrite: (_g, d) => (written = d.slice()),
    });
    if ("error" in result) return this.#fail(reason, result.error);
    this.#pending = { kind: "mmio-store", result };
    return { kind: "mmio-write", gpa, data: written! };
  }

  /** The guest-physical address of the access, or why it cannot be MMIO. */
  #mmioAddress(decoded: DecodedMmio, regs: Registers, sregs: SpecialRegisters): number | string {
    const linear = effectiveAddress(decoded, regs, sregs);
    const cpl = this.#exitView.getInt32(EXIT_CPL, true);
    const t = translate(this.vm.memory, pagingMode(sregs), linear, {
      write: decoded.op === "store",
      user: cpl === 3,
    });
    if ("fault" in t) {
      return `MMIO access at linear ${hex(linear)} does not translate: ${t.fault}`;
    }
    if (!this.vm.isMmio(t.gpa, decoded.width)) {
      return `MMIO instruction at RIP ${hex(regs.rip)} addresses guest-physical ${hex(t.gpa)}, ` +
        `which is not in an MMIO range`;
    }
    return t.gpa;
  }

  #fail(raw: number, why: string): VcpuExit {
    this.#pending = { kind: "none" };
    return {
      kind: "fail",
      raw,
      reason: `${abi.vmmExitName(raw)}: ${why}${this.#whereAmI()}`,
    };
  }

  protected doCompleteIo(): void {
    const p = this.#pending;
    this.#pending = { kind: "none" };
    switch (p.kind) {
      case "io": {
        // Only RIP (and RAX after an IN) change: patch them in the image.
        const v = this.#exitView;
        const ripAt = EXIT_VRS + VRS_GPRS + abi.VCPU_REGS_RIP * 8;
        const rip = (v.getBigUint64(ripAt, true) + BigInt(p.insnLength)) & this.#ipMask();
        v.setBigUint64(ripAt, rip, true);
        if (this.#regs) this.#regs.rip = rip;
        if (p.dir === abi.VEI_DIR_IN) {
          // The kernel loads RAX with the zero-extended vei_data after an IN.
          const rax = BigInt(v.getUint32(EXIT_VEI_DATA, true));
          v.setBigUint64(EXIT_VRS + VRS_GPRS + abi.VCPU_REGS_RAX * 8, rax, true);
          if (this.#regs) this.#regs.rax = rax;
        }
        return;
      }
      case "string-io": {
        if (p.insn.op === "ins") p.gpas.forEach((gpa, i) => this.vm.memory.writeU8(gpa, p.data[i]));
        const next = advanceStringIo(p.insn, this.getRegisters(), p.count, this.#ipMask());
        if (p.insn.op === "ins") next.rax = BigInt(this.#exitView.getUint32(EXIT_VEI_DATA, true));
        // RSI/RDI/RCX are not reloaded from vrs after an IO exit: write them.
        this.setRegisters(next);
        return;
      }
      case "mmio-load": {
        const r = p.finish(p.data);
        if ("error" in r) throw new Error(`MMIO load completion failed: ${r.error}`);
        this.#setImageRegisters(r.regs);
        return;
      }
      case "mmio-store":
        if ("error" in p.result) throw new Error(`MMIO store completion failed: ${p.result.error}`);
        this.#setImageRegisters(p.result.regs);
        return;
      case "none":
        return;
    }
  }

  readyForInterrupt(): boolean {
    return this.#irqReady && this.#inject === undefined;
  }

  injectInterrupt(vector: number): void {
    if (!this.#irqReady) {
      throw new Error(`Cannot inject vector ${vector}: the last run did not report vrp_irqready`);
    }
    this.#inject = vector & 0xff;
  }

  requestInterruptWindow(wanted: boolean): void {
    this.#window = wanted;
  }

  /**
   * VMM_IOC_INTR: tells the kernel whether an interrupt is pending for this
   * vCPU, as vmd's device threads do while the vCPU runs. Our devices run on
   * the vCPU thread and pass the same bit in `vrp_intr_pending`, so the run
   * loop needs this only from other threads; it is a no-op when unchanged.
   */
  setInterruptPending(pending: boolean): void {
    if (pending === this.#intrLine) return;
    this.#intrLine = pending;
    this.#libc.ioctl(
      this.vm.fd,
      abi.VMM_IOC_INTR,
      abi.vm_intr_params.bytes({
        vip_vm_id: this.vm.id,
        vip_vcpu_id: this.id,
        vip_intr: pending ? 1 : 0,
      }),
    );
  }

  kickToken(): KickToken {
    return { thread: this.#libc.threadId().toString() };
  }

  protected doClose(): void {
    // vCPUs live and die with their VM (VMM_IOC_TERM / closing the VM fd).
  }
}

function pagingMode(sregs: SpecialRegisters): PagingMode {
  return { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer };
}
