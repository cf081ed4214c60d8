/**
 * The vmm(4) layouts this back-end knows, as one table per shape: which
 * optional fields a kernel's headers have and where the per-VM fd sits.
 * vmm(4) has no stable ABI, so the shape of the running kernel is found by
 * the header probe (`header_probe.ts`) or, without a compiler, by the
 * release table here; the back-end then takes every offset, size and
 * request number from the {@link VmmAbi} it is given, never from
 * assumptions of its own.
 *
 * Shapes (docs/openbsd-vmm-abi.md section 0):
 * - era A, the 2025-12 tree (vmm.h 1.13, vmmvar.h 1.117): everything on
 *   /dev/vmm, the VM named by `*_vm_id`;
 * - era B (per-VM fd, -current since 2026-09-19): `int vcp_fd` after
 *   `vcp_id`, after `vcp_poscbit` or at the end of `vm_create_params`
 *   (all three give the same size and request number), with or without the
 *   `*_vm_id` fields (arm64 dropped them in the same change);
 * - the AVIC work in progress (vmm.h 1.14, 2026-09-02, a developer's tree):
 *   `uint8_t vcp_avic` after `vcp_poscbit`, `uint8_t vrp_cr8_threshold`
 *   after `vrp_intr_pending`, in either era.
 *
 * @module
 */

import { openbsdIow, openbsdIowr } from "../../ffi/ioctl.ts";
import type { IoctlRequest } from "../../ffi/libc.ts";
import { array, defineStruct, type FieldType, type StructLayout } from "../../ffi/struct.ts";
import * as abi from "./abi.ts";

/** Where `vcp_fd` sits in `vm_create_params`, or "none" (era A). */
export type VcpFdPlace = "none" | "after-id" | "after-poscbit" | "end";

/** What tells one known layout from another. */
export interface VmmShape {
  fd: VcpFdPlace;
  /** Whether the shared parameter structs carry `*_vm_id` fields. */
  vmIds: boolean;
  /** The AVIC work-in-progress fields `vcp_avic` and `vrp_cr8_threshold`. */
  avic: boolean;
}

/** The structs the back-end passes to or reads from the kernel. */
export interface VmmStructs {
  vm_mem_range: StructLayout;
  vm_create_params: StructLayout;
  vcpu_segment_info: StructLayout;
  vcpu_reg_state: StructLayout;
  vm_exit: StructLayout;
  vcpu_inject_event: StructLayout;
  vm_run_params: StructLayout;
  vm_resetcpu_params: StructLayout;
  vm_intr_params: StructLayout;
  vm_rwregs_params: StructLayout;
  vm_rwvmparams_params: StructLayout;
  vm_sharemem_params: StructLayout;
  /** Era A only. */
  vm_info_params?: StructLayout;
  /** Era A only. */
  vm_terminate_params?: StructLayout;
}

/** The ioctl requests the back-end issues. */
export interface VmmRequests {
  VMM_IOC_CREATE: IoctlRequest;
  VMM_IOC_RUN: IoctlRequest;
  VMM_IOC_RESETCPU: IoctlRequest;
  VMM_IOC_INTR: IoctlRequest;
  VMM_IOC_READREGS: IoctlRequest;
  VMM_IOC_WRITEREGS: IoctlRequest;
  VMM_IOC_READVMPARAMS: IoctlRequest;
  VMM_IOC_WRITEVMPARAMS: IoctlRequest;
  VMM_IOC_SHAREMEM: IoctlRequest;
  /** Era A only. */
  VMM_IOC_INFO?: IoctlRequest;
  /** Era A only. */
  VMM_IOC_TERM?: IoctlRequest;
}

/** A complete vmm(4) ABI: the layouts and requests of one kernel. */
export interface VmmAbi {
  /** The known table it is ("2025-12", "era-B fd after vcp_id", ...). */
  name: string;
  shape: VmmShape;
  /** "A" without a per-VM fd, "B" with one. */
  era: "A" | "B";
  structs: VmmStructs;
  requests: VmmRequests;
  /** Where the layout came from, for the start-up message. */
  source: string;
}

/** The name of a shape, as messages and the probe cache use it. */
export function shapeName(s: VmmShape): string {
  if (s.fd === "none" && s.vmIds && !s.avic) return "2025-12 (era A: vmm.h 1.13, vmmvar.h 1.117)";
  const parts = [s.fd === "none" ? "era A" : `era B with vcp_fd ${s.fd.replace("-", " ")}`];
  if (s.fd !== "none") parts.push(s.vmIds ? "with *_vm_id fields" : "without *_vm_id fields");
  if (s.avic) parts.push("with the AVIC fields (vcp_avic, vrp_cr8_threshold)");
  return parts.join(", ");
}

type Members = [string, FieldType][];

