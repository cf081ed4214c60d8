/**
 * vmm(4) on KVM: a {@link Libc} whose `open("/dev/vmm")` returns a fake fd
 * answered the way OpenBSD's vmm(4) answers, with Linux KVM underneath. It
 * lets the OpenBSD back-end (`../../accel/openbsd/vmm.ts`) run real guest code on this Linux
 * host. A TESTING AID (`--accel openbsd-on-kvm`), not a hypervisor.
 *
 * What it reproduces (docs/openbsd-vmm-abi.md; vmm.c, vmm_machdep.c):
 * - the structs byte for byte (the same layouts as the back-end's `abi.ts`),
 *   the VMX exit reason codes (or the SVM ones with `flavor: "svm"`, which
 *   also supplies decode-assist instruction bytes on NPF exits);
 * - the duties vmm(4) leaves to userspace. KVM completes a port or MMIO
 *   access (IN data into RAX, RIP past the instruction, string registers)
 *   when the vCPU next enters KVM_RUN; this emulation completes it at once
 *   with `immediate_exit = 1` + KVM_RUN (documented to finish pending I/O
 *   and return EINTR without running the guest), measures the instruction
 *   length from RIP, then puts the general registers (and, for INS, the
 *   guest memory KVM wrote) back as they were, so only userspace's
 *   emulation counts. On the next VMM_IOC_RUN it applies what vmm(4)
 *   applies from the caller's `vm_exit`: after an IO exit RIP from `vrs`
 *   and, after an IN, RAX = zero-extended `vei_data`; after an EPT/NPF exit
 *   every GPR from `vrs`;
 * - MMIO as an EPT violation with VEE_FAULT_MMIO_ASSIST, only in
 *   VM_MEM_MMIO ranges (other unbacked addresses fail the RUN with EINVAL,
 *   vmm(4)'s "unknown memory type"), with the instruction information of
 *   the personality: Intel (`flavor: "vmx"`) VEE_LEN_VALID and the length
 *   (VMCS_INSTRUCTION_LENGTH; `vmxInsnLength: "absent"` leaves it out, as
 *   the SDM does not promise it for EPT violations); AMD (`flavor: "svm"`)
 *   only VEE_BYTES_VALID with `vee_insn_len` = the bytes the CPU fetched,
 *   which stop at the end of RIP's page (the rest of `vee_insn_bytes` 0);
 * - interrupts as the kernel computes them on every RUN: the line is
 *   `vrp_intr_pending` (it overwrites what VMM_IOC_INTR set), `vrp_irqready`
 *   is RFLAGS.IF, and an injection while the guest was in an STI / MOV SS
 *   shadow at the last exit (vmm(4) does not clear it when userspace
 *   steps over the instruction) or with IF clear is dropped;
 * - HLT exits (RIP past the HLT); HLT with interrupts off fails the RUN
 *   with EIO, with RIP at the HLT on Intel and past it on AMD, and
 *   terminates the vCPU (later RUN and RESETCPU: EBUSY); VM_EXIT_NONE when
 *   a signal interrupts KVM_RUN, the kernel mapping guest RAM into the
 *   caller (`vmr_va`) and keeping that mapping after VMM_IOC_TERM;
 * - errors as vmm(4) gives them: EINVAL for bad ranges or vCPU counts,
 *   ENOMEM, ENOENT for unknown VMs/vCPUs, EBUSY for RESETCPU on a running
 *   vCPU, ENOTTY for unknown requests (and, in era B, for everything but
 *   CREATE on /dev/vmm).
 *
 * Not reproduced: SEV, pvclock (the params are stored only), debug
 * registers, XCR0 and PDPTEs (stored and read back, not applied), and
 * VMM_IOC_SHAREMEM (ENOTTY). Exception/NMI injection goes through
 * KVM_SET_VCPU_EVENTS / KVM_NMI.
 *
 * Era B (`era: "B"`) plays one of the back-end's known shapes,
 * `ABI_ERA_B_FD_AT_END` of `../../accel/openbsd/create.ts` (`vcp_fd`
 * appended, `*_vm_id` kept): CREATE returns a VM fd,
 * INFO/TERM are gone and closing the VM fd destroys the VM.
 *
 * @module
 */

import { errnoNumber, IoctlError, SyscallError } from "../../ffi/errno.ts";
import type { IoctlArg, IoctlRequest, Libc, LibcConstants, Mapping } from "../../ffi/libc.ts";
import type { StructLayout } from "../../ffi/struct.ts";
import * as kvm from "../../accel/kvm/abi.ts";
import {
  guestCpuid,
  KvmAccel,
  KvmVm,
  openVcpu,
  specialRegistersFromKvm,
} from "../../accel/kvm/kvm.ts";
import * as abi from "../../accel/openbsd/abi.ts";
import { GPR_FIELDS, type Registers } from "../../accel/types.ts";
import {
  vm_create_params_era_b,
  VMM_IOC_CREATE_ERA_B,
  type VmmAbiEra,
} from "../../accel/openbsd/create.ts";
import {
  cpuModeOf,
  decodeMmioInstruction,
  effectiveAddress,
} from "../../accel/openbsd/x86_decode.ts";

const offsets = new Map<StructLayout, Map<string, number>>();
/** `layout.offsetOf(path)`, computed once per path (the hot path asks for the same few). */
function off(layout: StructLayout<object>, path: string): number {
  let m = offsets.get(layout);
  if (!m) offsets.set(layout, m = new Map());
  let o = m.get(path);
  if (o === undefined) m.set(path, o = layout.offsetOf(path));
  return o;
}

// Offsets used on every exit, looked up once.
const O_EXIT_CPL = abi.vm_exit.offsetOf("cpl");
const O_EXIT_VEE_VEE_FAULT_TYPE = abi.vm_exit.offsetOf("vee.vee_fault_type");
const O_EXIT_VEE_VEE_INSN_BYTES = abi.vm_exit.offsetOf("vee.vee_insn_bytes");
const O_EXIT_VEE_VEE_INSN_INFO = abi.vm_exit.offsetOf("vee.vee_insn_info");
const O_EXIT_VEE_VEE_INSN_LEN = abi.vm_exit.offsetOf("vee.vee_insn_len");
const O_EXIT_VEI_VEI_DATA = abi.vm_exit.offsetOf("vei.vei_data");
const O_EXIT_VEI_VEI_DIR = abi.vm_exit.offsetOf("vei.vei_dir");
const O_EXIT_VEI_VEI_ENCODING = abi.vm_exit.offsetOf("vei.vei_encoding");
const O_EXIT_VEI_VEI_INSN_LEN = abi.vm_exit.offsetOf("vei.vei_insn_len");
const O_EXIT_VEI_VEI_PORT = abi.vm_exit.offsetOf("vei.vei_port");
const O_EXIT_VEI_VEI_REP = abi.vm_exit.offsetOf("vei.vei_rep");
const O_EXIT_VEI_VEI_SIZE = abi.vm_exit.offsetOf("vei.vei_size");
const O_EXIT_VEI_VEI_STRING = abi.vm_exit.offsetOf("vei.vei_string");
const O_EXIT_VRS = abi.vm_exit.offsetOf("vrs");
const O_MSR_DATA = kvm.kvm_msr_entry.offsetOf("data");
const O_MSR_INDEX = kvm.kvm_msr_entry.offsetOf("index");
const O_RUNP_VRP_EXIT = abi.vm_run_params.offsetOf("vrp_exit");
const O_RUNP_VRP_EXIT_REASON = abi.vm_run_params.offsetOf("vrp_exit_reason");
const O_RUNP_VRP_INJECT_VIE_ERRORCODE = abi.vm_run_params.offsetOf("vrp_inject.vie_errorcode");
const O_RUNP_VRP_INJECT_VIE_TYPE = abi.vm_run_params.offsetOf("vrp_inject.vie_type");
const O_RUNP_VRP_INJECT_VIE_VECTOR = abi.vm_run_params.offsetOf("vrp_inject.vie_vector");
const O_RUNP_VRP_INTR_PENDING = abi.vm_run_params.offsetOf("vrp_intr_pending");
const O_RUNP_VRP_IRQREADY = abi.vm_run_params.offsetOf("vrp_irqready");
const O_SEG_VSI_AR = abi.vcpu_segment_info.offsetOf("vsi_ar");
const O_SEG_VSI_BASE = abi.vcpu_segment_info.offsetOf("vsi_base");
const O_SEG_VSI_LIMIT = abi.vcpu_segment_info.offsetOf("vsi_limit");
const O_SEG_VSI_SEL = abi.vcpu_segment_info.offsetOf("vsi_sel");
const O_VRS_VRS_CRS = abi.vcpu_reg_state.offsetOf("vrs_crs");
const O_VRS_VRS_DRS = abi.vcpu_reg_state.offsetOf("vrs_drs");
const O_VRS_VRS_GPRS = abi.vcpu_reg_state.offsetOf("vrs_gprs");
const O_VRS_VRS_MSRS = abi.vcpu_reg_state.offsetOf("vrs_msrs");
const O_VRS_VRS_SREGS = abi.vcpu_reg_state.offsetOf("vrs_sregs");

/**
 * Whether the instruction at `rip` runs in an interrupt shadow: the one
 * before it is STI (FB), MOV SS, r16 (8E D0+r) or, outside 64-bit mode,
 * POP SS (17). KVM cannot say so reliably here (its instruction emulator
 * drops the shadow at the exit), so the bytes decide; a false positive
 * only drops an injection, which the back-end must survive anyway.
 */
function followsShadowOpener(at: (a: bigint) => Uint8Array, rip: bigint, long: boolean): boolean {
  if (rip < 2n) return false;
  const b1 = at(rip - 1n)[0];
  const b2 = at(rip - 2n)[0];
  return b1 === 0xfb || (b2 === 0x8e && (b1 & 0xf8) === 0xd0) || (!long && b1 === 0x17);
}

/** Options of {@link VmmOnKvmLibc}. */
export interface VmmOnKvmOptions {
  /** The ABI era to present (default "A"). */
  era?: VmmAbiEra;
  /** The CPU vendor's personality (exit reasons, instruction info, HLT): Intel VMX (default) or AMD SVM. */
  flavor?: "vmx" | "svm";
  /**
   * Refuse a CREATE while an earlier VM's RAM is still mapped in this
   * "process" (default true). vmm(4) itself accepts it, but the mapping
   * stays until the process exits: a VMM that re-creates its VM in place
   * (an in-process reboot) leaks a guest's RAM each time. Tests of several
   * VMs side by side turn it off.
   */
  oneVmPerProcess?: boolean;
  /** Intel: whether EPT exits carry the instruction length (default "valid"). */
  vmxInsnLength?: "valid" | "absent";
  /** The device path that opens the emulation (default "/dev/vmm"). */
  devicePath?: string;
  /** The KVM device underneath (default "/dev/kvm"). */
  kvmPath?: string;
  /** Host-wide vCPU limit (default VMM_MAX_VCPUS, 512): past it CREATE fails with ENOMEM. */
  maxVcpus?: number;
}

