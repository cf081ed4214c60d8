import assert from "node:assert/strict";
import { openbsdIow, openbsdIowr } from "../../ffi/ioctl.ts";
import type { IoctlRequest } from "../../ffi/libc.ts";
import { defineStruct, StructLayout } from "../../ffi/struct.ts";
import {
  CC_PATH,
  compileAndRun,
  cProgram,
  NO_CC_MESSAGE,
  parseProbeOutput,
  probeLayout,
  probeValues,
} from "../../tests/cc.ts";
import * as abi from "./abi.ts";

/**
 * What gcc printed for the era-A structs (vmm.h 1.13, amd64 vmmvar.h 1.117),
 * verbatim (docs/openbsd-vmm-abi.md section 3).
 */
const DOC_LAYOUTS = `
vm_mem_range: sizeof=32 alignof=8
  vmr_gpa                      off=   0 size=   8
  vmr_va                       off=   8 size=   8
  vmr_size                     off=  16 size=   8
  vmr_type                     off=  24 size=   4

vm_create_params: sizeof=2656 alignof=8
  vcp_nmemranges               off=   0 size=   8
  vcp_ncpus                    off=   8 size=   8
  vcp_memranges                off=  16 size= 512
  vcp_name                     off= 528 size=  64
  vcp_sev                      off= 592 size=   4
  vcp_seves                    off= 596 size=   4
  vcp_id                       off= 600 size=   4
  vcp_poscbit                  off= 604 size=   4
  vcp_asid                     off= 608 size=2048

vcpu_segment_info: sizeof=24 alignof=8
  vsi_sel                      off=   0 size=   2
  vsi_limit                    off=   4 size=   4
  vsi_ar                       off=   8 size=   4
  vsi_base                     off=  16 size=   8

vcpu_reg_state: sizeof=568 alignof=8
  vrs_gprs                     off=   0 size= 144
  vrs_crs                      off= 144 size=  80
  vrs_msrs                     off= 224 size=  56
  vrs_drs                      off= 280 size=  48
  vrs_sregs                    off= 328 size= 192
  vrs_gdtr                     off= 520 size=  24
  vrs_idtr                     off= 544 size=  24

vm_exit_inout: sizeof=16 alignof=4
  vei_size                     off=   0 size=   1
  vei_dir                      off=   1 size=   1
  vei_rep                      off=   2 size=   1
  vei_string                   off=   3 size=   1
  vei_encoding                 off=   4 size=   1
  vei_port                     off=   6 size=   2
  vei_data                     off=   8 size=   4
  vei_insn_len                 off=  12 size=   1

vm_exit_eptviolation: sizeof=18 alignof=1
  vee_fault_type               off=   0 size=   1
  vee_insn_info                off=   1 size=   1
  vee_insn_len                 off=   2 size=   1
  vee_insn_bytes               off=   3 size=  15

vm_exit: sizeof=600 alignof=8
  vei                          off=   0 size=  16
  vee                          off=   0 size=  18
  vrs                          off=  24 size= 568
  cpl                          off= 592 size=   4

vcpu_inject_event: sizeof=12 alignof=4
  vie_vector                   off=   0 size=   1
  vie_errorcode                off=   4 size=   4
  vie_type                     off=   8 size=   1

vm_run_params: sizeof=40 alignof=8
  vrp_vm_id                    off=   0 size=   4
  vrp_vcpu_id                  off=   4 size=   4
  vrp_inject                   off=   8 size=  12
  vrp_intr_pending             off=  20 size=   1
  vrp_exit                     off=  24 size=   8
  vrp_exit_reason              off=  32 size=   2
  vrp_irqready                 off=  34 size=   1

vm_info_result: sizeof=160 alignof=8
  vir_memory_size              off=   0 size=   8
  vir_used_size                off=   8 size=   8
  vir_ncpus                    off=  16 size=   8
  vir_vcpu_state               off=  24 size=  64
  vir_creator_pid              off=  88 size=   4
  vir_id                       off=  92 size=   4
  vir_name                     off=  96 size=  64

vm_info_params: sizeof=24 alignof=8
  vip_size                     off=   0 size=   8
  vip_info_ct                  off=   8 size=   8
  vip_info                     off=  16 size=   8

vm_terminate_params: sizeof=4 alignof=4
  vtp_vm_id                    off=   0 size=   4

vm_resetcpu_params: sizeof=576 alignof=8
  vrp_vm_id                    off=   0 size=   4
  vrp_vcpu_id                  off=   4 size=   4
  vrp_init_state               off=   8 size= 568

vm_intr_params: sizeof=12 alignof=4
  vip_vm_id                    off=   0 size=   4
  vip_vcpu_id                  off=   4 size=   4
  vip_intr                     off=   8 size=   2

vm_rwregs_params: sizeof=584 alignof=8
  vrwp_vm_id                   off=   0 size=   4
  vrwp_vcpu_id                 off=   4 size=   4
  vrwp_mask                    off=   8 size=   8
  vrwp_regs                    off=  16 size= 568

vm_sharemem_params: sizeof=656 alignof=8
  vsp_vm_id                    off=   0 size=   4
  vsp_nmemranges               off=   8 size=   8
  vsp_memranges                off=  16 size= 512
  vsp_va                       off= 528 size= 128

vm_rwvmparams_params: sizeof=32 alignof=8
  vpp_vm_id                    off=   0 size=   4
  vpp_vcpu_id                  off=   4 size=   4
  vpp_mask                     off=   8 size=   4
  vpp_pvclock_system_gpa       off=  16 size=   8
  vpp_pvclock_version          off=  24 size=   4
`;