/** `members` with the VM id field first when the shape has one. */
function withVmId(s: VmmShape, id: string, members: Members): Members {
  return s.vmIds ? [[id, "u32"], ...members] : members;
}

function createParams(s: VmmShape): StructLayout {
  const m: Members = [
    ["vcp_nmemranges", "u64"],
    ["vcp_ncpus", "u64"],
    ["vcp_memranges", array(abi.vm_mem_range, abi.VMM_MAX_MEM_RANGES)],
    ["vcp_name", array("u8", abi.VMM_MAX_NAME_LEN)],
    ["vcp_sev", "i32"],
    ["vcp_seves", "i32"],
    ["vcp_id", "u32"],
  ];
  if (s.fd === "after-id") m.push(["vcp_fd", "i32"]);
  m.push(["vcp_poscbit", "u32"]);
  if (s.fd === "after-poscbit") m.push(["vcp_fd", "i32"]);
  if (s.avic) m.push(["vcp_avic", "u8"]);
  m.push(["vcp_asid", array("u32", abi.VMM_MAX_VCPUS)]);
  if (s.fd === "end") m.push(["vcp_fd", "i32"]);
  return defineStruct("vm_create_params", m);
}

function runParams(s: VmmShape): StructLayout {
  const m: Members = withVmId(s, "vrp_vm_id", [
    ["vrp_vcpu_id", "u32"],
    ["vrp_inject", abi.vcpu_inject_event],
    ["vrp_intr_pending", "u8"],
  ]);
  if (s.avic) m.push(["vrp_cr8_threshold", "u8"]);
  m.push(["vrp_exit", "u64"], ["vrp_exit_reason", "u16"], ["vrp_irqready", "u8"]);
  return defineStruct("vm_run_params", m);
}

/** The structs of a shape. */
export function shapeStructs(s: VmmShape): VmmStructs {
  const structs: VmmStructs = {
    vm_mem_range: abi.vm_mem_range,
    vm_create_params: createParams(s),
    vcpu_segment_info: abi.vcpu_segment_info,
    vcpu_reg_state: abi.vcpu_reg_state,
    vm_exit: abi.vm_exit,
    vcpu_inject_event: abi.vcpu_inject_event,
    vm_run_params: runParams(s),
    vm_resetcpu_params: defineStruct(
      "vm_resetcpu_params",
      withVmId(s, "vrp_vm_id", [["vrp_vcpu_id", "u32"], ["vrp_init_state", abi.vcpu_reg_state]]),
    ),
    vm_intr_params: defineStruct(
      "vm_intr_params",
      withVmId(s, "vip_vm_id", [["vip_vcpu_id", "u32"], ["vip_intr", "u16"]]),
    ),
    vm_rwregs_params: defineStruct(
      "vm_rwregs_params",
      withVmId(s, "vrwp_vm_id", [
        ["vrwp_vcpu_id", "u32"],
        ["vrwp_mask", "u64"],
        ["vrwp_regs", abi.vcpu_reg_state],
      ]),
    ),
    vm_rwvmparams_params: defineStruct(
      "vm_rwvmparams_params",
      withVmId(s, "vpp_vm_id", [
        ["vpp_vcpu_id", "u32"],
        ["vpp_mask", "u32"],
        ["vpp_pvclock_system_gpa", "u64"],
        ["vpp_pvclock_version", "u32"],
      ]),
    ),
    vm_sharemem_params: defineStruct(
      "vm_sharemem_params",
      withVmId(s, "vsp_vm_id", [
        ["vsp_nmemranges", "u64"],
        ["vsp_memranges", array(abi.vm_mem_range, abi.VMM_MAX_MEM_RANGES)],
        ["vsp_va", array("u64", abi.VMM_MAX_MEM_RANGES)],
      ]),
    ),
  };
  if (s.fd === "none") {
    structs.vm_info_params = abi.vm_info_params;
    structs.vm_terminate_params = abi.vm_terminate_params;
  }
  return structs;
}

