/**
 * The OpenBSD vmm(4) userspace ABI (amd64, "era A": everything on /dev/vmm,
 * the VM chosen by its id) as data: struct layouts as field tables under
 * their C struct names, ioctl requests computed with the OpenBSD `_IO*`
 * encoders from the struct sizes, and the constants of
 * `sys/dev/vmm/vmm.h` (rev 1.13) and `sys/arch/amd64/include/vmmvar.h`
 * (rev 1.117). What the back-end relies on: docs/openbsd-vmm-abi.md.
 *
 * vmm(4) has no stable ABI: call {@link assertOpenbsdAbi} at startup, and
 * rebuild these tables from the target release's headers when it moves.
 *
 * @example
 * ```ts
 * import { VCPU_REGS_RIP, vm_exit, VMM_IOC_RUN } from "./abi.ts";
 * vm_exit.offsetOf(`vrs.vrs_gprs[${VCPU_REGS_RIP}]`); // 24 + 16 * 8
 * vm_exit.offsetOf("vei.vei_port"); // 6
 * VMM_IOC_RUN.value; // 0xc0285602
 * ```
 * @module
 */

import { openbsdIow, openbsdIowr } from "../../ffi/ioctl.ts";
import type { IoctlRequest } from "../../ffi/libc.ts";
import {
  array,
  defineStruct,
  defineUnion,
  liftAnonymous,
  type StructLayout,
} from "../../ffi/struct.ts";

// ---------------------------------------------------------------------------
// Limits and fixed values (vmm.h / vmmvar.h)

/** Memory ranges per VM. */
export const VMM_MAX_MEM_RANGES = 16;
/** Bytes of `vcp_name` / `vir_name`, NUL included. */
export const VMM_MAX_NAME_LEN = 64;
/** vCPUs host-wide (also the length of `vcp_asid`). */
export const VMM_MAX_VCPUS = 512;
/** vCPUs per VM (also the length of `vir_vcpu_state`). */
export const VMM_MAX_VCPUS_PER_VM = 64;
/** Highest guest-physical address + 1 a VM may have: 128 GiB. */
export const VMM_MAX_VM_MEM_SIZE = 128 * 1024 ** 3;
/** Disks per VM (vmd). */
export const VMM_MAX_DISKS_PER_VM = 4;
/** Network interfaces per VM (vmd). */
export const VMM_MAX_NICS_PER_VM = 4;
/** %rax value of a VMCALL that makes vmm(4) abort the guest. */
export const HVCALL_FORCED_ABORT = 0x1234;
/** The CPUID hypervisor signature vmm(4) presents to guests. */
export const VMM_HV_SIGNATURE = "OpenBSDVMM58";

/** `vm_mem_range.vmr_type`: ordinary RAM. */
export const VM_MEM_RAM = 0;
/** `vm_mem_range.vmr_type`: backed, but not reported to the guest as RAM. */
export const VM_MEM_RESERVED = 1;
/** `vm_mem_range.vmr_type`: not backed; accesses exit to userspace. */
export const VM_MEM_MMIO = 2;

/** `vm_exit_inout.vei_dir`: guest writes the port. */
export const VEI_DIR_OUT = 0;
/** `vm_exit_inout.vei_dir`: guest reads the port. */
export const VEI_DIR_IN = 1;

/** `vm_exit_eptviolation.vee_fault_type`: not a fault userspace can handle. */
export const VEE_FAULT_INVALID = 0;
/** `vee_fault_type`: the kernel already handled it; nothing to do. */
export const VEE_FAULT_HANDLED = 1;
/** `vee_fault_type`: MMIO: userspace must emulate the instruction at RIP. */
export const VEE_FAULT_MMIO_ASSIST = 2;
/** `vee_fault_type`: an access the guest may not make (vmd kills the VM). */
export const VEE_FAULT_PROTECT = 3;
/** `vee_insn_info` bit: `vee_insn_len` is valid. */
export const VEE_LEN_VALID = 0x1;
/** `vee_insn_info` bit: `vee_insn_bytes` are valid (SVM decode assist). */
export const VEE_BYTES_VALID = 0x2;

