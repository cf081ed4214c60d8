/**
 * Header trees for the header probe's tests: `<dev/vmm/vmm.h>` and
 * `<machine/vmmvar.h>` for one vmm(4) layout revision, written as C by hand
 * (so the C compiler, not vmmctl's tables, decides every offset), plus the
 * few system headers they need that a Linux host lacks (OpenBSD's `_IO*`
 * encoding, paddr_t/vaddr_t).
 *
 * @module
 */

/** One revision's knobs. */
export interface HeaderRevision {
  /** Where `int vcp_fd` goes, if anywhere. */
  fd?: "after-id" | "after-poscbit" | "end";
  /** `*_vm_id` fields in the shared parameter structs (default true). */
  vmIds?: boolean;
  /** The AVIC work-in-progress fields. */
  avic?: boolean;
  /** Text inserted before `vcp_asid` (an unknown field). */
  beforeAsid?: string;
  /** The type of `vei_data` (default uint32_t). */
  veiData?: string;
  /** The name of `vrp_irqready` (a renamed field). */
  irqready?: string;
  /** Drop `vrp_vm_id` from vm_run_params only. */
  runWithoutVmId?: boolean;
  /** Era B headers may drop INFO/TERM. */
  withoutInfo?: boolean;
}

const IOCTL_H = `#ifndef TEST_SYS_IOCTL_H
#define TEST_SYS_IOCTL_H
/* OpenBSD's ioctl encoding: direction, 13-bit length, group, number. */
#define IOCPARM_MASK 0x1fff
#define IOC_OUT 0x40000000UL
#define IOC_IN 0x80000000UL
#define IOC_INOUT (IOC_IN | IOC_OUT)
#define _IOC(d, g, n, l) ((d) | (((l) & IOCPARM_MASK) << 16) | ((g) << 8) | (n))
#define _IOW(g, n, t) _IOC(IOC_IN, (g), (n), sizeof(t))
#define _IOWR(g, n, t) _IOC(IOC_INOUT, (g), (n), sizeof(t))
#endif
`;

const UVM_H = `#ifndef TEST_UVM_H
#define TEST_UVM_H
#include <stdint.h>
typedef unsigned long paddr_t;
typedef unsigned long vaddr_t;
#endif
`;

function vmmvar(r: HeaderRevision): string {
  const id = (name: string) => (r.vmIds ?? true) ? `\tuint32_t ${name};\n` : "";
  return `#ifndef TEST_VMMVAR_H
#define TEST_VMMVAR_H
#include <stdint.h>
struct vcpu_segment_info {
\tuint16_t vsi_sel;
\tuint32_t vsi_limit;
\tuint32_t vsi_ar;
\tuint64_t vsi_base;
};
struct vcpu_reg_state {
\tuint64_t vrs_gprs[18];
\tuint64_t vrs_crs[10];
\tuint64_t vrs_msrs[7];
\tuint64_t vrs_drs[6];
\tstruct vcpu_segment_info vrs_sregs[8];
\tstruct vcpu_segment_info vrs_gdtr;
\tstruct vcpu_segment_info vrs_idtr;
};
struct vm_exit_inout {
\tuint8_t vei_size;
\tuint8_t vei_dir;
\tuint8_t vei_rep;
\tuint8_t vei_string;
\tuint8_t vei_encoding;
\tuint16_t vei_port;
\t${r.veiData ?? "uint32_t"} vei_data;
\tuint8_t vei_insn_len;
};
struct vm_exit_eptviolation {
\tuint8_t vee_fault_type;
\tuint8_t vee_insn_info;
\tuint8_t vee_insn_len;
\tuint8_t vee_insn_bytes[15];
};
struct vm_exit {
\tunion {
\t\tstruct vm_exit_inout vei;
\t\tstruct vm_exit_eptviolation vee;
\t};
\tstruct vcpu_reg_state vrs;
\tint cpl;
};
struct vcpu_inject_event {
\tuint8_t vie_vector;
\tuint32_t vie_errorcode;
\tuint8_t vie_type;
};
struct vm_intr_params {
${id("vip_vm_id")}\tuint32_t vip_vcpu_id;
\tuint16_t vip_intr;
};
struct vm_rwregs_params {
${id("vrwp_vm_id")}\tuint32_t vrwp_vcpu_id;
\tuint64_t vrwp_mask;
\tstruct vcpu_reg_state vrwp_regs;
};
#define VMM_IOC_INTR _IOW('V', 6, struct vm_intr_params)
#endif
`;
}