/** The requests the headers would define for `structs` (the `_IO*` macros over their sizes). */
export function requestsFor(structs: VmmStructs): VmmRequests {
  const G = abi.VMM_IOC_GROUP;
  const r = (name: string, value: number): IoctlRequest => Object.freeze({ name, value });
  const requests: VmmRequests = {
    VMM_IOC_CREATE: r("VMM_IOC_CREATE", openbsdIowr(G, 1, structs.vm_create_params.size)),
    VMM_IOC_RUN: r("VMM_IOC_RUN", openbsdIowr(G, 2, structs.vm_run_params.size)),
    VMM_IOC_RESETCPU: r("VMM_IOC_RESETCPU", openbsdIow(G, 5, structs.vm_resetcpu_params.size)),
    VMM_IOC_INTR: r("VMM_IOC_INTR", openbsdIow(G, 6, structs.vm_intr_params.size)),
    VMM_IOC_READREGS: r("VMM_IOC_READREGS", openbsdIowr(G, 7, structs.vm_rwregs_params.size)),
    VMM_IOC_WRITEREGS: r("VMM_IOC_WRITEREGS", openbsdIow(G, 8, structs.vm_rwregs_params.size)),
    VMM_IOC_READVMPARAMS: r(
      "VMM_IOC_READVMPARAMS",
      openbsdIowr(G, 9, structs.vm_rwvmparams_params.size),
    ),
    VMM_IOC_WRITEVMPARAMS: r(
      "VMM_IOC_WRITEVMPARAMS",
      openbsdIow(G, 10, structs.vm_rwvmparams_params.size),
    ),
    VMM_IOC_SHAREMEM: r("VMM_IOC_SHAREMEM", openbsdIowr(G, 11, structs.vm_sharemem_params.size)),
  };
  if (structs.vm_info_params) {
    requests.VMM_IOC_INFO = r("VMM_IOC_INFO", openbsdIowr(G, 3, structs.vm_info_params.size));
  }
  if (structs.vm_terminate_params) {
    requests.VMM_IOC_TERM = r("VMM_IOC_TERM", openbsdIow(G, 4, structs.vm_terminate_params.size));
  }
  return requests;
}

/** The table of a shape. */
export function abiForShape(shape: VmmShape, source = "built-in table"): VmmAbi {
  const structs = shapeStructs(shape);
  return {
    name: shapeName(shape),
    shape,
    era: shape.fd === "none" ? "A" : "B",
    structs,
    requests: requestsFor(structs),
    source,
  };
}

/** Every shape this back-end knows (era A needs its VM ids: without them no VM is named). */
export const KNOWN_SHAPES: readonly VmmShape[] = Object.freeze(
  (["none", "after-id", "after-poscbit", "end"] as const).flatMap((fd) =>
    [true, false].flatMap((vmIds) =>
      fd === "none" && !vmIds ? [] : [false, true].map((avic) => ({ fd, vmIds, avic }))
    )
  ),
);

/** The verified 2025-12 era-A table. */
export const ABI_2025_12: VmmAbi = abiForShape({ fd: "none", vmIds: true, avic: false });

/**
 * Release tables for hosts without a compiler: `uname -r` -> the layout of
 * that release's headers. Only releases whose headers match a verified
 * table are listed; a -current kernel needs the probe (its layout moves).
 */
export const RELEASE_TABLES: Readonly<Record<string, VmmAbi>> = Object.freeze({
  // Inferred from dates, not read from a release: vmm.h 1.13 (2025-12-17) was current until
  // the per-VM fd change of 2026-09, so 7.9 should carry it with vmmvar.h 1.117.
  "7.9": ABI_2025_12,
});

/**
 * -current snapshots by kernel build date (no release number tells them
 * apart): from each date on, the layout then current, or none where only
 * the probe can tell.
 */
export const SNAPSHOT_TABLES: readonly { from: string; abi?: VmmAbi; what: string }[] = Object
  .freeze([
    { from: "2025-12-17", abi: ABI_2025_12, what: "vmm.h 1.13" },
    {
      from: "2026-09-19",
      what: "the per-VM fd, whose place in vm_create_params only the probe can tell",
    },
  ]);

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** The build date (YYYY-MM-DD) in a `kern.version` line ("... #12: Mon Sep 21 10:11:12 MDT 2026"). */
export function kernelBuildDate(kernVersion: string): string | undefined {
  const m = /#\d+: \w{3} (\w{3}) +(\d{1,2}) [\d:]+ \S+ (\d{4})/.exec(kernVersion);
  const month = m ? MONTHS.indexOf(m[1]) : -1;
  if (!m || month < 0) return undefined;
  return `${m[3]}-${String(month + 1).padStart(2, "0")}-${m[2].padStart(2, "0")}`;
}

/**
 * The built-in table for a host that cannot probe: by release (`uname -r`),
 * or for a -current/-beta kernel by its build date; else why there is none.
 */
export function fallbackTable(
  release: string,
  kernVersion: string,
): { abi: VmmAbi; label: string } | { why: string } {
  if (/-(current|beta)\b/.test(kernVersion)) {
    const date = kernelBuildDate(kernVersion);
    if (!date) return { why: `cannot read the build date of "${kernVersion.split("\n")[0]}"` };
    const era = SNAPSHOT_TABLES.filter((t) => t.from <= date).at(-1);
    if (!era) return { why: `-current of ${date} is older than every built-in table` };
    if (!era.abi) return { why: `-current of ${date} has ${era.what}` };
    return { abi: era.abi, label: `the table for -current of ${date}` };
  }
  const abi = RELEASE_TABLES[release];
  if (!abi) {
    return {
      why: `release "${release}" has no built-in table (known: ${
        Object.keys(RELEASE_TABLES).join(", ")
      })`,
    };
  }
  return { abi, label: `the table for release ${release}` };
}