interface DocStruct {
  size: number;
  align: number;
  fields: { name: string; offset: number; size: number }[];
}

function parseDocLayouts(text: string): Map<string, DocStruct> {
  const out = new Map<string, DocStruct>();
  let current: DocStruct | undefined;
  for (const line of text.split("\n")) {
    const head = /^(\w+): sizeof=(\d+) alignof=(\d+)$/.exec(line);
    const field = /^ {2}(\w+) +off= *(\d+) size= *(\d+)$/.exec(line);
    if (head) {
      current = { size: Number(head[2]), align: Number(head[3]), fields: [] };
      out.set(head[1], current);
    } else if (field && current) {
      current.fields.push({ name: field[1], offset: Number(field[2]), size: Number(field[3]) });
    } else if (line.trim()) {
      throw new Error(`Cannot parse document line "${line}"`);
    }
  }
  return out;
}

const DOC = parseDocLayouts(DOC_LAYOUTS);
const exported = Object.entries(abi) as [string, unknown][];
const layouts = exported.filter((e): e is [string, StructLayout] => e[1] instanceof StructLayout);
const requests = exported.filter((e): e is [string, IoctlRequest] =>
  typeof e[1] === "object" && e[1] !== null && "name" in e[1] && "value" in e[1]
);

Deno.test("openbsd abi: every struct size, alignment and field offset matches the document", () => {
  assert.equal(DOC.size, 17);
  assert.deepEqual(
    layouts.map(([, l]) => l.name).sort(),
    [...DOC.keys()].sort(),
    "exported layouts and documented structs differ",
  );
  for (const [exportName, layout] of layouts) {
    assert.equal(exportName, layout.name);
    const doc = DOC.get(layout.name)!;
    assert.deepEqual(
      { size: layout.size, align: layout.align },
      { size: doc.size, align: doc.align },
      layout.name,
    );
    const ours = layout.fields.map((f) => ({ name: f.name, offset: f.offset, size: f.size }));
    assert.deepEqual(ours, doc.fields, layout.name);
  }
});

Deno.test("openbsd abi: nested paths used by the back-end", () => {
  assert.equal(abi.vm_exit.offsetOf("vei.vei_port"), 6);
  assert.equal(abi.vm_exit.offsetOf("vei.vei_data"), 8);
  assert.equal(abi.vm_exit.offsetOf("vee.vee_insn_bytes[14]"), 17);
  assert.equal(abi.vm_exit.offsetOf(`vrs.vrs_gprs[${abi.VCPU_REGS_RIP}]`), 24 + 16 * 8);
  assert.equal(abi.vm_exit.offsetOf(`vrs.vrs_crs[${abi.VCPU_REGS_CR3}]`), 24 + 144 + 2 * 8);
  assert.equal(abi.vm_exit.offsetOf(`vrs.vrs_msrs[${abi.VCPU_REGS_EFER}]`), 24 + 224);
  assert.equal(
    abi.vm_exit.offsetOf(`vrs.vrs_sregs[${abi.VCPU_REGS_CS}].vsi_base`),
    24 + 328 + 24 + 16,
  );
  assert.equal(abi.vm_run_params.offsetOf("vrp_inject.vie_type"), 16);
  assert.equal(abi.vm_create_params.offsetOf("vcp_memranges[15].vmr_va"), 16 + 15 * 32 + 8);
});