/** `vcpu_inject_event.vie_type`: inject nothing. */
export const VCPU_INJECT_NONE = 0;
/** `vie_type`: an external interrupt (`vie_vector`). */
export const VCPU_INJECT_INTR = 1;
/** `vie_type`: an exception (`vie_vector`, `vie_errorcode`). */
export const VCPU_INJECT_EX = 2;
/** `vie_type`: an NMI. */
export const VCPU_INJECT_NMI = 3;

/** `vrwp_mask` bits selecting register groups to read/write. */
export const VM_RWREGS_GPRS = 0x1;
/** See {@link VM_RWREGS_GPRS}. */
export const VM_RWREGS_SREGS = 0x2;
/** See {@link VM_RWREGS_GPRS}. */
export const VM_RWREGS_CRS = 0x4;
/** See {@link VM_RWREGS_GPRS}. */
export const VM_RWREGS_MSRS = 0x8;
/** See {@link VM_RWREGS_GPRS}. */
export const VM_RWREGS_DRS = 0x10;
/** See {@link VM_RWREGS_GPRS}. */
export const VM_RWREGS_ALL = 0x1f;

/** `vpp_mask` bits. */
export const VM_RWVMPARAMS_PVCLOCK_SYSTEM_GPA = 0x1;
/** See {@link VM_RWVMPARAMS_PVCLOCK_SYSTEM_GPA}. */
export const VM_RWVMPARAMS_PVCLOCK_VERSION = 0x2;
/** See {@link VM_RWVMPARAMS_PVCLOCK_SYSTEM_GPA}. */
export const VM_RWVMPARAMS_ALL = 0x3;

/** Exception vectors (`vie_vector` with VCPU_INJECT_EX). */
export const VMM_EX_DE = 0;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_DB = 1;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_NMI = 2;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_BP = 3;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_OF = 4;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_BR = 5;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_UD = 6;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_NM = 7;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_DF = 8;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_CP = 9;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_TS = 10;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_NP = 11;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_SS = 12;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_GP = 13;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_PF = 14;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_MF = 16;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_AC = 17;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_MC = 18;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_XM = 19;
/** See {@link VMM_EX_DE}. */
export const VMM_EX_VE = 20;

// Register array indices: the CURRENT order (2025), not the 2018 one.
/** Index of RAX in `vrs_gprs`. */
export const VCPU_REGS_RAX = 0;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RCX = 1;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RDX = 2;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RBX = 3;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RSP = 4;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RBP = 5;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RSI = 6;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RDI = 7;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R8 = 8;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R9 = 9;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R10 = 10;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R11 = 11;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R12 = 12;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R13 = 13;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R14 = 14;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_R15 = 15;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RIP = 16;
/** See {@link VCPU_REGS_RAX}. */
export const VCPU_REGS_RFLAGS = 17;
/** Length of `vrs_gprs`. */
export const VCPU_REGS_NGPRS = 18;

/** Index of CR0 in `vrs_crs`. */
export const VCPU_REGS_CR0 = 0;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_CR2 = 1;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_CR3 = 2;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_CR4 = 3;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_CR8 = 4;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_XCR0 = 5;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_PDPTE0 = 6;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_PDPTE1 = 7;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_PDPTE2 = 8;
/** See {@link VCPU_REGS_CR0}. */
export const VCPU_REGS_PDPTE3 = 9;
/** Length of `vrs_crs`. */
export const VCPU_REGS_NCRS = 10;

/** Index of EFER in `vrs_msrs`. */
export const VCPU_REGS_EFER = 0;
/** See {@link VCPU_REGS_EFER}. */
export const VCPU_REGS_STAR = 1;
/** See {@link VCPU_REGS_EFER}. */
export const VCPU_REGS_LSTAR = 2;
/** See {@link VCPU_REGS_EFER}. */
export const VCPU_REGS_CSTAR = 3;
/** See {@link VCPU_REGS_EFER}. */
export const VCPU_REGS_SFMASK = 4;
/** See {@link VCPU_REGS_EFER}. */
export const VCPU_REGS_KGSBASE = 5;
/** See {@link VCPU_REGS_EFER}. */
export const VCPU_REGS_MISC_ENABLE = 6;
/** Length of `vrs_msrs`. */
export const VCPU_REGS_NMSRS = 7;