/** fds at and above this are the emulation's; the kernel never hands out such numbers here. */
const FAKE_FD_BASE = 0x3ff00000;

/** vir_vcpu_state values (vmm.h). */
const VCPU_STATE_STOPPED = 0;
const VCPU_STATE_RUNNING = 1;
const VCPU_STATE_TERMINATED = 3;

/** The kvm_run offsets (the KVM back-end's table). */
const RUN = kvm.KVM_RUN_AT;
const SYNC_MASK = kvm.KVM_SYNC_X86_REGS | kvm.KVM_SYNC_X86_SREGS;
const TR_LINEAR = kvm.kvm_translation.offsetOf("linear_address");
const TR_PHYSICAL = kvm.kvm_translation.offsetOf("physical_address");
const TR_VALID = kvm.kvm_translation.offsetOf("valid");

// vm_exit / vcpu_reg_state offsets.
const EXIT = abi.vm_exit;
const EXIT_VRS = O_EXIT_VRS;
const EXIT_CPL = O_EXIT_CPL;
const VRS = abi.vcpu_reg_state;
const SEG = abi.vcpu_segment_info;

/** vrs_gprs index -> kvm_regs field. */
const VMM_GPR_TO_KVM: readonly string[] = (() => {
  const names: string[] = [];
  names[abi.VCPU_REGS_RAX] = "rax";
  names[abi.VCPU_REGS_RCX] = "rcx";
  names[abi.VCPU_REGS_RDX] = "rdx";
  names[abi.VCPU_REGS_RBX] = "rbx";
  names[abi.VCPU_REGS_RSP] = "rsp";
  names[abi.VCPU_REGS_RBP] = "rbp";
  names[abi.VCPU_REGS_RSI] = "rsi";
  names[abi.VCPU_REGS_RDI] = "rdi";
  for (let i = 8; i <= 15; i++) names[abi.VCPU_REGS_R8 + i - 8] = `r${i}`;
  names[abi.VCPU_REGS_RIP] = "rip";
  names[abi.VCPU_REGS_RFLAGS] = "rflags";
  return names;
})();
/** kvm_regs field offsets, looked up once. */
const KVM_REG_OFFSET: Readonly<Record<string, number>> = Object.fromEntries(
  VMM_GPR_TO_KVM.map((n) => [n, off(kvm.kvm_regs, n)]),
);

/** vrs_sregs index -> kvm_sregs segment field. */
const VMM_SREG_TO_KVM: readonly string[] = (() => {
  const names: string[] = [];
  names[abi.VCPU_REGS_ES] = "es";
  names[abi.VCPU_REGS_CS] = "cs";
  names[abi.VCPU_REGS_SS] = "ss";
  names[abi.VCPU_REGS_DS] = "ds";
  names[abi.VCPU_REGS_FS] = "fs";
  names[abi.VCPU_REGS_GS] = "gs";
  names[abi.VCPU_REGS_LDTR] = "ldt";
  names[abi.VCPU_REGS_TR] = "tr";
  return names;
})();

/** MSRs of vrs_msrs besides EFER (which lives in kvm_sregs). */
const MSR_INDEX: readonly [number, number][] = [
  [abi.VCPU_REGS_STAR, 0xc0000081],
  [abi.VCPU_REGS_LSTAR, 0xc0000082],
  [abi.VCPU_REGS_CSTAR, 0xc0000083],
  [abi.VCPU_REGS_SFMASK, 0xc0000084],
  [abi.VCPU_REGS_KGSBASE, 0xc0000102],
  [abi.VCPU_REGS_MISC_ENABLE, 0x1a0],
];

const RFLAGS_IF = 1n << 9n;
const RFLAGS_DF = 1n << 10n;

/** Exit reasons per flavor. */
const REASONS = {
  vmx: {
    io: abi.VMX_EXIT_IO,
    ept: abi.VMX_EXIT_EPT_VIOLATION,
    hlt: abi.VMX_EXIT_HLT,
    window: abi.VMX_EXIT_INT_WINDOW,
    tripleFault: abi.VMX_EXIT_TRIPLE_FAULT,
  },
  svm: {
    io: abi.SVM_VMEXIT_IOIO,
    ept: abi.SVM_VMEXIT_NPF,
    hlt: abi.SVM_VMEXIT_HLT,
    window: abi.SVM_VMEXIT_VINTR,
    tripleFault: abi.SVM_VMEXIT_SHUTDOWN,
  },
} as const;

const KSEG = kvm.kvm_segment;
const KSEG_FIELDS = [
  "base",
  "limit",
  "selector",
  "type",
  "present",
  "dpl",
  "db",
  "s",
  "l",
  "g",
  "avl",
  "unusable",
] as const;

const KSREG_SEGMENTS = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"].map((name) => {
  const at = kvm.kvm_sregs.offsetOf(name);
  return { name, at, fields: KSEG_FIELDS.map((f) => [f, at + KSEG.offsetOf(f)] as const) };
});
const KSREG_TABLES = ["gdt", "idt"].map((name) => [name, kvm.kvm_sregs.offsetOf(name)] as const);
const KSREG_WORDS = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"].map(
  (name) => [name, kvm.kvm_sregs.offsetOf(name)] as const,
);

/** kvm_sregs decoded by hand (the generic decoder is too slow for every exit). */
function decodeKvmSregs(v: DataView): KvmSregs {
  const out: KvmSregs = {};
  for (const { name, fields } of KSREG_SEGMENTS) {
    const seg: KvmSregs = {};
    for (const [f, o] of fields) {
      seg[f] = f === "base"
        ? v.getBigUint64(o, true)
        : f === "limit"
        ? v.getUint32(o, true)
        : f === "selector"
        ? v.getUint16(o, true)
        : v.getUint8(o);
    }
    out[name] = seg;
  }
  for (const [name, at] of KSREG_TABLES) {
    out[name] = { base: v.getBigUint64(at, true), limit: v.getUint16(at + 8, true) };
  }
  for (const [name, at] of KSREG_WORDS) out[name] = v.getBigUint64(at, true);
  return out;
}

/** A decoded kvm_sregs (struct.ts decodes to plain objects). */
// deno-lint-ignore no-explicit-any
type KvmSregs = Record<string, any>;

/** The SyscallError behind `e` (itself or its cause), if any. */
function syscallErrorOf(e: unknown): SyscallError | undefined {
  if (e instanceof SyscallError) return e;
  if (e instanceof Error && e.cause instanceof SyscallError) return e.cause;
  return undefined;
}

/** An errno answer from the emulated kernel. */
class VmmErrno extends Error {
  constructor(readonly code: string, detail = "") {
    super(`${code}${detail ? `: ${detail}` : ""}`);
  }
}

interface EmuRange {
  gpa: number;
  size: number;
  type: number;
  va: bigint;
  mapping?: Mapping;
}

/** What the last exit left for the next RUN to apply. */
type LastExit = "none" | "io-out" | "io-in" | "ept";

interface EmuVcpu {
  id: number;
  fd: number;
  run: Mapping;
  view: DataView;
  state: number;
  last: LastExit;
  /** The kernel's `vc_intr`: VMM_IOC_INTR's line, overwritten by every RUN's vrp_intr_pending. */
  intr: boolean;
  /** The guest was in an STI / MOV SS shadow when it last exited. */
  shadowAtExit: boolean;
  drs: bigint[];
  xcr0: bigint;
  pdptes: bigint[];
  pvclockGpa: bigint;
  pvclockVersion: number;
  /** KVM's registers as we last read or set them (until the next KVM_RUN). */
  kregs?: Uint8Array;
  ksregs?: Uint8Array;
  /** `ksregs` decoded. */
  dsregs?: KvmSregs;
  /** The last kvm_sregs decoded, and its bytes. */
  lastSregs?: { raw: Uint8Array; decoded: KvmSregs };
  /**
   * The GPRs vmm(4) would show after an IO/MMIO exit (before the
   * instruction) when they differ from KVM's (which finished it); applied,
   * with userspace's results, only if still different at the next entry.
   */
  visible?: Uint8Array;
  /**
   * A plain IN KVM still has pending (not completed at the exit): at the
   * next entry KVM completes it with userspace's data, or we complete it
   * first when userspace asked for something else (see `#enter`).
   */
  deferredIn?: { rip: bigint; length: number; size: number; dataOffset: number; rax: bigint };
}

interface EmuVm {
  id: number;
  /** The KVM VM underneath (until teardown), and its fd. */
  kvm?: KvmVm;
  fd: number;
  name: string;
  ranges: EmuRange[];
  vcpus: EmuVcpu[];
  /** Era B: the VM's own fake fd. */
  vmFd?: number;
  creatorPid: number;
}

/** The vmm(4) emulation; see the module doc. */
export class VmmOnKvmLibc implements Libc {
  readonly real: Libc;
  readonly os;
  readonly consts: LibcConstants;
  readonly era: VmmAbiEra;
  readonly flavor: "vmx" | "svm";
  readonly vmxInsnLength: "valid" | "absent";
  readonly oneVmPerProcess: boolean;
  /** VMs whose RAM is still mapped into this process (vmm(4) never unmaps it). */
  #mappedVms = 0;
  /** Interrupt injections vmm(4) would have dropped (a shadow, or IF clear). */
  droppedInjections = 0;
  readonly devicePath: string;
  readonly kvmPath: string;
  readonly maxVcpus: number;
  #nextFd = FAKE_FD_BASE;
  /** Open /dev/vmm fds. */
  readonly #deviceFds = new Set<number>();
  /** Era B VM fds. */
  readonly #vmFds = new Map<number, EmuVm>();
  readonly #vms = new Map<number, EmuVm>();
  #vmIdx = 0;
  #vcpuCount = 0;
  /** The KVM back-end underneath: /dev/kvm, VM and vCPU set-up are its own. */
  #kvm?: KvmAccel;
  #cpuid?: Uint8Array;
  /** KVM fills kvm_run.s.regs on every exit (KVM_CAP_SYNC_REGS): no GET_REGS/GET_SREGS. */
  #syncRegs = false;
  /** Memory of terminated VMs: kept mapped (as vmm(4) does) until {@link releaseMemory}. */
  readonly #retired: Mapping[] = [];
  /** The KVM detail behind the last EIO from VMM_IOC_RUN (for diagnostics). */
  lastError = "";

  constructor(real: Libc, options: VmmOnKvmOptions = {}) {
    this.real = real;
    this.os = real.os;
    this.consts = real.consts;
    this.era = options.era ?? "A";
    this.flavor = options.flavor ?? "vmx";
    this.vmxInsnLength = options.vmxInsnLength ?? "valid";
    this.oneVmPerProcess = options.oneVmPerProcess ?? true;
    this.devicePath = options.devicePath ?? "/dev/vmm";
    this.kvmPath = options.kvmPath ?? "/dev/kvm";
    this.maxVcpus = options.maxVcpus ?? abi.VMM_MAX_VCPUS;
  }