Deno.test("openbsd abi: encode/decode a vm_run_params and vm_exit round trip", () => {
  const run = abi.vm_run_params.bytes({
    vrp_vm_id: 3,
    vrp_vcpu_id: 0,
    vrp_inject: { vie_type: abi.VCPU_INJECT_INTR, vie_vector: 0x20 },
    vrp_intr_pending: 1,
    vrp_exit: 0x7f0012345000n,
  });
  assert.equal(run.length, 40);
  assert.equal(run[8], 0x20);
  assert.equal(run[16], abi.VCPU_INJECT_INTR);
  assert.equal(run[20], 1);
  assert.deepEqual([...run.subarray(24, 32)], [0x00, 0x50, 0x34, 0x12, 0x00, 0x7f, 0, 0]);

  const exit = new Uint8Array(abi.vm_exit.size);
  const view = new DataView(exit.buffer);
  abi.vm_exit.encode(view, {
    vei: { vei_size: 1, vei_dir: abi.VEI_DIR_IN, vei_port: 0x3f8, vei_insn_len: 1 },
    vrs: { vrs_gprs: Object.assign(new Array(18).fill(undefined), { 16: 0xfff0n }) },
    cpl: 3,
  });
  const d = abi.vm_exit.decode(view);
  assert.equal(d.vei.vei_port, 0x3f8);
  // The union: vee sees vei's bytes (vei_port is vee_insn_bytes[3..4]).
  assert.equal(d.vee.vee_fault_type, 1);
  assert.deepEqual(d.vee.vee_insn_bytes.slice(3, 5), [0xf8, 0x03]);
  assert.equal(d.vrs.vrs_gprs[abi.VCPU_REGS_RIP], 0xfff0n);
  assert.equal(view.getInt32(592, true), 3);
});

/** Section 1's table: name, direction, number, sizeof, request. */
const DOC_IOCTLS: [string, "_IOW" | "_IOWR", number, number, number][] = [
  ["VMM_IOC_CREATE", "_IOWR", 1, 2656, 0xCA605601],
  ["VMM_IOC_RUN", "_IOWR", 2, 40, 0xC0285602],
  ["VMM_IOC_INFO", "_IOWR", 3, 24, 0xC0185603],
  ["VMM_IOC_TERM", "_IOW", 4, 4, 0x80045604],
  ["VMM_IOC_RESETCPU", "_IOW", 5, 576, 0x82405605],
  ["VMM_IOC_INTR", "_IOW", 6, 12, 0x800C5606],
  ["VMM_IOC_READREGS", "_IOWR", 7, 584, 0xC2485607],
  ["VMM_IOC_WRITEREGS", "_IOW", 8, 584, 0x82485608],
  ["VMM_IOC_READVMPARAMS", "_IOWR", 9, 32, 0xC0205609],
  ["VMM_IOC_WRITEVMPARAMS", "_IOW", 10, 32, 0x8020560A],
  ["VMM_IOC_SHAREMEM", "_IOWR", 11, 656, 0xC290560B],
];

Deno.test("openbsd abi: every ioctl request matches the document's table", () => {
  const ours = new Map(requests.map(([n, r]) => [n, r]));
  for (const [name, dir, nr, size, value] of DOC_IOCTLS) {
    const req = ours.get(name);
    assert.ok(req, `${name} is not exported`);
    assert.equal(req.name, name);
    assert.equal(req.value, value, name);
    const encode = dir === "_IOW" ? openbsdIow : openbsdIowr;
    assert.equal(encode(0x56, nr, size), value, `${name} from the document's sizeof`);
  }
  assert.equal(abi.VMM_IOC_SHAREMEM_2023.value, 0x8290560B);
  assert.equal(abi.VMM_IOC_SHAREMEM_2023.name, "VMM_IOC_SHAREMEM");
  assert.equal(requests.length, DOC_IOCTLS.length + 1);
});