/** Index of DR0 in `vrs_drs`. */
export const VCPU_REGS_DR0 = 0;
/** See {@link VCPU_REGS_DR0}. */
export const VCPU_REGS_DR1 = 1;
/** See {@link VCPU_REGS_DR0}. */
export const VCPU_REGS_DR2 = 2;
/** See {@link VCPU_REGS_DR0}. */
export const VCPU_REGS_DR3 = 3;
/** See {@link VCPU_REGS_DR0}. */
export const VCPU_REGS_DR6 = 4;
/** See {@link VCPU_REGS_DR0}. */
export const VCPU_REGS_DR7 = 5;
/** Length of `vrs_drs`. */
export const VCPU_REGS_NDRS = 6;

/** Index of ES in `vrs_sregs` (GDTR/IDTR are separate fields). */
export const VCPU_REGS_ES = 0;
/** See {@link VCPU_REGS_ES}. */
export const VCPU_REGS_CS = 1;
/** See {@link VCPU_REGS_ES}. */
export const VCPU_REGS_SS = 2;
/** See {@link VCPU_REGS_ES}. */
export const VCPU_REGS_DS = 3;
/** See {@link VCPU_REGS_ES}. */
export const VCPU_REGS_FS = 4;
/** See {@link VCPU_REGS_ES}. */
export const VCPU_REGS_GS = 5;
/** See {@link VCPU_REGS_ES}. */
export const VCPU_REGS_LDTR = 6;
/** See {@link VCPU_REGS_ES}. */
export const VCPU_REGS_TR = 7;
/** Length of `vrs_sregs`. */
export const VCPU_REGS_NSREGS = 8;

// ---------------------------------------------------------------------------
// Exit reasons (`vm_run_params.vrp_exit_reason`): VMX and SVM values do not
// overlap, so one table serves both (vmd switch-cases them together).

/** VMX: an external interrupt arrived. */
export const VMX_EXIT_EXTINT = 1;
/** VMX: triple fault: reset the VM. */
export const VMX_EXIT_TRIPLE_FAULT = 2;
/** VMX: INIT signal. */
export const VMX_EXIT_INIT = 3;
/** VMX: startup IPI. */
export const VMX_EXIT_SIPI = 4;
/** VMX: the guest can take an interrupt now. */
export const VMX_EXIT_INT_WINDOW = 7;
/** VMX: CPUID (already handled by the kernel). */
export const VMX_EXIT_CPUID = 10;
/** VMX: HLT (RIP already past it). */
export const VMX_EXIT_HLT = 12;
/** VMX: port I/O: `vm_exit.vei`; userspace advances RIP. */
export const VMX_EXIT_IO = 30;
/** VMX: RDMSR. */
export const VMX_EXIT_RDMSR = 31;
/** VMX: WRMSR. */
export const VMX_EXIT_WRMSR = 32;
/** VMX: EPT violation: `vm_exit.vee` (MMIO when VEE_FAULT_MMIO_ASSIST). */
export const VMX_EXIT_EPT_VIOLATION = 48;
/** VMX: EPT misconfiguration. */
export const VMX_EXIT_EPT_MISCONFIGURATION = 49;
/** VMX: XSETBV. */
export const VMX_EXIT_XSETBV = 55;
/** SVM: physical interrupt. */
export const SVM_VMEXIT_INTR = 0x60;
/** SVM: virtual interrupt window. */
export const SVM_VMEXIT_VINTR = 0x64;
/** SVM: CPUID. */
export const SVM_VMEXIT_CPUID = 0x72;
/** SVM: HLT. */
export const SVM_VMEXIT_HLT = 0x78;
/** SVM: port I/O: `vm_exit.vei`. */
export const SVM_VMEXIT_IOIO = 0x7b;
/** SVM: RDMSR/WRMSR. */
export const SVM_VMEXIT_MSR = 0x7c;
/** SVM: shutdown (triple fault). */
export const SVM_VMEXIT_SHUTDOWN = 0x7f;
/** SVM: nested page fault: `vm_exit.vee`. */
export const SVM_VMEXIT_NPF = 0x400;
/** SVM: SEV-ES VMGEXIT. */
export const SVM_VMEXIT_VMGEXIT = 0x403;
/** The vCPU was terminated: stop its thread. */
export const VM_EXIT_TERMINATED = 0xfffe;
/** No exit to handle (yield, signal): run again. */
export const VM_EXIT_NONE = 0xffff;