  // ---- Libc: the fake device ----

  open(path: string, flags: number, mode?: number): number {
    if (path !== this.devicePath) return this.real.open(path, flags, mode);
    if (!this.#kvm) {
      try {
        this.#kvm = new KvmAccel(this.real, this.kvmPath);
      } catch (e) {
        const sys = syscallErrorOf(e);
        if (sys) {
          // No KVM: answer as a host without vmm(4) would (ENXIO), or pass EACCES on.
          const code = sys.code === "EACCES" || sys.code === "EPERM" ? sys.code : "ENXIO";
          throw new SyscallError(`open "${path}"`, this.#errno(code), this.os);
        }
        throw e;
      }
    }
    const fd = this.#nextFd++;
    this.#deviceFds.add(fd);
    return fd;
  }

  close(fd: number): void {
    if (this.#deviceFds.delete(fd)) return;
    const vm = this.#vmFds.get(fd);
    if (vm) {
      this.#vmFds.delete(fd);
      this.#destroy(vm);
      return;
    }
    if (fd >= FAKE_FD_BASE) throw new SyscallError("close", this.#errno("EBADF"), this.os);
    this.real.close(fd);
  }

  ioctl(fd: number, request: IoctlRequest, arg?: IoctlArg): number {
    if (!this.#isFake(fd)) return this.real.ioctl(fd, request, arg);
    const r = this.#ioctl(fd, request, arg ?? null);
    if (typeof r === "number") return r;
    throw new IoctlError(request.name, request.value, this.#errno(r.code), this.os);
  }

  ioctlTry(fd: number, request: IoctlRequest, arg: IoctlArg, accept: readonly string[]): number {
    if (!this.#isFake(fd)) return this.real.ioctlTry(fd, request, arg, accept);
    const r = this.#ioctl(fd, request, arg);
    if (typeof r === "number") return r;
    const errno = this.#errno(r.code);
    if (accept.includes(r.code)) return -errno;
    throw new IoctlError(request.name, request.value, errno, this.os);
  }

  // ---- Libc: everything else is the real one ----

  mmap(length: number, prot: number, flags: number, fd: number, offset: number): Mapping {
    return this.real.mmap(length, prot, flags, fd, offset);
  }
  munmap(mapping: Mapping): void {
    this.real.munmap(mapping);
  }
  memoryAt(address: bigint, length: number): Uint8Array {
    return this.real.memoryAt(address, length);
  }
  addressOf(buffer: Uint8Array): bigint {
    return this.real.addressOf(buffer);
  }
  read(fd: number, buffer: Uint8Array): number {
    return this.real.read(fd, buffer);
  }
  write(fd: number, buffer: Uint8Array): number {
    return this.real.write(fd, buffer);
  }
  pread(fd: number, buffer: Uint8Array, offset: number): number {
    return this.real.pread(fd, buffer, offset);
  }
  pwrite(fd: number, buffer: Uint8Array, offset: number): number {
    return this.real.pwrite(fd, buffer, offset);
  }
  fsync(fd: number): void {
    this.real.fsync(fd);
  }
  fdatasync(fd: number): void {
    this.real.fdatasync(fd);
  }
  getpid(): number {
    return this.real.getpid();
  }
  threadId(): bigint {
    return this.real.threadId();
  }
  signalThread(threadId: bigint, signal: number): void {
    this.real.signalThread(threadId, signal);
  }

  /** Unmaps the RAM of terminated VMs (their `vmr_va` views must no longer be used). */
  releaseMemory(): void {
    for (const m of this.#retired.splice(0)) this.real.munmap(m);
    this.#mappedVms = this.#vms.size;
  }

  /** Terminates every VM and closes /dev/kvm (tests). */
  shutdown(): void {
    for (const vm of [...this.#vms.values()]) this.#destroy(vm);
    this.releaseMemory();
    this.#kvm?.close();
    this.#kvm = undefined;
    this.#cpuid = undefined;
  }

  // ---- dispatch ----

  #errno(code: string): number {
    return errnoNumber(code, this.os);
  }

  #isFake(fd: number): boolean {
    return this.#deviceFds.has(fd) || this.#vmFds.has(fd);
  }

  #ioctl(fd: number, request: IoctlRequest, arg: IoctlArg): number | VmmErrno {
    try {
      return this.#dispatch(fd, request, arg);
    } catch (e) {
      if (e instanceof VmmErrno) return e;
      throw e;
    }
  }

  #dispatch(fd: number, request: IoctlRequest, arg: IoctlArg): number {
    const value = request.value >>> 0;
    const onDevice = this.#deviceFds.has(fd);
    const vmOfFd = this.#vmFds.get(fd);
    if (this.era === "B" && onDevice) {
      if (value !== VMM_IOC_CREATE_ERA_B.value) throw new VmmErrno("ENOTTY");
      return this.#create(buffer(arg, vm_create_params_era_b.size));
    }
    if (this.era === "A" && value === abi.VMM_IOC_CREATE.value) {
      return this.#create(buffer(arg, abi.vm_create_params.size));
    }
    const find = (vmId: number): EmuVm => {
      if (vmOfFd) return vmOfFd;
      const vm = this.#vms.get(vmId);
      if (!vm) throw new VmmErrno("ENOENT", `no VM ${vmId}`);
      return vm;
    };
    switch (value) {
      case abi.VMM_IOC_RUN.value: {
        const b = buffer(arg, abi.vm_run_params.size);
        const v = view(b);
        const vm = find(v.getUint32(off(abi.vm_run_params, "vrp_vm_id"), true));
        return this.#run(
          vm,
          vcpuOf(vm, v.getUint32(off(abi.vm_run_params, "vrp_vcpu_id"), true)),
          b,
        );
      }
      case abi.VMM_IOC_INFO.value:
        if (vmOfFd) throw new VmmErrno("ENOTTY");
        return this.#info(buffer(arg, abi.vm_info_params.size));
      case abi.VMM_IOC_TERM.value: {
        if (vmOfFd) throw new VmmErrno("ENOTTY");
        const b = buffer(arg, abi.vm_terminate_params.size);
        this.#destroy(find(view(b).getUint32(0, true)));
        return 0;
      }
      case abi.VMM_IOC_RESETCPU.value: {
        const b = buffer(arg, abi.vm_resetcpu_params.size);
        const v = view(b);
        const vcpu = vcpuOf(find(v.getUint32(0, true)), v.getUint32(4, true));
        if (vcpu.state !== VCPU_STATE_STOPPED) throw new VmmErrno("EBUSY");
        const at = off(abi.vm_resetcpu_params, "vrp_init_state");
        this.#writeRegs(vcpu, abi.VM_RWREGS_ALL, b.subarray(at, at + VRS.size));
        vcpu.last = "none";
        return 0;
      }
      case abi.VMM_IOC_INTR.value: {
        const b = buffer(arg, abi.vm_intr_params.size);
        const v = view(b);
        const vcpu = vcpuOf(find(v.getUint32(0, true)), v.getUint32(4, true));
        vcpu.intr = v.getUint16(off(abi.vm_intr_params, "vip_intr"), true) !== 0;
        return 0;
      }
      case abi.VMM_IOC_READREGS.value:
      case abi.VMM_IOC_WRITEREGS.value: {
        const b = buffer(arg, abi.vm_rwregs_params.size);
        const v = view(b);
        const vcpu = vcpuOf(find(v.getUint32(0, true)), v.getUint32(4, true));
        const mask = Number(v.getBigUint64(off(abi.vm_rwregs_params, "vrwp_mask"), true));
        const at = off(abi.vm_rwregs_params, "vrwp_regs");
        const regs = b.subarray(at, at + VRS.size);
        if (value === abi.VMM_IOC_READREGS.value) this.#readRegs(vcpu, mask, regs);
        else this.#writeRegs(vcpu, mask, regs);
        return 0;
      }
      case abi.VMM_IOC_READVMPARAMS.value:
      case abi.VMM_IOC_WRITEVMPARAMS.value: {
        const L = abi.vm_rwvmparams_params;
        const b = buffer(arg, L.size);
        const v = view(b);
        const vcpu = vcpuOf(find(v.getUint32(0, true)), v.getUint32(4, true));
        const mask = v.getUint32(off(L, "vpp_mask"), true);
        const gpaAt = off(L, "vpp_pvclock_system_gpa");
        const verAt = off(L, "vpp_pvclock_version");
        if (value === abi.VMM_IOC_READVMPARAMS.value) {
          if (mask & abi.VM_RWVMPARAMS_PVCLOCK_SYSTEM_GPA) {
            v.setBigUint64(gpaAt, vcpu.pvclockGpa, true);
          }
          if (mask & abi.VM_RWVMPARAMS_PVCLOCK_VERSION) {
            v.setUint32(verAt, vcpu.pvclockVersion, true);
          }
        } else {
          if (mask & abi.VM_RWVMPARAMS_PVCLOCK_SYSTEM_GPA) {
            vcpu.pvclockGpa = v.getBigUint64(gpaAt, true);
          }
          if (mask & abi.VM_RWVMPARAMS_PVCLOCK_VERSION) {
            vcpu.pvclockVersion = v.getUint32(verAt, true);
          }
        }
        return 0;
      }
      default:
        throw new VmmErrno("ENOTTY");
    }
  }

  // ---- VMM_IOC_CREATE / INFO / TERM ----

  #kvmIoctl(fd: number, request: IoctlRequest, arg?: IoctlArg): number {
    return this.real.ioctl(fd, request, arg);
  }

  /** The CPUID vmm(4) shows: no LAPIC (era A), a hypervisor bit, its own signature. */
  #guestCpuid(): Uint8Array {
    return this.#cpuid ??= guestCpuid(this.#kvm!.supportedCpuid(), {
      hideApic: true,
      signature: abi.VMM_HV_SIGNATURE,
    });
  }