Deno.test("openbsd abi: constants match section 2 of the document", () => {
  const expected: Record<string, number | string> = {
    VMM_MAX_MEM_RANGES: 16,
    VMM_MAX_NAME_LEN: 64,
    VMM_MAX_VCPUS: 512,
    VMM_MAX_VCPUS_PER_VM: 64,
    VMM_MAX_VM_MEM_SIZE: 128 * 2 ** 30,
    VMM_MAX_DISKS_PER_VM: 4,
    VMM_MAX_NICS_PER_VM: 4,
    HVCALL_FORCED_ABORT: 0x1234,
    VMM_HV_SIGNATURE: "OpenBSDVMM58",
    VM_MEM_RAM: 0,
    VM_MEM_RESERVED: 1,
    VM_MEM_MMIO: 2,
    VM_EXIT_TERMINATED: 0xFFFE,
    VM_EXIT_NONE: 0xFFFF,
    VEI_DIR_OUT: 0,
    VEI_DIR_IN: 1,
    VEE_FAULT_INVALID: 0,
    VEE_FAULT_HANDLED: 1,
    VEE_FAULT_MMIO_ASSIST: 2,
    VEE_FAULT_PROTECT: 3,
    VEE_LEN_VALID: 0x1,
    VEE_BYTES_VALID: 0x2,
    VCPU_INJECT_NONE: 0,
    VCPU_INJECT_INTR: 1,
    VCPU_INJECT_EX: 2,
    VCPU_INJECT_NMI: 3,
    VM_RWREGS_GPRS: 0x1,
    VM_RWREGS_SREGS: 0x2,
    VM_RWREGS_CRS: 0x4,
    VM_RWREGS_MSRS: 0x8,
    VM_RWREGS_DRS: 0x10,
    VM_RWREGS_ALL: 0x1F,
    VM_RWVMPARAMS_PVCLOCK_SYSTEM_GPA: 0x1,
    VM_RWVMPARAMS_PVCLOCK_VERSION: 0x2,
    VM_RWVMPARAMS_ALL: 0x3,
    VMX_EXIT_EXTINT: 1,
    VMX_EXIT_TRIPLE_FAULT: 2,
    VMX_EXIT_INIT: 3,
    VMX_EXIT_SIPI: 4,
    VMX_EXIT_INT_WINDOW: 7,
    VMX_EXIT_CPUID: 10,
    VMX_EXIT_HLT: 12,
    VMX_EXIT_IO: 30,
    VMX_EXIT_RDMSR: 31,
    VMX_EXIT_WRMSR: 32,
    VMX_EXIT_EPT_VIOLATION: 48,
    VMX_EXIT_EPT_MISCONFIGURATION: 49,
    VMX_EXIT_XSETBV: 55,
    SVM_VMEXIT_INTR: 0x60,
    SVM_VMEXIT_VINTR: 0x64,
    SVM_VMEXIT_CPUID: 0x72,
    SVM_VMEXIT_HLT: 0x78,
    SVM_VMEXIT_IOIO: 0x7B,
    SVM_VMEXIT_MSR: 0x7C,
    SVM_VMEXIT_SHUTDOWN: 0x7F,
    SVM_VMEXIT_NPF: 0x400,
    SVM_VMEXIT_VMGEXIT: 0x403,
  };
  const vectors =
    "DE0 DB1 NMI2 BP3 OF4 BR5 UD6 NM7 DF8 CP9 TS10 NP11 SS12 GP13 PF14 MF16 AC17 MC18 XM19 VE20";
  for (const v of vectors.split(" ")) {
    const [, name, n] = /^([A-Z]+)(\d+)$/.exec(v)!;
    expected[`VMM_EX_${name}`] = Number(n);
  }
  const gprs = "RAX RCX RDX RBX RSP RBP RSI RDI R8 R9 R10 R11 R12 R13 R14 R15 RIP RFLAGS";
  const crs = "CR0 CR2 CR3 CR4 CR8 XCR0 PDPTE0 PDPTE1 PDPTE2 PDPTE3";
  const msrs = "EFER STAR LSTAR CSTAR SFMASK KGSBASE MISC_ENABLE";
  const drs = "DR0 DR1 DR2 DR3 DR6 DR7";
  const sregs = "ES CS SS DS FS GS LDTR TR";
  for (
    const [list, count] of [[gprs, "NGPRS"], [crs, "NCRS"], [msrs, "NMSRS"], [drs, "NDRS"], [
      sregs,
      "NSREGS",
    ]]
  ) {
    const names = list.split(" ");
    names.forEach((n, i) => expected[`VCPU_REGS_${n}`] = i);
    expected[`VCPU_REGS_${count}`] = names.length;
  }
  const actual = Object.fromEntries(
    exported.filter(([n, v]) => n in expected && (typeof v === "number" || typeof v === "string")),
  );
  assert.deepEqual(actual, expected);
  // And nothing exported that the document does not list (besides our own helpers).
  const undocumented = exported
    .filter(([n, v]) => typeof v === "number" && !(n in expected))
    .map(([n]) => n);
  assert.deepEqual(undocumented, ["VMM_IOC_GROUP"]);
});