const EXIT_NAMES: ReadonlyMap<number, string> = new Map([
  [VMX_EXIT_EXTINT, "VMX_EXIT_EXTINT"],
  [VMX_EXIT_TRIPLE_FAULT, "VMX_EXIT_TRIPLE_FAULT"],
  [VMX_EXIT_INIT, "VMX_EXIT_INIT"],
  [VMX_EXIT_SIPI, "VMX_EXIT_SIPI"],
  [VMX_EXIT_INT_WINDOW, "VMX_EXIT_INT_WINDOW"],
  [VMX_EXIT_CPUID, "VMX_EXIT_CPUID"],
  [VMX_EXIT_HLT, "VMX_EXIT_HLT"],
  [VMX_EXIT_IO, "VMX_EXIT_IO"],
  [VMX_EXIT_RDMSR, "VMX_EXIT_RDMSR"],
  [VMX_EXIT_WRMSR, "VMX_EXIT_WRMSR"],
  [VMX_EXIT_EPT_VIOLATION, "VMX_EXIT_EPT_VIOLATION"],
  [VMX_EXIT_EPT_MISCONFIGURATION, "VMX_EXIT_EPT_MISCONFIGURATION"],
  [VMX_EXIT_XSETBV, "VMX_EXIT_XSETBV"],
  [SVM_VMEXIT_INTR, "SVM_VMEXIT_INTR"],
  [SVM_VMEXIT_VINTR, "SVM_VMEXIT_VINTR"],
  [SVM_VMEXIT_CPUID, "SVM_VMEXIT_CPUID"],
  [SVM_VMEXIT_HLT, "SVM_VMEXIT_HLT"],
  [SVM_VMEXIT_IOIO, "SVM_VMEXIT_IOIO"],
  [SVM_VMEXIT_MSR, "SVM_VMEXIT_MSR"],
  [SVM_VMEXIT_SHUTDOWN, "SVM_VMEXIT_SHUTDOWN"],
  [SVM_VMEXIT_NPF, "SVM_VMEXIT_NPF"],
  [SVM_VMEXIT_VMGEXIT, "SVM_VMEXIT_VMGEXIT"],
  [VM_EXIT_TERMINATED, "VM_EXIT_TERMINATED"],
  [VM_EXIT_NONE, "VM_EXIT_NONE"],
]);

/**
 * The name of a vmm(4) exit reason (`VMX_EXIT_IO`, `SVM_VMEXIT_NPF`,
 * `VM_EXIT_NONE`), or `VM_EXIT_0x<hex>` when unknown.
 */
export function vmmExitName(reason: number): string {
  return EXIT_NAMES.get(reason) ?? `VM_EXIT_0x${reason.toString(16)}`;
}

// ---------------------------------------------------------------------------
// Struct layouts (amd64 LP64: paddr_t, vaddr_t, size_t and pointers are 8 bytes, pid_t 4)

/** `struct vm_mem_range`: one guest-physical range; `vmr_va` is where the kernel mapped it. */
export const vm_mem_range = defineStruct("vm_mem_range", [
  ["vmr_gpa", "u64"],
  ["vmr_va", "u64"],
  ["vmr_size", "u64"],
  ["vmr_type", "i32"],
]);

/** `struct vm_create_params` (VMM_IOC_CREATE). */
export const vm_create_params = defineStruct("vm_create_params", [
  ["vcp_nmemranges", "u64"],
  ["vcp_ncpus", "u64"],
  ["vcp_memranges", array(vm_mem_range, VMM_MAX_MEM_RANGES)],
  ["vcp_name", array("u8", VMM_MAX_NAME_LEN)],
  ["vcp_sev", "i32"],
  ["vcp_seves", "i32"],
  ["vcp_id", "u32"],
  ["vcp_poscbit", "u32"],
  ["vcp_asid", array("u32", VMM_MAX_VCPUS)],
]);