function vmm(r: HeaderRevision): string {
  const id = (name: string) => (r.vmIds ?? true) ? `\tuint32_t ${name};\n` : "";
  const fd = (where: string) => r.fd === where ? "\tint vcp_fd;\n" : "";
  return `#include <sys/rwlock.h>
#include <sys/refcnt.h>
#include <uvm/uvm_extern.h>
#include <machine/vmmvar.h>
#ifndef TEST_DEV_VMM_H
#define TEST_DEV_VMM_H
struct vm_mem_range {
\tpaddr_t vmr_gpa;
\tvaddr_t vmr_va;
\tsize_t vmr_size;
\tint vmr_type;
};
struct vm_create_params {
\tsize_t vcp_nmemranges;
\tsize_t vcp_ncpus;
\tstruct vm_mem_range vcp_memranges[16];
\tchar vcp_name[64];
\tint vcp_sev;
\tint vcp_seves;
\tuint32_t vcp_id;
${fd("after-id")}\tuint32_t vcp_poscbit;
${fd("after-poscbit")}${r.avic ? "\tuint8_t vcp_avic;\n" : ""}${
    r.beforeAsid ?? ""
  }\tuint32_t vcp_asid[512];
${fd("end")}};
struct vm_info_result {
\tsize_t vir_memory_size;
\tsize_t vir_used_size;
\tsize_t vir_ncpus;
\tuint8_t vir_vcpu_state[64];
\tint vir_creator_pid;
\tuint32_t vir_id;
\tchar vir_name[64];
};
struct vm_info_params {
\tsize_t vip_size;
\tsize_t vip_info_ct;
\tstruct vm_info_result *vip_info;
};
struct vm_terminate_params {
\tuint32_t vtp_vm_id;
};
struct vm_resetcpu_params {
${id("vrp_vm_id")}\tuint32_t vrp_vcpu_id;
\tstruct vcpu_reg_state vrp_init_state;
};
struct vm_sharemem_params {
${id("vsp_vm_id")}\tsize_t vsp_nmemranges;
\tstruct vm_mem_range vsp_memranges[16];
\tvaddr_t vsp_va[16];
};
struct vm_run_params {
${r.runWithoutVmId ? "" : id("vrp_vm_id")}\tuint32_t vrp_vcpu_id;
\tstruct vcpu_inject_event vrp_inject;
\tuint8_t vrp_intr_pending;
${r.avic ? "\tuint8_t vrp_cr8_threshold;\n" : ""}\tstruct vm_exit *vrp_exit;
\tuint16_t vrp_exit_reason;
\tuint8_t ${r.irqready ?? "vrp_irqready"};
};
struct vm_rwvmparams_params {
${id("vpp_vm_id")}\tuint32_t vpp_vcpu_id;
\tuint32_t vpp_mask;
\tpaddr_t vpp_pvclock_system_gpa;
\tuint32_t vpp_pvclock_version;
};
#define VMM_IOC_CREATE _IOWR('V', 1, struct vm_create_params)
#define VMM_IOC_RUN _IOWR('V', 2, struct vm_run_params)
${
    r.withoutInfo ? "" : `#define VMM_IOC_INFO _IOWR('V', 3, struct vm_info_params)
#define VMM_IOC_TERM _IOW('V', 4, struct vm_terminate_params)`
  }
#define VMM_IOC_RESETCPU _IOW('V', 5, struct vm_resetcpu_params)
#define VMM_IOC_READREGS _IOWR('V', 7, struct vm_rwregs_params)
#define VMM_IOC_WRITEREGS _IOW('V', 8, struct vm_rwregs_params)
#define VMM_IOC_READVMPARAMS _IOWR('V', 9, struct vm_rwvmparams_params)
#define VMM_IOC_WRITEVMPARAMS _IOW('V', 10, struct vm_rwvmparams_params)
#define VMM_IOC_SHAREMEM _IOWR('V', 11, struct vm_sharemem_params)
#endif
`;
}

/** Writes the header tree of `revision` under `dir` (a fresh directory). */
export function writeHeaderTree(dir: string, revision: HeaderRevision): void {
  for (const sub of ["sys", "uvm", "machine", "dev/vmm"]) {
    Deno.mkdirSync(`${dir}/${sub}`, { recursive: true });
  }
  Deno.writeTextFileSync(`${dir}/sys/ioctl.h`, IOCTL_H);
  Deno.writeTextFileSync(`${dir}/sys/rwlock.h`, "");
  Deno.writeTextFileSync(`${dir}/sys/refcnt.h`, "");
  Deno.writeTextFileSync(`${dir}/uvm/uvm_extern.h`, UVM_H);
  Deno.writeTextFileSync(`${dir}/machine/vmmvar.h`, vmmvar(revision));
  Deno.writeTextFileSync(`${dir}/dev/vmm/vmm.h`, vmm(revision));
}