Deno.test("openbsd abi: vmmExitName names both VMX and SVM reasons", () => {
  const exits = exported.filter(([n, v]) =>
    /^(VMX_EXIT_|SVM_VMEXIT_|VM_EXIT_)/.test(n) && typeof v === "number"
  ) as [string, number][];
  assert.equal(exits.length, 24);
  for (const [name, value] of exits) assert.equal(abi.vmmExitName(value), name);
  assert.equal(abi.vmmExitName(30), "VMX_EXIT_IO");
  assert.equal(abi.vmmExitName(0x7b), "SVM_VMEXIT_IOIO");
  assert.equal(abi.vmmExitName(0x1ff), "VM_EXIT_0x1ff");
});

Deno.test("openbsd abi: assertOpenbsdAbi accepts the tables and names a wrong struct", () => {
  abi.assertOpenbsdAbi();
  for (const [name, size] of Object.entries(abi.OPENBSD_VMM_SIZES)) {
    assert.equal(size, DOC.get(name)?.size, name);
  }
  // A vm_exit that forgot the union with vee (18 bytes) and cpl: vrs lands at 16.
  const wrong = defineStruct("vm_exit", [["vei", abi.vm_exit_inout], ["vrs", abi.vcpu_reg_state]]);
  assert.throws(
    () => abi.assertOpenbsdAbi([abi.vm_run_params, wrong]),
    { message: 'OpenBSD vmm(4) ABI mismatch: struct "vm_exit" is 584 bytes, expected 600' },
  );
  assert.throws(
    () => abi.assertOpenbsdAbi([defineStruct("vm_mystery", [["x", "u32"]])]),
    /no known size for struct "vm_mystery"/,
  );
});

/**
 * The era-A structs written out in plain C as the document lists them, with
 * OpenBSD amd64's type sizes (paddr_t, vaddr_t, size_t = 8; pid_t = 4), and
 * sys/ioccom.h's encoding, so the C compiler lays them out independently of
 * our tables.
 */