  #create(params: Uint8Array): number {
    const layout = this.era === "A" ? abi.vm_create_params : vm_create_params_era_b;
    const v = view(params);
    const nranges = Number(v.getBigUint64(off(layout, "vcp_nmemranges"), true));
    const ncpus = Number(v.getBigUint64(off(layout, "vcp_ncpus"), true));
    if (nranges === 0 || nranges > abi.VMM_MAX_MEM_RANGES) throw new VmmErrno("EINVAL", "ranges");
    const rangesAt = off(layout, "vcp_memranges");
    const R = abi.vm_mem_range;
    const ranges: EmuRange[] = [];
    let prevEnd = -1;
    for (let i = 0; i < nranges; i++) {
      const at = rangesAt + i * R.size;
      const gpa = v.getBigUint64(at + off(R, "vmr_gpa"), true);
      const va = v.getBigUint64(at + off(R, "vmr_va"), true);
      const size = v.getBigUint64(at + off(R, "vmr_size"), true);
      const type = v.getInt32(at + off(R, "vmr_type"), true);
      const max = BigInt(abi.VMM_MAX_VM_MEM_SIZE);
      if ((gpa & 0xfffn) || (va & 0xfffn) || (size & 0xfffn) || size === 0n) {
        throw new VmmErrno("EINVAL", `range ${i} not page aligned`);
      }
      if (gpa >= max || size > max - gpa) throw new VmmErrno("EINVAL", `range ${i} too high`);
      if (i > 0 && BigInt(prevEnd) > gpa) throw new VmmErrno("EINVAL", `range ${i} overlaps`);
      prevEnd = Number(gpa + size);
      ranges.push({ gpa: Number(gpa), size: Number(size), type, va: 0n });
    }
    const maxCpus = this.era === "A" ? 1 : abi.VMM_MAX_VCPUS_PER_VM;
    if (ncpus < 1 || ncpus > maxCpus) throw new VmmErrno("EINVAL", `vcp_ncpus ${ncpus}`);
    if (this.oneVmPerProcess && this.#mappedVms > 0) {
      this.lastError = `a second VMM_IOC_CREATE in one process`;
      throw new VmmErrno(
        "ENOMEM",
        `a second VMM_IOC_CREATE in this process: the first VM's RAM stays mapped here (vmm(4) ` +
          `cannot unmap it); a reboot must start a fresh VM process, as vmd does`,
      );
    }
    if (this.#vcpuCount + ncpus > this.maxVcpus) throw new VmmErrno("ENOMEM", "vCPUs");

    const nameAt = off(layout, "vcp_name");
    const nameBytes = params.subarray(nameAt, nameAt + abi.VMM_MAX_NAME_LEN - 1);
    const nul = nameBytes.indexOf(0);
    const name = new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes);

    const vm: EmuVm = {
      id: 0,
      fd: -1,
      name,
      ranges,
      vcpus: [],
      creatorPid: this.real.getpid(),
    };
    try {
      const kvmAccel = this.#kvm!;
      // KVM backs every range but the MMIO ones, one memory slot each, in order.
      const backed = ranges.filter((r) => r.type !== abi.VM_MEM_MMIO);
      vm.kvm = new KvmVm(kvmAccel, { name, ram: backed, vcpus: ncpus, irqchip: "user" });
      vm.fd = vm.kvm.fd;
      backed.forEach((r, i) => {
        const region = vm.kvm!.memory.regions[i];
        r.mapping = { address: region.hostAddress!, bytes: region.bytes };
        r.va = r.mapping.address;
      });
      const sync = kvmAccel.hasCapability(kvm.KVM_CAP_SYNC_REGS);
      this.#syncRegs = (sync & SYNC_MASK) === SYNC_MASK;
      for (let i = 0; i < ncpus; i++) vm.vcpus.push(this.#createVcpu(vm, i));
    } catch (e) {
      this.#teardown(vm);
      this.releaseMemory();
      if (e instanceof VmmErrno) throw e;
      if (syscallErrorOf(e)?.code === "ENOMEM") throw new VmmErrno("ENOMEM");
      throw e;
    }
    vm.id = ++this.#vmIdx;
    this.#vms.set(vm.id, vm);
    this.#vcpuCount += ncpus;
    this.#mappedVms++;
    // Out: the id and where each backed range is mapped in the caller.
    v.setUint32(off(layout, "vcp_id"), vm.id, true);
    ranges.forEach((r, i) => {
      if (r.type !== abi.VM_MEM_MMIO) {
        v.setBigUint64(rangesAt + i * R.size + off(R, "vmr_va"), r.va, true);
      }
    });
    if (this.era === "B") {
      vm.vmFd = this.#nextFd++;
      this.#vmFds.set(vm.vmFd, vm);
      v.setInt32(off(layout, "vcp_fd"), vm.vmFd, true);
    }
    return 0;
  }

  #createVcpu(vm: EmuVm, id: number): EmuVcpu {
    const { fd, run } = openVcpu(vm.kvm!, id, this.#guestCpuid());
    return {
      id,
      fd,
      run,
      view: new DataView(run.bytes.buffer, run.bytes.byteOffset, run.bytes.length),
      state: VCPU_STATE_STOPPED,
      last: "none",
      intr: false,
      shadowAtExit: false,
      drs: [0n, 0n, 0n, 0n, 0xffff0ff0n, 0x400n],
      xcr0: 1n,
      pdptes: [0n, 0n, 0n, 0n],
      pvclockGpa: 0n,
      pvclockVersion: 0,
    };
  }