/** `struct vcpu_segment_info`: `vsi_ar` in the VMX access-rights layout. */
export const vcpu_segment_info = defineStruct("vcpu_segment_info", [
  ["vsi_sel", "u16"],
  ["vsi_limit", "u32"],
  ["vsi_ar", "u32"],
  ["vsi_base", "u64"],
]);

/** `struct vcpu_reg_state`: indices are the VCPU_REGS_* constants. */
export const vcpu_reg_state = defineStruct("vcpu_reg_state", [
  ["vrs_gprs", array("u64", VCPU_REGS_NGPRS)],
  ["vrs_crs", array("u64", VCPU_REGS_NCRS)],
  ["vrs_msrs", array("u64", VCPU_REGS_NMSRS)],
  ["vrs_drs", array("u64", VCPU_REGS_NDRS)],
  ["vrs_sregs", array(vcpu_segment_info, VCPU_REGS_NSREGS)],
  ["vrs_gdtr", vcpu_segment_info],
  ["vrs_idtr", vcpu_segment_info],
]);

/** `struct vm_exit_inout`: an IO exit (VMX_EXIT_IO / SVM_VMEXIT_IOIO). */
export const vm_exit_inout = defineStruct("vm_exit_inout", [
  ["vei_size", "u8"],
  ["vei_dir", "u8"],
  ["vei_rep", "u8"],
  ["vei_string", "u8"],
  ["vei_encoding", "u8"],
  ["vei_port", "u16"],
  ["vei_data", "u32"],
  ["vei_insn_len", "u8"],
]);

/** `struct vm_exit_eptviolation`: an EPT violation / NPF exit. */
export const vm_exit_eptviolation = defineStruct("vm_exit_eptviolation", [
  ["vee_fault_type", "u8"],
  ["vee_insn_info", "u8"],
  ["vee_insn_len", "u8"],
  ["vee_insn_bytes", array("u8", 15)],
]);

/**
 * `struct vm_exit`: the anonymous union of `vei`/`vee` at 0, then the full
 * register state `vrs` at 24 and `cpl` at 592. Passed by pointer in
 * `vm_run_params.vrp_exit`, copied in and out on every VMM_IOC_RUN.
 */
export const vm_exit = liftAnonymous(
  defineStruct("vm_exit", [
    ["", defineUnion("vm_exit.exit", [["vei", vm_exit_inout], ["vee", vm_exit_eptviolation]])],
    ["vrs", vcpu_reg_state],
    ["cpl", "i32"],
  ]),
  "",
);

/** `struct vcpu_inject_event`: what to inject on the next run. */
export const vcpu_inject_event = defineStruct("vcpu_inject_event", [
  ["vie_vector", "u8"],
  ["vie_errorcode", "u32"],
  ["vie_type", "u8"],
]);

/** `struct vm_run_params` (VMM_IOC_RUN); `vrp_exit` is the address of a {@link vm_exit}. */
export const vm_run_params = defineStruct("vm_run_params", [
  ["vrp_vm_id", "u32"],
  ["vrp_vcpu_id", "u32"],
  ["vrp_inject", vcpu_inject_event],
  ["vrp_intr_pending", "u8"],
  ["vrp_exit", "u64"],
  ["vrp_exit_reason", "u16"],
  ["vrp_irqready", "u8"],
]);

/** `struct vm_info_result`: one VM as VMM_IOC_INFO reports it. */
export const vm_info_result = defineStruct("vm_info_result", [
  ["vir_memory_size", "u64"],
  ["vir_used_size", "u64"],
  ["vir_ncpus", "u64"],
  ["vir_vcpu_state", array("u8", VMM_MAX_VCPUS_PER_VM)],
  ["vir_creator_pid", "i32"],
  ["vir_id", "u32"],
  ["vir_name", array("u8", VMM_MAX_NAME_LEN)],
]);