const C_DECLARATIONS = String.raw`
#include <stdint.h>
typedef uint64_t obsd_paddr_t;
typedef uint64_t obsd_vaddr_t;
typedef uint64_t obsd_size_t;
typedef int32_t obsd_pid_t;

struct vm_mem_range {
  obsd_paddr_t vmr_gpa;
  obsd_vaddr_t vmr_va;
  obsd_size_t vmr_size;
  int vmr_type;
};
struct vm_create_params {
  obsd_size_t vcp_nmemranges;
  obsd_size_t vcp_ncpus;
  struct vm_mem_range vcp_memranges[16];
  char vcp_name[64];
  int vcp_sev;
  int vcp_seves;
  uint32_t vcp_id;
  uint32_t vcp_poscbit;
  uint32_t vcp_asid[512];
};
struct vcpu_segment_info {
  uint16_t vsi_sel;
  uint32_t vsi_limit;
  uint32_t vsi_ar;
  uint64_t vsi_base;
};
struct vcpu_reg_state {
  uint64_t vrs_gprs[18];
  uint64_t vrs_crs[10];
  uint64_t vrs_msrs[7];
  uint64_t vrs_drs[6];
  struct vcpu_segment_info vrs_sregs[8];
  struct vcpu_segment_info vrs_gdtr;
  struct vcpu_segment_info vrs_idtr;
};
struct vm_exit_inout {
  uint8_t vei_size;
  uint8_t vei_dir;
  uint8_t vei_rep;
  uint8_t vei_string;
  uint8_t vei_encoding;
  uint16_t vei_port;
  uint32_t vei_data;
  uint8_t vei_insn_len;
};
struct vm_exit_eptviolation {
  uint8_t vee_fault_type;
  uint8_t vee_insn_info;
  uint8_t vee_insn_len;
  uint8_t vee_insn_bytes[15];
};
struct vm_exit {
  union {
    struct vm_exit_inout vei;
    struct vm_exit_eptviolation vee;
  };
  struct vcpu_reg_state vrs;
  int cpl;
};
struct vcpu_inject_event {
  uint8_t vie_vector;
  uint32_t vie_errorcode;
  uint8_t vie_type;
};
struct vm_run_params {
  uint32_t vrp_vm_id;
  uint32_t vrp_vcpu_id;
  struct vcpu_inject_event vrp_inject;
  uint8_t vrp_intr_pending;
  uint64_t vrp_exit; /* struct vm_exit * */
  uint16_t vrp_exit_reason;
  uint8_t vrp_irqready;
};
struct vm_info_result {
  obsd_size_t vir_memory_size;
  obsd_size_t vir_used_size;
  obsd_size_t vir_ncpus;
  uint8_t vir_vcpu_state[64];
  obsd_pid_t vir_creator_pid;
  uint32_t vir_id;
  char vir_name[64];
};
struct vm_info_params {
  obsd_size_t vip_size;
  obsd_size_t vip_info_ct;
  uint64_t vip_info; /* struct vm_info_result * */
};
struct vm_terminate_params {
  uint32_t vtp_vm_id;
};
struct vm_resetcpu_params {
  uint32_t vrp_vm_id;
  uint32_t vrp_vcpu_id;
  struct vcpu_reg_state vrp_init_state;
};
struct vm_intr_params {
  uint32_t vip_vm_id;
  uint32_t vip_vcpu_id;
  uint16_t vip_intr;
};
struct vm_rwregs_params {
  uint32_t vrwp_vm_id;
  uint32_t vrwp_vcpu_id;
  uint64_t vrwp_mask;
  struct vcpu_reg_state vrwp_regs;
};
struct vm_sharemem_params {
  uint32_t vsp_vm_id;
  obsd_size_t vsp_nmemranges;
  struct vm_mem_range vsp_memranges[16];
  obsd_vaddr_t vsp_va[16];
};
struct vm_rwvmparams_params {
  uint32_t vpp_vm_id;
  uint32_t vpp_vcpu_id;
  uint32_t vpp_mask;
  obsd_paddr_t vpp_pvclock_system_gpa;
  uint32_t vpp_pvclock_version;
};

#define OBSD_IOCPARM_MASK 0x1fffUL
#define OBSD_IOC_OUT 0x40000000UL
#define OBSD_IOC_IN 0x80000000UL
#define OBSD_IOC(inout, group, num, len) \
  ((inout) | (((len) & OBSD_IOCPARM_MASK) << 16) | ((group) << 8) | (num))
#define OBSD_IOW(g, n, t) OBSD_IOC(OBSD_IOC_IN, (g), (n), sizeof(t))
#define OBSD_IOWR(g, n, t) OBSD_IOC(OBSD_IOC_IN | OBSD_IOC_OUT, (g), (n), sizeof(t))
#define VMM_IOC_CREATE OBSD_IOWR('V', 1, struct vm_create_params)
#define VMM_IOC_RUN OBSD_IOWR('V', 2, struct vm_run_params)
#define VMM_IOC_INFO OBSD_IOWR('V', 3, struct vm_info_params)
#define VMM_IOC_TERM OBSD_IOW('V', 4, struct vm_terminate_params)
#define VMM_IOC_RESETCPU OBSD_IOW('V', 5, struct vm_resetcpu_params)
#define VMM_IOC_INTR OBSD_IOW('V', 6, struct vm_intr_params)
#define VMM_IOC_READREGS OBSD_IOWR('V', 7, struct vm_rwregs_params)
#define VMM_IOC_WRITEREGS OBSD_IOW('V', 8, struct vm_rwregs_params)
#define VMM_IOC_READVMPARAMS OBSD_IOWR('V', 9, struct vm_rwvmparams_params)
#define VMM_IOC_WRITEVMPARAMS OBSD_IOW('V', 10, struct vm_rwvmparams_params)
#define VMM_IOC_SHAREMEM OBSD_IOWR('V', 11, struct vm_sharemem_params)
#define VMM_IOC_SHAREMEM_2023 OBSD_IOW('V', 11, struct vm_sharemem_params)
`;

Deno.test({
  name: "openbsd abi: layouts and requests match the structs compiled by the C compiler",
  ignore: CC_PATH === undefined,
  async fn() {
    const probes = [
      ...layouts.map(([, l]) => probeLayout(l)),
      probeValues(Object.fromEntries(requests.map(([name, r]) => [name, r.value]))),
    ];
    const source = cProgram([C_DECLARATIONS], probes.flatMap((p) => p.lines));
    const out = await compileAndRun(source);
    assert.ok(out !== undefined, NO_CC_MESSAGE);
    const expected = Object.assign({}, ...probes.map((p) => p.expected));
    assert.ok(Object.keys(expected).length > 250);
    assert.deepEqual(parseProbeOutput(out), expected);
  },
});