  #teardown(vm: EmuVm): void {
    for (const vcpu of vm.vcpus) {
      try {
        this.real.munmap(vcpu.run);
      } finally {
        this.real.close(vcpu.fd);
      }
    }
    vm.vcpus = [];
    // Guest RAM stays mapped: it is retired below.
    vm.kvm?.close(true);
    vm.kvm = undefined;
    vm.fd = -1;
    // vmm(4) maps guest RAM into the process immutably: it stays until we are told otherwise.
    for (const r of vm.ranges) if (r.mapping) this.#retired.push(r.mapping);
  }

  #destroy(vm: EmuVm): void {
    if (!this.#vms.delete(vm.id)) throw new VmmErrno("ENOENT");
    this.#vcpuCount -= vm.vcpus.length;
    if (vm.vmFd !== undefined) this.#vmFds.delete(vm.vmFd);
    this.#teardown(vm);
  }

  #info(params: Uint8Array): number {
    const L = abi.vm_info_params;
    const v = view(params);
    const R = abi.vm_info_result;
    const vms = [...this.#vms.values()];
    const need = vms.length * R.size;
    if (v.getBigUint64(off(L, "vip_size"), true) < BigInt(need)) {
      v.setBigUint64(off(L, "vip_info_ct"), 0n, true);
      v.setBigUint64(off(L, "vip_size"), BigInt(need), true);
      return 0;
    }
    v.setBigUint64(off(L, "vip_info_ct"), BigInt(vms.length), true);
    if (need === 0) return 0;
    const ptr = v.getBigUint64(off(L, "vip_info"), true);
    if (ptr === 0n) throw new VmmErrno("EFAULT");
    const out = this.real.memoryAt(ptr, need);
    vms.forEach((vm, i) => {
      const memory = vm.ranges.filter((r) => r.type !== abi.VM_MEM_MMIO)
        .reduce((n, r) => n + r.size, 0);
      const states = new Array(abi.VMM_MAX_VCPUS_PER_VM).fill(0);
      vm.vcpus.forEach((c) => (states[c.id] = c.state));
      const entry = R.bytes({
        vir_memory_size: BigInt(memory),
        vir_used_size: BigInt(memory),
        vir_ncpus: BigInt(vm.vcpus.length),
        vir_vcpu_state: states,
        vir_creator_pid: vm.creatorPid,
        vir_id: vm.id,
        vir_name: new TextEncoder().encode(vm.name),
      });
      out.set(entry, i * R.size);
    });
    return 0;
  }

  // ---- registers ----

  /** kvm_regs (a copy; cached between KVM_RUNs, since only we change them then). */
  #getKvmRegs(vcpu: EmuVcpu): Uint8Array {
    if (!vcpu.kregs) {
      vcpu.kregs = new Uint8Array(kvm.kvm_regs.size);
      this.#kvmIoctl(vcpu.fd, kvm.KVM_GET_REGS, vcpu.kregs);
    }
    return vcpu.kregs.slice();
  }

  #setKvmRegs(vcpu: EmuVcpu, regs: Uint8Array): void {
    this.#kvmIoctl(vcpu.fd, kvm.KVM_SET_REGS, regs);
    vcpu.kregs = regs.slice();
    vcpu.visible = undefined;
  }

  /** The GPRs as vmm(4) shows them (see {@link EmuVcpu.visible}). */
  #visibleRegs(vcpu: EmuVcpu): Uint8Array {
    return vcpu.visible ? vcpu.visible.slice() : this.#getKvmRegs(vcpu);
  }

  /** Makes `target` KVM's GPRs, skipping KVM_SET_REGS when they already are. */
  #applyRegs(vcpu: EmuVcpu, target: Uint8Array): void {
    const actual = this.#getKvmRegs(vcpu);
    vcpu.visible = undefined;
    if (!this.#sameRegs(view(target), view(actual))) this.#setKvmRegs(vcpu, target);
  }

  /** After an exit: what vmm(4) shows is `pre`; KVM may have moved on. */
  #show(vcpu: EmuVcpu, pre: Uint8Array): void {
    const actual = this.#getKvmRegs(vcpu);
    vcpu.visible = this.#sameRegs(view(pre), view(actual)) ? undefined : pre.slice();
  }

  #getKvmSregs(vcpu: EmuVcpu): Uint8Array {
    if (!vcpu.ksregs) {
      vcpu.ksregs = new Uint8Array(kvm.kvm_sregs.size);
      this.#kvmIoctl(vcpu.fd, kvm.KVM_GET_SREGS, vcpu.ksregs);
    }
    return vcpu.ksregs.slice();
  }

  /** kvm_sregs decoded (cached like the raw bytes; do not modify). */
  #sregs(vcpu: EmuVcpu): KvmSregs {
    if (vcpu.dsregs) return vcpu.dsregs;
    const raw = vcpu.ksregs ?? this.#getKvmSregs(vcpu);
    // Segment and control registers rarely change between exits: reuse the last decode.
    const last = vcpu.lastSregs;
    if (last && last.raw.length === raw.length && last.raw.every((b, i) => b === raw[i])) {
      vcpu.dsregs = last.decoded;
    } else {
      vcpu.dsregs = decodeKvmSregs(view(raw));
      vcpu.lastSregs = { raw: raw.slice(), decoded: vcpu.dsregs };
    }
    return vcpu.dsregs;
  }

  #setKvmSregs(vcpu: EmuVcpu, sregs: Uint8Array): void {
    this.#kvmIoctl(vcpu.fd, kvm.KVM_SET_SREGS, sregs);
    vcpu.ksregs = sregs.slice();
    vcpu.dsregs = undefined;
  }

  /**
   * KVM_RUN (the register caches are stale afterwards; `keepSregs` when it
   * only completes an access, which changes no segment or control register).
   */
  #kvmRun(vcpu: EmuVcpu, keepSregs = false): number {
    vcpu.kregs = undefined;
    if (!keepSregs) vcpu.ksregs = vcpu.dsregs = undefined;
    const rb = vcpu.run.bytes;
    if (this.#syncRegs) vcpu.view.setBigUint64(RUN.validRegs, BigInt(SYNC_MASK), true);
    const r = this.real.ioctlTry(vcpu.fd, kvm.KVM_RUN, 0, ["EINTR", "EAGAIN"]);
    if (this.#syncRegs) {
      // KVM stored the registers in kvm_run on the way out, whatever the result.
      vcpu.kregs = rb.slice(RUN.syncRegs, RUN.syncRegs + kvm.kvm_regs.size);
      if (!keepSregs) vcpu.ksregs = rb.slice(RUN.syncSregs, RUN.syncSregs + kvm.kvm_sregs.size);
    }
    return r;
  }

  /** Fills the `mask` groups of the vcpu_reg_state `out` from KVM. */
  #readRegs(vcpu: EmuVcpu, mask: number, out: Uint8Array): void {
    const o = view(out);
    if (mask & abi.VM_RWREGS_GPRS) {
      const r = view(this.#visibleRegs(vcpu));
      VMM_GPR_TO_KVM.forEach((name, i) => {
        o.setBigUint64(
          O_VRS_VRS_GPRS + i * 8,
          r.getBigUint64(KVM_REG_OFFSET[name], true),
          true,
        );
      });
    }
    if (mask & (abi.VM_RWREGS_SREGS | abi.VM_RWREGS_CRS | abi.VM_RWREGS_MSRS)) {
      const s = this.#sregs(vcpu);
      if (mask & abi.VM_RWREGS_SREGS) {
        VMM_SREG_TO_KVM.forEach((name, i) => {
          writeVmmSegment(o, O_VRS_VRS_SREGS + i * SEG.size, s[name]);
        });
        for (const [field, t] of [["vrs_gdtr", s.gdt], ["vrs_idtr", s.idt]] as const) {
          const at = off(VRS, field);
          o.setUint16(at + O_SEG_VSI_SEL, 0, true);
          o.setUint32(at + O_SEG_VSI_LIMIT, t.limit, true);
          o.setUint32(at + O_SEG_VSI_AR, 0, true);
          o.setBigUint64(at + O_SEG_VSI_BASE, t.base, true);
        }
      }
      if (mask & abi.VM_RWREGS_CRS) {
        const crs: [number, bigint][] = [
          [abi.VCPU_REGS_CR0, s.cr0],
          [abi.VCPU_REGS_CR2, s.cr2],
          [abi.VCPU_REGS_CR3, s.cr3],
          [abi.VCPU_REGS_CR4, s.cr4],
          [abi.VCPU_REGS_CR8, s.cr8],
          [abi.VCPU_REGS_XCR0, vcpu.xcr0],
          ...vcpu.pdptes.map((p, i): [number, bigint] => [abi.VCPU_REGS_PDPTE0 + i, p]),
        ];
        for (const [i, value] of crs) o.setBigUint64(O_VRS_VRS_CRS + i * 8, value, true);
      }
      if (mask & abi.VM_RWREGS_MSRS) {
        const msrsAt = O_VRS_VRS_MSRS;
        o.setBigUint64(msrsAt + abi.VCPU_REGS_EFER * 8, s.efer, true);
        const values = this.#getMsrs(vcpu);
        MSR_INDEX.forEach(([i], k) => o.setBigUint64(msrsAt + i * 8, values[k], true));
      }
    }
    if (mask & abi.VM_RWREGS_DRS) {
      vcpu.drs.forEach((d, i) => o.setBigUint64(O_VRS_VRS_DRS + i * 8, d, true));
    }
  }

  /** Applies the `mask` groups of the vcpu_reg_state `regs` to KVM. */
  #writeRegs(vcpu: EmuVcpu, mask: number, regs: Uint8Array): void {
    this.#settleDeferred(vcpu);
    const s = view(regs);
    if (mask & abi.VM_RWREGS_GPRS) {
      const b = new Uint8Array(kvm.kvm_regs.size);
      const r = view(b);
      VMM_GPR_TO_KVM.forEach((name, i) => {
        r.setBigUint64(
          KVM_REG_OFFSET[name],
          s.getBigUint64(O_VRS_VRS_GPRS + i * 8, true),
          true,
        );
      });
      this.#setKvmRegs(vcpu, b);
    }
    if (mask & (abi.VM_RWREGS_SREGS | abi.VM_RWREGS_CRS | abi.VM_RWREGS_MSRS)) {
      const b = this.#getKvmSregs(vcpu);
      const value: Record<string, unknown> = {};
      if (mask & abi.VM_RWREGS_SREGS) {
        VMM_SREG_TO_KVM.forEach((name, i) => {
          value[name] = readVmmSegment(s, O_VRS_VRS_SREGS + i * SEG.size);
        });
        for (const [field, name] of [["vrs_gdtr", "gdt"], ["vrs_idtr", "idt"]] as const) {
          const at = off(VRS, field);
          value[name] = {
            base: s.getBigUint64(at + O_SEG_VSI_BASE, true),
            limit: s.getUint32(at + O_SEG_VSI_LIMIT, true) & 0xffff,
          };
        }
      }
      if (mask & abi.VM_RWREGS_CRS) {
        const cr = (i: number) => s.getBigUint64(O_VRS_VRS_CRS + i * 8, true);
        value.cr0 = cr(abi.VCPU_REGS_CR0);
        value.cr2 = cr(abi.VCPU_REGS_CR2);
        value.cr3 = cr(abi.VCPU_REGS_CR3);
        value.cr4 = cr(abi.VCPU_REGS_CR4);
        value.cr8 = cr(abi.VCPU_REGS_CR8);
        vcpu.xcr0 = cr(abi.VCPU_REGS_XCR0);
        vcpu.pdptes = [0, 1, 2, 3].map((k) => cr(abi.VCPU_REGS_PDPTE0 + k));
      }
      const msrsAt = O_VRS_VRS_MSRS;
      if (mask & abi.VM_RWREGS_MSRS) {
        value.efer = s.getBigUint64(msrsAt + abi.VCPU_REGS_EFER * 8, true);
      }
      kvm.kvm_sregs.encode(view(b), value);
      this.#setKvmSregs(vcpu, b);
      if (mask & abi.VM_RWREGS_MSRS) {
        this.#setMsrs(vcpu, MSR_INDEX.map(([i]) => s.getBigUint64(msrsAt + i * 8, true)));
      }
    }
    if (mask & abi.VM_RWREGS_DRS) {
      vcpu.drs = [0, 1, 2, 3, 4, 5].map((i) => s.getBigUint64(O_VRS_VRS_DRS + i * 8, true));
    }
  }

  #msrBuffer(values?: bigint[]): Uint8Array {
    const E = kvm.kvm_msr_entry;
    const b = new Uint8Array(kvm.kvm_msrs.size + MSR_INDEX.length * E.size);
    const v = view(b);
    v.setUint32(0, MSR_INDEX.length, true);
    MSR_INDEX.forEach(([, index], k) => {
      const at = kvm.kvm_msrs.size + k * E.size;
      v.setUint32(at + O_MSR_INDEX, index, true);
      if (values) v.setBigUint64(at + O_MSR_DATA, values[k], true);
    });
    return b;
  }

  #getMsrs(vcpu: EmuVcpu): bigint[] {
    const b = this.#msrBuffer();
    const n = this.#kvmIoctl(vcpu.fd, kvm.KVM_GET_MSRS, b);
    const v = view(b);
    const E = kvm.kvm_msr_entry;
    return MSR_INDEX.map((_, k) =>
      k < n ? v.getBigUint64(kvm.kvm_msrs.size + k * E.size + O_MSR_DATA, true) : 0n
    );
  }

  #setMsrs(vcpu: EmuVcpu, values: bigint[]): void {
    this.#kvmIoctl(vcpu.fd, kvm.KVM_SET_MSRS, this.#msrBuffer(values));
  }

  // ---- VMM_IOC_RUN ----

  #run(vm: EmuVm, vcpu: EmuVcpu, params: Uint8Array): number {
    const pv = view(params);
    const exitPtr = pv.getBigUint64(O_RUNP_VRP_EXIT, true);
    if (exitPtr === 0n) throw new VmmErrno("EFAULT");
    if (vcpu.state !== VCPU_STATE_STOPPED) throw new VmmErrno("EBUSY");
    // vm_exit is copied in at the start and out at the end of every RUN.
    const user = this.real.memoryAt(exitPtr, EXIT.size);
    const exit = user.slice();
    vcpu.state = VCPU_STATE_RUNNING;
    try {
      const reasons = REASONS[this.flavor];
      this.#enter(vcpu, exit, pv);
      const r = this.#exitFor(vm, vcpu, exit, reasons);
      pv.setUint16(O_RUNP_VRP_EXIT_REASON, r.reason, true);
      pv.setUint8(O_RUNP_VRP_IRQREADY, r.irqready ? 1 : 0);
      user.set(exit);
      return 0;
    } finally {
      if (vcpu.state === VCPU_STATE_RUNNING) vcpu.state = VCPU_STATE_STOPPED;
    }
  }

  /** What vmm(4) does on entry: apply the last exit's results, inject, arm the window. */
  #enter(vcpu: EmuVcpu, exit: Uint8Array, pv: DataView): void {
    const ev = view(exit);
    const gprAt = (i: number) => EXIT_VRS + O_VRS_VRS_GPRS + i * 8;
    const deferred = vcpu.deferredIn;
    if (deferred && vcpu.last === "io-in") {
      vcpu.deferredIn = undefined;
      const data = ev.getUint32(O_EXIT_VEI_VEI_DATA, true);
      const rip = ev.getBigUint64(gprAt(abi.VCPU_REGS_RIP), true);
      // KVM finishes the IN with these bytes: RAX's low `size` bytes, RIP past it.
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setUint32(0, data, true);
      vcpu.run.bytes.set(bytes.subarray(0, deferred.size), deferred.dataOffset);
      const same = rip === deferred.rip + BigInt(deferred.length) && deferred.rax >> 32n === 0n &&
        (deferred.rax & 0xffffffffn & ~sizeMask(deferred.size)) ===
          (BigInt(data) & ~sizeMask(deferred.size));
      if (!same) {
        // vmm(4)'s result differs from KVM's (RIP moved elsewhere, RAX's upper half cleared):
        // let KVM finish now, then impose vmm(4)'s registers.
        this.#completePending(vcpu);
        const b = this.#getKvmRegs(vcpu);
        const r = view(b);
        r.setBigUint64(KVM_REG_OFFSET.rip, rip, true);
        r.setBigUint64(KVM_REG_OFFSET.rax, BigInt(data), true);
        this.#applyRegs(vcpu, b);
      }
    } else if (vcpu.last === "io-in" || vcpu.last === "io-out") {
      const b = this.#visibleRegs(vcpu);
      const r = view(b);
      r.setBigUint64(KVM_REG_OFFSET.rip, ev.getBigUint64(gprAt(abi.VCPU_REGS_RIP), true), true);
      if (vcpu.last === "io-in") {
        const data = ev.getUint32(O_EXIT_VEI_VEI_DATA, true);
        r.setBigUint64(KVM_REG_OFFSET.rax, BigInt(data), true);
      }
      this.#applyRegs(vcpu, b);
    } else if (vcpu.last === "ept") {
      const b = new Uint8Array(kvm.kvm_regs.size);
      const r = view(b);
      VMM_GPR_TO_KVM.forEach((name, i) => {
        r.setBigUint64(KVM_REG_OFFSET[name], ev.getBigUint64(gprAt(i), true), true);
      });
      this.#applyRegs(vcpu, b);
    }
    vcpu.visible = undefined;
    vcpu.last = "none";
    const type = pv.getUint8(O_RUNP_VRP_INJECT_VIE_TYPE);
    const vector = pv.getUint8(O_RUNP_VRP_INJECT_VIE_VECTOR);
    const blocked = vcpu.shadowAtExit || !this.#interruptsOn(vcpu);
    if (type === abi.VCPU_INJECT_INTR && blocked) {
      // vmm(4) injects only when the guest can take it; otherwise the event is lost.
      this.droppedInjections++;
    } else if (type === abi.VCPU_INJECT_INTR) {
      const r = this.real.ioctlTry(
        vcpu.fd,
        kvm.KVM_INTERRUPT,
        kvm.kvm_interrupt.bytes({ irq: vector }),
        ["EEXIST", "ENXIO", "EINVAL"],
      );
      if (r < 0) throw new VmmErrno("EINVAL", `KVM_INTERRUPT refused vector ${vector}`);
    } else if (type === abi.VCPU_INJECT_NMI) {
      this.#kvmIoctl(vcpu.fd, kvm.KVM_NMI, 0);
    } else if (type === abi.VCPU_INJECT_EX) {
      this.#injectException(vcpu, vector, pv.getUint32(O_RUNP_VRP_INJECT_VIE_ERRORCODE, true));
    } else if (type !== abi.VCPU_INJECT_NONE) {
      throw new VmmErrno("EINVAL", `vie_type ${type}`);
    }
    // vm_run: vc_intr = vrp_intr_pending, whatever VMM_IOC_INTR said before.
    vcpu.intr = pv.getUint8(O_RUNP_VRP_INTR_PENDING) !== 0;
    vcpu.run.bytes[RUN.requestInterruptWindow] = vcpu.intr ? 1 : 0;
  }

  #injectException(vcpu: EmuVcpu, vector: number, errorCode: number): void {
    const E = kvm.kvm_vcpu_events;
    const b = new Uint8Array(E.size);
    this.#kvmIoctl(vcpu.fd, kvm.KVM_GET_VCPU_EVENTS, b);
    // #DF, #TS, #NP, #SS, #GP, #PF and #AC push an error code.
    const hasCode = [8, 10, 11, 12, 13, 14, 17].includes(vector);
    E.encode(view(b), {
      exception: {
        injected: 1,
        nr: vector,
        has_error_code: hasCode ? 1 : 0,
        pending: 0,
        error_code: errorCode,
      },
      flags: 0,
    });
    this.#kvmIoctl(vcpu.fd, kvm.KVM_SET_VCPU_EVENTS, b);
  }

  /** KVM_RUN until something vmm(4) would report; fills `exit`. */
  #exitFor(
    vm: EmuVm,
    vcpu: EmuVcpu,
    exit: Uint8Array,
    reasons: (typeof REASONS)["vmx" | "svm"],
  ): { reason: number; irqready: boolean } {
    const rb = vcpu.run.bytes;
    const rv = vcpu.view;
    rb[RUN.immediateExit] = 0;
    const r = this.#kvmRun(vcpu);
    if (r < 0) {
      this.#fillState(vcpu, exit);
      return { reason: abi.VM_EXIT_NONE, irqready: this.#irqready(vcpu) };
    }
    const kreason = rv.getUint32(RUN.exitReason, true);
    const irqready = this.#irqready(vcpu);
    // Only IO/MMIO exits (set by their handlers) leave a shadow standing.
    vcpu.shadowAtExit = false;
    switch (kreason) {
      case kvm.KVM_EXIT_IO:
        this.#ioExit(vm, vcpu, exit);
        return { reason: reasons.io, irqready };
      case kvm.KVM_EXIT_MMIO:
        this.#mmioExit(vm, vcpu, exit);
        return { reason: reasons.ept, irqready };
      case kvm.KVM_EXIT_HLT: {
        const regs = this.#getKvmRegs(vcpu);
        const r = view(regs);
        if ((r.getBigUint64(KVM_REG_OFFSET.rflags, true) & RFLAGS_IF) === 0n) {
          // vmm(4) refuses a halt with interrupts off and terminates the vCPU:
          // Intel (vmx_handle_hlt) before stepping over it, AMD (svm_handle_hlt) after.
          if (this.flavor === "vmx") {
            r.setBigUint64(KVM_REG_OFFSET.rip, r.getBigUint64(KVM_REG_OFFSET.rip, true) - 1n, true);
            this.#setKvmRegs(vcpu, regs);
          }
          vcpu.state = VCPU_STATE_TERMINATED;
          this.lastError = "guest halted with interrupts disabled";
          throw new VmmErrno("EIO", this.lastError);
        }
        this.#fillState(vcpu, exit);
        return { reason: reasons.hlt, irqready };
      }
      case kvm.KVM_EXIT_IRQ_WINDOW_OPEN:
        this.#fillState(vcpu, exit);
        return { reason: reasons.window, irqready };
      case kvm.KVM_EXIT_INTR:
        this.#fillState(vcpu, exit);
        return { reason: abi.VM_EXIT_NONE, irqready };
      case kvm.KVM_EXIT_SHUTDOWN:
        this.#fillState(vcpu, exit);
        return { reason: reasons.tripleFault, irqready: false };
      default:
        this.lastError = `KVM exit ${kvm.kvmExitName(kreason)} (${kreason})`;
        throw new VmmErrno("EIO", this.lastError);
    }
  }

  /** vrp_irqready is RFLAGS.IF (the kernel looks at nothing else). */
  #irqready(vcpu: EmuVcpu): boolean {
    return vcpu.run.bytes[RUN.ifFlag] !== 0;
  }

  #interruptsOn(vcpu: EmuVcpu): boolean {
    return (view(this.#getKvmRegs(vcpu)).getBigUint64(KVM_REG_OFFSET.rflags, true) & RFLAGS_IF) !==
      0n;
  }

  /** vrs (all groups) and cpl, as vmm(4) fills them on every return. */
  #fillState(vcpu: EmuVcpu, exit: Uint8Array): void {
    this.#readRegs(vcpu, abi.VM_RWREGS_ALL, exit.subarray(EXIT_VRS, EXIT_VRS + VRS.size));
    // CPL is SS.DPL (VMX); the vrs just filled holds it.
    const ssAr = view(exit).getUint32(
      EXIT_VRS + O_VRS_VRS_SREGS + abi.VCPU_REGS_SS * SEG.size + O_SEG_VSI_AR,
      true,
    );
    view(exit).setInt32(EXIT_CPL, (ssAr >> 5) & 3, true);
  }

  /**
   * Finishes a deferred IN before registers are written behind its back
   * (its result is then what userspace writes, as on vmm(4)).
   */
  #settleDeferred(vcpu: EmuVcpu): void {
    if (!vcpu.deferredIn) return;
    const pre = this.#getKvmRegs(vcpu);
    vcpu.deferredIn = undefined;
    this.#completePending(vcpu);
    this.#show(vcpu, pre);
  }

  /**
   * Lets KVM finish the access it exited for without running the guest
   * (immediate_exit + KVM_RUN returns EINTR once done), answering any
   * further I/O round of a string instruction with what is in the buffer.
   */
  #completePending(vcpu: EmuVcpu): void {
    const rb = vcpu.run.bytes;
    rb[RUN.immediateExit] = 1;
    // The expected EINTR becomes an error object inside Libc.ioctlTry: skip its stack trace.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      for (let round = 0; round < 4096; round++) {
        const r = this.#kvmRun(vcpu, true);
        if (r < 0) return;
        const k = vcpu.view.getUint32(RUN.exitReason, true);
        if (k !== kvm.KVM_EXIT_IO && k !== kvm.KVM_EXIT_MMIO) {
          this.lastError = `completing an access, KVM exited with ${kvm.kvmExitName(k)}`;
          throw new VmmErrno("EIO", this.lastError);
        }
      }
      this.lastError = "completing a string I/O took more than 4096 rounds";
      throw new VmmErrno("EIO", this.lastError);
    } finally {
      Error.stackTraceLimit = limit;
      rb[RUN.immediateExit] = 0;
    }
  }

  /**
   * The code around `rip`: a function returning up to 15 bytes at a RIP in
   * [rip - 15, rip], read with one translation per page touched.
   */
  #codeWindow(vm: EmuVm, vcpu: EmuVcpu, csBase: bigint, rip: bigint, mask: bigint) {
    const start = (csBase + rip - 15n) & mask;
    const bytes = new Uint8Array(30);
    const valid = new Uint8Array(30);
    // 30 bytes touch at most two pages: translate each once.
    const offset = Number(start & 0xfffn);
    const firstPage = start - BigInt(offset);
    for (let part = 0; part < 2; part++) {
      const pageLinear = (firstPage + BigInt(part * 4096)) & mask;
      const from = part === 0 ? 0 : 4096 - offset;
      if (from >= 30) break;
      const to = part === 0 ? Math.min(30, 4096 - offset) : 30;
      const gpa = this.#translate(vcpu, pageLinear);
      const host = gpa === undefined ? undefined : this.#host(vm, gpa - (gpa % 4096), 4096);
      if (!host) continue;
      const inPage = part === 0 ? offset : 0;
      bytes.set(host.subarray(inPage, inPage + (to - from)), from);
      valid.fill(1, from, to);
    }
    return (at: bigint): Uint8Array => {
      const from = Number(at - rip) + 15;
      let end = from;
      while (end < 30 && end - from < 15 && valid[end]) end++;
      return bytes.subarray(from, end);
    };
  }

  #translate(vcpu: EmuVcpu, linear: bigint): number | undefined {
    // Paging off: linear is physical (no ioctl on the hot path of 32-bit guests).
    if ((this.#sregs(vcpu).cr0 & (1n << 31n)) === 0n) return Number(linear & 0xffffffffn);
    const t = this.#translation;
    const v = view(t);
    t.fill(0);
    v.setBigUint64(TR_LINEAR, BigInt.asUintN(64, linear), true);
    this.#kvmIoctl(vcpu.fd, kvm.KVM_TRANSLATE, t);
    return t[TR_VALID] ? Number(v.getBigUint64(TR_PHYSICAL, true)) : undefined;
  }
  readonly #translation = new Uint8Array(kvm.kvm_translation.size);

  /** The host bytes behind `[gpa, gpa+length)` if a backed range holds them. */
  #host(vm: EmuVm, gpa: number, length: number): Uint8Array | undefined {
    for (const r of vm.ranges) {
      if (r.mapping && gpa >= r.gpa && gpa + length <= r.gpa + r.size) {
        return r.mapping.bytes.subarray(gpa - r.gpa, gpa - r.gpa + length);
      }
    }
    return undefined;
  }

  #gprs(vcpu: EmuVcpu): DataView {
    return view(this.#getKvmRegs(vcpu));
  }

  /** Whether two kvm_regs differ in anything but nothing (the completion test). */
  #sameRegs(a: DataView, b: DataView): boolean {
    for (let at = 0; at < kvm.kvm_regs.size; at += 8) {
      if (a.getBigUint64(at, true) !== b.getBigUint64(at, true)) return false;
    }
    return true;
  }

  #mode(vcpu: EmuVcpu): { sregs: KvmSregs; long: boolean; csBase: bigint } {
    const sregs = this.#sregs(vcpu);
    const long = (sregs.efer & (1n << 10n)) !== 0n && sregs.cs.l === 1;
    return { sregs, long, csBase: long ? 0n : sregs.cs.base };
  }

  /**
   * A port access. KVM reports it in one of two states: still pending (the
   * registers are as before the instruction; KVM finishes it on the next
   * KVM_RUN: hardware IN/OUT exits, and IN/INS through its instruction
   * emulator), or already done (its emulator writes an OUT/OUTS back before
   * exiting). Completing it with immediate_exit tells them apart: only a
   * pending access changes registers. vmm(4) reports neither: RIP at the
   * instruction, nothing done; so the state before the instruction is
   * restored (or, for a finished OUT/OUTS, rebuilt).
   */
  #ioExit(vm: EmuVm, vcpu: EmuVcpu, exit: Uint8Array): void {
    const rv = vcpu.view;
    const kdir = rv.getUint8(RUN.ioDirection);
    const size = rv.getUint8(RUN.ioSize);
    const port = rv.getUint16(RUN.ioPort, true);
    const count = rv.getUint32(RUN.ioCount, true);
    const isIn = kdir === kvm.KVM_EXIT_IO_IN;
    const s0 = this.#getKvmRegs(vcpu);
    const v0 = view(s0);
    const { sregs, long, csBase } = this.#mode(vcpu);
    const ripMask = long ? 0xffffffffffffffffn : 0xffffffffn;
    const rip0 = v0.getBigUint64(KVM_REG_OFFSET.rip, true);
    const at = this.#codeWindow(vm, vcpu, csBase, rip0, ripMask);
    let insn = parseIoInstruction(at(rip0), sregs);
    // INS: KVM writes the elements into guest memory when it completes; keep what was there.
    const saved = isIn && insn?.string ? this.#saveInsTarget(vm, vcpu, insn, v0, sregs) : [];
    // A pending access has RIP at its instruction: when the bytes there are
    // not this access, KVM already finished it and there is nothing to complete.
    const dx = Number(v0.getBigUint64(KVM_REG_OFFSET.rdx, true) & 0xffffn);
    const matches = insn !== undefined && insn.out !== isIn && insn.width === size &&
      (insn.string || (insn.immediate ? at(rip0)[insn.length - 1] === port : dx === port));
    let v1 = v0;
    let pre: Uint8Array;
    let length: number;
    if (isIn && insn && !insn.string && !insn.out && insn.width === size) {
      // A plain IN is always pending: leave it to the next KVM_RUN (see #enter).
      vcpu.deferredIn = {
        rip: rip0,
        length: insn.length,
        size,
        dataOffset: Number(rv.getBigUint64(RUN.ioDataOffset, true)),
        rax: v0.getBigUint64(KVM_REG_OFFSET.rax, true),
      };
      pre = s0;
      length = insn.length;
    } else if (matches || isIn) {
      this.#completePending(vcpu);
      v1 = this.#gprs(vcpu);
    }
    if (vcpu.deferredIn) {
      // pre and length are set.
    } else if (!this.#sameRegs(v0, v1)) {
      // It was pending: s0 is the state before the instruction.
      if (!insn || insn.out === isIn) {
        this.lastError = `port ${port} exit at RIP 0x${rip0.toString(16)}: not an IN/OUT there`;
        throw new VmmErrno("EIO", this.lastError);
      }
      const delta = Number(v1.getBigUint64(KVM_REG_OFFSET.rip, true) - rip0);
      pre = s0;
      length = delta > 0 && delta <= 15 ? delta : insn.length;
    } else {
      // Already written back (an OUT/OUTS through KVM's emulator): rebuild the state before it.
      const rebuilt = this.#rebuildOut(v0, sregs, at, port, size, count, insn);
      if (!rebuilt) {
        this.lastError = `port ${port} exit at RIP 0x${rip0.toString(16)}: cannot find the OUT`;
        throw new VmmErrno("EIO", this.lastError);
      }
      ({ pre, length, insn } = rebuilt);
    }
    this.#show(vcpu, pre!);
    vcpu.shadowAtExit = followsShadowOpener(
      at,
      view(pre!).getBigUint64(KVM_REG_OFFSET.rip, true),
      long,
    );
    for (const { bytes: b, host } of saved) host.set(b);
    this.#fillState(vcpu, exit);
    const ev = view(exit);
    exit.fill(0, 0, EXIT_VRS);
    ev.setUint8(O_EXIT_VEI_VEI_SIZE, size);
    ev.setUint8(O_EXIT_VEI_VEI_DIR, isIn ? abi.VEI_DIR_IN : abi.VEI_DIR_OUT);
    ev.setUint8(O_EXIT_VEI_VEI_REP, insn!.rep ? 1 : 0);
    ev.setUint8(O_EXIT_VEI_VEI_STRING, insn!.string ? 1 : 0);
    ev.setUint8(O_EXIT_VEI_VEI_ENCODING, insn!.immediate ? 1 : 0);
    ev.setUint16(O_EXIT_VEI_VEI_PORT, port, true);
    const rax = view(pre!).getBigUint64(KVM_REG_OFFSET.rax, true);
    ev.setUint32(O_EXIT_VEI_VEI_DATA, Number(rax & 0xffffffffn), true);
    ev.setUint8(O_EXIT_VEI_VEI_INSN_LEN, length!);
    vcpu.last = isIn ? "io-in" : "io-out";
  }

  /**
   * The registers before an OUT/OUTS that KVM's emulator already finished:
   * RIP back to the instruction (found by decoding backwards from RIP; the
   * shortest match that fits the port and size), and for OUTS rSI (and rCX
   * with REP) back by the `count` elements done. A REP OUTS with elements
   * left is still at its own RIP.
   */
  #rebuildOut(
    regs: DataView,
    sregs: KvmSregs,
    at: (rip: bigint) => Uint8Array,
    port: number,
    size: number,
    count: number,
    here: IoInstruction | undefined,
  ): { pre: Uint8Array; length: number; insn: IoInstruction } | undefined {
    const rip = regs.getBigUint64(KVM_REG_OFFSET.rip, true);
    const rcx = regs.getBigUint64(KVM_REG_OFFSET.rcx, true);
    const dx = Number(regs.getBigUint64(KVM_REG_OFFSET.rdx, true) & 0xffffn);
    const fits = (i: IoInstruction, bytes: Uint8Array) =>
      i.out && i.width === size &&
      (i.string || (i.immediate ? bytes[i.length - 1] === port : dx === port));
    let found: { insn: IoInstruction; start: bigint } | undefined;
    const mask = (i: IoInstruction) => (1n << BigInt(i.addressSize * 8)) - 1n;
    if (here && here.string && here.rep && fits(here, at(rip)) && (rcx & mask(here)) !== 0n) {
      found = { insn: here, start: rip };
    } else {
      for (let back = 1; back <= 15 && !found; back++) {
        const bytes = at(rip - BigInt(back));
        const i = parseIoInstruction(bytes, sregs);
        if (i && i.length === back && fits(i, bytes)) {
          found = { insn: i, start: rip - BigInt(back) };
        }
      }
    }
    if (!found) return undefined;
    const pre = new Uint8Array(kvm.kvm_regs.size);
    pre.set(new Uint8Array(regs.buffer, regs.byteOffset, regs.byteLength));
    const p = view(pre);
    p.setBigUint64(KVM_REG_OFFSET.rip, found.start, true);
    const i = found.insn;
    if (i.string) {
      const m = mask(i);
      const down = (regs.getBigUint64(KVM_REG_OFFSET.rflags, true) & RFLAGS_DF) !== 0n;
      const step = BigInt(count * i.width) * (down ? -1n : 1n);
      const put = (off: number, value: bigint) => {
        const old = regs.getBigUint64(off, true);
        const v = value & m;
        p.setBigUint64(off, i.addressSize === 2 ? (old & ~0xffffn) | v : v, true);
      };
      put(KVM_REG_OFFSET.rsi, regs.getBigUint64(KVM_REG_OFFSET.rsi, true) - step);
      if (i.rep) put(KVM_REG_OFFSET.rcx, rcx + BigInt(count));
    }
    return { pre, length: i.length, insn: i };
  }

  /** The guest bytes an INS may overwrite (rCX or 1 elements at ES:rDI), to put back. */
  #saveInsTarget(
    vm: EmuVm,
    vcpu: EmuVcpu,
    insn: IoInstruction,
    r: DataView,
    sregs: KvmSregs,
  ): { bytes: Uint8Array; host: Uint8Array }[] {
    const mask = (1n << BigInt(insn.addressSize * 8)) - 1n;
    const count = insn.rep ? r.getBigUint64(KVM_REG_OFFSET.rcx, true) & mask : 1n;
    const total = Number(count) * insn.width;
    if (total > 16 * 1024 * 1024) {
      this.lastError = `INS of ${total} bytes is more than the emulation saves`;
      throw new VmmErrno("EIO", this.lastError);
    }
    const down = (r.getBigUint64(KVM_REG_OFFSET.rflags, true) & RFLAGS_DF) !== 0n;
    const rdi = r.getBigUint64(KVM_REG_OFFSET.rdi, true) & mask;
    const long = (sregs.efer & (1n << 10n)) !== 0n && sregs.cs.l === 1;
    const base = long ? 0n : sregs.es.base as bigint;
    const saved: { bytes: Uint8Array; host: Uint8Array }[] = [];
    // Byte by byte is slow but simple; strings here are short.
    for (let i = 0; i < total; i++) {
      const off = down ? rdi + BigInt(insn.width - 1) - BigInt(i) : rdi + BigInt(i);
      const linear = BigInt.asUintN(long ? 64 : 32, base + (off & mask));
      const gpa = this.#translate(vcpu, linear);
      const host = gpa === undefined ? undefined : this.#host(vm, gpa, 1);
      if (host) saved.push({ bytes: host.slice(), host });
    }
    return saved;
  }

  /**
   * An MMIO access. KVM's emulator leaves a load pending (completed on the
   * next KVM_RUN) but writes a store back before exiting; vmm(4) reports
   * both before the instruction with only its length. A load is completed
   * and undone; for a store the instruction is found by decoding backwards
   * from RIP: the shortest MOV-family store of the exit's width whose
   * address (with the registers before it) translates to the exit's address
   * and whose value is the exit's data.
   */
  #mmioExit(vm: EmuVm, vcpu: EmuVcpu, exit: Uint8Array): void {
    const rv = vcpu.view;
    const gpa = Number(rv.getBigUint64(RUN.mmioPhysAddr, true));
    const len = rv.getUint32(RUN.mmioLen, true);
    const isWrite = rv.getUint8(RUN.mmioIsWrite) !== 0;
    const inMmio = vm.ranges.some((r) =>
      r.type === abi.VM_MEM_MMIO && gpa >= r.gpa && gpa + len <= r.gpa + r.size
    );
    if (!inMmio) {
      // vmm(4): the address is in no range at all ("unknown memory type").
      this.lastError = `guest access to guest-physical 0x${gpa.toString(16)}, which is in no range`;
      throw new VmmErrno("EINVAL", this.lastError);
    }
    const data = vcpu.run.bytes.slice(RUN.mmioData, RUN.mmioData + Math.min(len, 8));
    const s0 = this.#getKvmRegs(vcpu);
    const v0 = view(s0);
    const { sregs, long, csBase } = this.#mode(vcpu);
    const ripMask = long ? 0xffffffffffffffffn : 0xffffffffn;
    const at = this.#codeWindow(
      vm,
      vcpu,
      csBase,
      v0.getBigUint64(KVM_REG_OFFSET.rip, true),
      ripMask,
    );
    // A load completes with whatever is in mmio.data: make it deterministic.
    vcpu.run.bytes.fill(0, RUN.mmioData, RUN.mmioData + 8);
    this.#completePending(vcpu);
    let pre: Uint8Array;
    let length: number;
    if (!isWrite) {
      const v1 = this.#gprs(vcpu);
      pre = s0;
      length = Number(
        v1.getBigUint64(KVM_REG_OFFSET.rip, true) - v0.getBigUint64(KVM_REG_OFFSET.rip, true),
      );
    } else {
      const found = this.#findStore(vcpu, v0, sregs, at, gpa, len, data);
      if (!found) {
        const rip = v0.getBigUint64(KVM_REG_OFFSET.rip, true);
        this.lastError =
          `MMIO store to 0x${gpa.toString(16)} ending at RIP 0x${rip.toString(16)}: ` +
          `no MOV-family store found before it`;
        throw new VmmErrno("EIO", this.lastError);
      }
      ({ pre, length } = found);
    }
    this.#show(vcpu, pre);
    vcpu.shadowAtExit = followsShadowOpener(
      at,
      view(pre).getBigUint64(KVM_REG_OFFSET.rip, true),
      long,
    );
    this.#fillState(vcpu, exit);
    exit.fill(0, 0, EXIT_VRS);
    const ev = view(exit);
    ev.setUint8(O_EXIT_VEE_VEE_FAULT_TYPE, abi.VEE_FAULT_MMIO_ASSIST);
    let info = 0;
    if (this.flavor === "vmx") {
      if (length > 0 && length <= 15 && this.vmxInsnLength === "valid") {
        info |= abi.VEE_LEN_VALID;
        ev.setUint8(O_EXIT_VEE_VEE_INSN_LEN, length);
      }
    } else {
      // SVM decode assist: the bytes the CPU fetched at RIP, up to 15 and not
      // past RIP's page; vee_insn_len is their count (svm_handle_np_fault).
      const rip = view(pre).getBigUint64(KVM_REG_OFFSET.rip, true);
      const toPageEnd = 4096 - Number((csBase + rip) & 0xfffn);
      const bytes = at(rip).subarray(0, Math.min(15, toPageEnd));
      if (bytes.length > 0) {
        info |= abi.VEE_BYTES_VALID;
        exit.set(bytes, O_EXIT_VEE_VEE_INSN_BYTES);
        ev.setUint8(O_EXIT_VEE_VEE_INSN_LEN, bytes.length);
      }
    }
    ev.setUint8(O_EXIT_VEE_VEE_INSN_INFO, info);
    vcpu.last = "ept";
  }

  #findStore(
    vcpu: EmuVcpu,
    after: DataView,
    sregs: KvmSregs,
    at: (rip: bigint) => Uint8Array,
    gpa: number,
    len: number,
    data: Uint8Array,
  ): { pre: Uint8Array; length: number } | undefined {
    // decodeKvmSregs fills every kvm_sregs field the mapping reads.
    const ourSregs = specialRegistersFromKvm(
      sregs as Parameters<typeof specialRegistersFromKvm>[0],
    );
    const cpuMode = cpuModeOf(ourSregs, after.getBigUint64(KVM_REG_OFFSET.rflags, true));
    const rip = after.getBigUint64(KVM_REG_OFFSET.rip, true);
    const regsAfter = toRegisters(after);
    for (let back = 1; back <= 15; back++) {
      const d = decodeMmioInstruction(at(rip - BigInt(back)), { cpuMode });
      if ("error" in d || d.length !== back || d.op !== "store" || d.width !== len) continue;
      const regs = { ...regsAfter, rip: rip - BigInt(back) };
      let value: bigint;
      const src = d.source;
      if ("stos" in src) {
        // STOS already moved rDI: move it back.
        const bits = BigInt(src.addressSize * 8);
        const down = (regs.rflags & RFLAGS_DF) !== 0n;
        const moved = BigInt.asUintN(
          Number(bits),
          regs.rdi + (down ? BigInt(d.width) : -BigInt(d.width)),
        );
        regs.rdi = src.addressSize === 2 ? (regs.rdi & ~0xffffn) | moved : moved;
        value = regs.rax;
      } else if ("imm" in src) {
        value = src.imm;
      } else {
        const raw = regs[GPR_FIELDS[src.reg]];
        value = src.high8 ? raw >> 8n : raw;
      }
      let same = true;
      for (let i = 0; i < d.width && i < data.length; i++) {
        if (Number((value >> BigInt(8 * i)) & 0xffn) !== data[i]) same = false;
      }
      if (!same) continue;
      const linear = effectiveAddress(d, regs, ourSregs);
      if (this.#translate(vcpu, linear) !== gpa) continue;
      const pre = new Uint8Array(kvm.kvm_regs.size);
      const p = view(pre);
      for (const [name, off] of Object.entries(KVM_REG_OFFSET)) {
        p.setBigUint64(off, BigInt.asUintN(64, regs[name as keyof Registers]), true);
      }
      return { pre, length: back };
    }
    return undefined;
  }
}