/** `struct vm_info_params` (VMM_IOC_INFO); `vip_info` points to {@link vm_info_result}s. */
export const vm_info_params = defineStruct("vm_info_params", [
  ["vip_size", "u64"],
  ["vip_info_ct", "u64"],
  ["vip_info", "u64"],
]);

/** `struct vm_terminate_params` (VMM_IOC_TERM). */
export const vm_terminate_params = defineStruct("vm_terminate_params", [
  ["vtp_vm_id", "u32"],
]);

/** `struct vm_resetcpu_params` (VMM_IOC_RESETCPU). */
export const vm_resetcpu_params = defineStruct("vm_resetcpu_params", [
  ["vrp_vm_id", "u32"],
  ["vrp_vcpu_id", "u32"],
  ["vrp_init_state", vcpu_reg_state],
]);

/** `struct vm_intr_params` (VMM_IOC_INTR): `vip_intr` 1 asserts "interrupt pending". */
export const vm_intr_params = defineStruct("vm_intr_params", [
  ["vip_vm_id", "u32"],
  ["vip_vcpu_id", "u32"],
  ["vip_intr", "u16"],
]);

/** `struct vm_rwregs_params` (VMM_IOC_READREGS/WRITEREGS). */
export const vm_rwregs_params = defineStruct("vm_rwregs_params", [
  ["vrwp_vm_id", "u32"],
  ["vrwp_vcpu_id", "u32"],
  ["vrwp_mask", "u64"],
  ["vrwp_regs", vcpu_reg_state],
]);

/** `struct vm_sharemem_params` (VMM_IOC_SHAREMEM). */
export const vm_sharemem_params = defineStruct("vm_sharemem_params", [
  ["vsp_vm_id", "u32"],
  ["vsp_nmemranges", "u64"],
  ["vsp_memranges", array(vm_mem_range, VMM_MAX_MEM_RANGES)],
  ["vsp_va", array("u64", VMM_MAX_MEM_RANGES)],
]);

/** `struct vm_rwvmparams_params` (VMM_IOC_READVMPARAMS/WRITEVMPARAMS). */
export const vm_rwvmparams_params = defineStruct("vm_rwvmparams_params", [
  ["vpp_vm_id", "u32"],
  ["vpp_vcpu_id", "u32"],
  ["vpp_mask", "u32"],
  ["vpp_pvclock_system_gpa", "u64"],
  ["vpp_pvclock_version", "u32"],
]);

/** Every top-level layout above. */
export const OPENBSD_VMM_LAYOUTS: readonly StructLayout[] = [
  vm_mem_range,
  vm_create_params,
  vcpu_segment_info,
  vcpu_reg_state,
  vm_exit_inout,
  vm_exit_eptviolation,
  vm_exit,
  vcpu_inject_event,
  vm_run_params,
  vm_info_result,
  vm_info_params,
  vm_terminate_params,
  vm_resetcpu_params,
  vm_intr_params,
  vm_rwregs_params,
  vm_sharemem_params,
  vm_rwvmparams_params,
];

// ---------------------------------------------------------------------------
// ioctl requests (group 'V')

/** The ioctl group of every vmm(4) request: 'V'. */
export const VMM_IOC_GROUP = 0x56;

function request(name: string, value: number): IoctlRequest {
  return Object.freeze({ name, value });
}
const iow = (name: string, nr: number, t: StructLayout<object>) =>
  request(name, openbsdIow(VMM_IOC_GROUP, nr, t.size));
const iowr = (name: string, nr: number, t: StructLayout<object>) =>
  request(name, openbsdIowr(VMM_IOC_GROUP, nr, t.size));