/** The facts of an IN/OUT/INS/OUTS instruction vmm(4) reports. */
interface IoInstruction {
  length: number;
  out: boolean;
  string: boolean;
  rep: boolean;
  immediate: boolean;
  width: number;
  addressSize: number;
}

/** Decodes a port I/O instruction (prefixes + opcode), or undefined for anything else. */
function parseIoInstruction(bytes: Uint8Array, sregs: KvmSregs): IoInstruction | undefined {
  const long = (sregs.efer & (1n << 10n)) !== 0n && sregs.cs.l === 1;
  const pe = (sregs.cr0 & 1n) !== 0n;
  const default16 = !pe || (!long && sregs.cs.db === 0);
  let opsize16 = false;
  let addr = false;
  let rep = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addr = true;
    else if (b === 0xf2 || b === 0xf3) rep = true;
    else if ([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65].includes(b)) continue;
    else if (long && b >= 0x40 && b <= 0x4f) continue;
    else {
      const immediate = b >= 0xe4 && b <= 0xe7;
      const string = b >= 0x6c && b <= 0x6f;
      const dxForm = b >= 0xec && b <= 0xef;
      if (!immediate && !string && !dxForm) return undefined;
      if (immediate && i + 1 >= bytes.length) return undefined;
      const width = (b & 1) === 0 ? 1 : default16 !== opsize16 ? 2 : 4;
      const addressSize = long ? (addr ? 4 : 8) : default16 !== addr ? 2 : 4;
      const out = string ? b >= 0x6e : (b & 2) !== 0;
      return { length: i + (immediate ? 2 : 1), out, string, rep, immediate, width, addressSize };
    }
  }
  return undefined;
}

/** kvm_regs as our Registers. */
function toRegisters(r: DataView): Registers {
  const out = {} as Registers;
  for (const [name, off] of Object.entries(KVM_REG_OFFSET)) {
    out[name as keyof Registers] = r.getBigUint64(off, true);
  }
  return out;
}

/** The bits an access of `size` bytes covers. */
function sizeMask(size: number): bigint {
  return (1n << BigInt(size * 8)) - 1n;
}

function buffer(arg: IoctlArg, size: number): Uint8Array {
  if (!(arg instanceof Uint8Array) || arg.length < size) throw new VmmErrno("EFAULT");
  return arg;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function vcpuOf(vm: EmuVm, id: number): EmuVcpu {
  const vcpu = vm.vcpus.find((c) => c.id === id);
  if (!vcpu) throw new VmmErrno("ENOENT", `no vCPU ${id}`);
  return vcpu;
}

// deno-lint-ignore no-explicit-any
function writeVmmSegment(o: DataView, at: number, s: any): void {
  const ar = (s.type & 0xf) | (s.s ? 1 << 4 : 0) | ((s.dpl & 3) << 5) | (s.present ? 1 << 7 : 0) |
    (s.avl ? 1 << 12 : 0) | (s.l ? 1 << 13 : 0) | (s.db ? 1 << 14 : 0) | (s.g ? 1 << 15 : 0) |
    (s.unusable ? 1 << 16 : 0);
  o.setUint16(at + O_SEG_VSI_SEL, s.selector, true);
  o.setUint32(at + O_SEG_VSI_LIMIT, s.limit >>> 0, true);
  o.setUint32(at + O_SEG_VSI_AR, ar >>> 0, true);
  o.setBigUint64(at + O_SEG_VSI_BASE, s.base, true);
}

function readVmmSegment(o: DataView, at: number): Record<string, number | bigint> {
  const ar = o.getUint32(at + O_SEG_VSI_AR, true);
  const bit = (n: number) => (ar >> n) & 1;
  return {
    base: o.getBigUint64(at + O_SEG_VSI_BASE, true),
    limit: o.getUint32(at + O_SEG_VSI_LIMIT, true),
    selector: o.getUint16(at + O_SEG_VSI_SEL, true),
    type: ar & 0xf,
    s: bit(4),
    dpl: (ar >> 5) & 3,
    present: bit(7),
    avl: bit(12),
    l: bit(13),
    db: bit(14),
    g: bit(15),
    unusable: bit(16),
  };
}