/** Creates a VM ({@link vm_create_params}); returns `vcp_id` and the ranges' `vmr_va`. */
export const VMM_IOC_CREATE: IoctlRequest = iowr("VMM_IOC_CREATE", 1, vm_create_params);
/** Runs a vCPU until an exit ({@link vm_run_params}). */
export const VMM_IOC_RUN: IoctlRequest = iowr("VMM_IOC_RUN", 2, vm_run_params);
/** Lists VMs ({@link vm_info_params}). */
export const VMM_IOC_INFO: IoctlRequest = iowr("VMM_IOC_INFO", 3, vm_info_params);
/** Destroys a VM ({@link vm_terminate_params}). */
export const VMM_IOC_TERM: IoctlRequest = iow("VMM_IOC_TERM", 4, vm_terminate_params);
/** Resets a stopped vCPU to a register state ({@link vm_resetcpu_params}). */
export const VMM_IOC_RESETCPU: IoctlRequest = iow("VMM_IOC_RESETCPU", 5, vm_resetcpu_params);
/** Sets a vCPU's "interrupt pending" line ({@link vm_intr_params}). */
export const VMM_IOC_INTR: IoctlRequest = iow("VMM_IOC_INTR", 6, vm_intr_params);
/** Reads register groups ({@link vm_rwregs_params}). */
export const VMM_IOC_READREGS: IoctlRequest = iowr("VMM_IOC_READREGS", 7, vm_rwregs_params);
/** Writes register groups ({@link vm_rwregs_params}). */
export const VMM_IOC_WRITEREGS: IoctlRequest = iow("VMM_IOC_WRITEREGS", 8, vm_rwregs_params);
/** Reads pvclock parameters ({@link vm_rwvmparams_params}). */
export const VMM_IOC_READVMPARAMS: IoctlRequest = iowr(
  "VMM_IOC_READVMPARAMS",
  9,
  vm_rwvmparams_params,
);
/** Writes pvclock parameters ({@link vm_rwvmparams_params}). */
export const VMM_IOC_WRITEVMPARAMS: IoctlRequest = iow(
  "VMM_IOC_WRITEVMPARAMS",
  10,
  vm_rwvmparams_params,
);
/** Maps a VM's memory into this process ({@link vm_sharemem_params}); `_IOWR` since 2024. */
export const VMM_IOC_SHAREMEM: IoctlRequest = iowr("VMM_IOC_SHAREMEM", 11, vm_sharemem_params);
/**
 * VMM_IOC_SHAREMEM as 2023-era headers encoded it (`_IOW`, 0x8290560B): the
 * same request to a kernel of that era, rejected by newer ones.
 */
export const VMM_IOC_SHAREMEM_2023: IoctlRequest = iow(
  "VMM_IOC_SHAREMEM",
  11,
  vm_sharemem_params,
);

// ---------------------------------------------------------------------------
// Startup check

/** sizeof of every layout in the verified era-A tree (vmm.h 1.13, vmmvar.h 1.117). */
export const OPENBSD_VMM_SIZES: Readonly<Record<string, number>> = Object.freeze({
  vm_mem_range: 32,
  vm_create_params: 2656,
  vcpu_segment_info: 24,
  vcpu_reg_state: 568,
  vm_exit_inout: 16,
  vm_exit_eptviolation: 18,
  vm_exit: 600,
  vcpu_inject_event: 12,
  vm_run_params: 40,
  vm_info_result: 160,
  vm_info_params: 24,
  vm_terminate_params: 4,
  vm_resetcpu_params: 576,
  vm_intr_params: 12,
  vm_rwregs_params: 584,
  vm_sharemem_params: 656,
  vm_rwvmparams_params: 32,
});

/**
 * Checks that every layout has the size the verified headers give it, and
 * throws naming the first struct that does not (e.g.
 * `OpenBSD vmm(4) ABI mismatch: struct "vm_exit" is 596 bytes, expected 600`).
 * A layout this table does not know is a mismatch too.
 */
export function assertOpenbsdAbi(layouts: readonly StructLayout[] = OPENBSD_VMM_LAYOUTS): void {
  for (const layout of layouts) {
    const expected = OPENBSD_VMM_SIZES[layout.name];
    if (expected === undefined) {
      throw new Error(`OpenBSD vmm(4) ABI mismatch: no known size for struct "${layout.name}"`);
    }
    if (layout.size !== expected) {
      throw new Error(
        `OpenBSD vmm(4) ABI mismatch: struct "${layout.name}" is ${layout.size} bytes, ` +
          `expected ${expected}`,
      );
    }
  }
}
