/**
 * Opening /dev/vmm, telling the ABI era apart and creating a VM with
 * VMM_IOC_CREATE: the one place that knows how the kernel hands back a VM
 * (its id in era A, its own fd in era B) and the host mappings of its RAM.
 *
 * ABI eras (docs/openbsd-vmm-abi.md section 0): era A keeps everything on
 * /dev/vmm and names the VM by id; era B (2026 -current) returns a per-VM fd
 * from VMM_IOC_CREATE and answers ENOTTY to anything else on /dev/vmm.
 * The era is probed at start-up with a harmless VMM_IOC_INFO (vip_size 0):
 * success means era A, ENOTTY era B. Era B's vm_create_params was not
 * available to verify; this back-end tries one hypothesis (`vcp_fd` appended
 * after `vcp_asid`, {@link vm_create_params_era_b}) and confirms the
 * returned fd with a VMM_IOC_READREGS on it. Anything else fails with a
 * message naming what was expected.
 *
 * The process must not be pledged yet when this runs (VMM_IOC_INFO and
 * VMM_IOC_CREATE need the "proc" promise besides "vmm").
 *
 * @module
 */

import type { IoctlRequest, Libc } from "../../ffi/libc.ts";
import { IoctlError, SyscallError } from "../../ffi/errno.ts";
import { openbsdIowr } from "../../ffi/ioctl.ts";
import { array, defineStruct, type StructLayout } from "../../ffi/struct.ts";
import type { MemoryRegion } from "../../core/guest_memory.ts";
import * as abi from "./abi.ts";
import { hex, type VmmMemRange } from "./mem_ranges.ts";

/** The vmm(4) ABI era of the running kernel. */
export type VmmAbiEra = "A" | "B";

const PAGE = 4096;

/**
 * Era B `struct vm_create_params` as this back-end assumes it: era A's
 * fields with `int vcp_fd` appended (2664 bytes). UNVERIFIED: the header was
 * not available.
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

/** Opens the vmm(4) device with errors that say what to do. */
export function openVmm(libc: Libc, path: string): number {
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

/** What VMM_IOC_CREATE is asked for. */
export interface CreateRequest {
  name: string;
  vcpus: number;
  ranges: readonly VmmMemRange[];
}

/** A VM the kernel created. */
export interface CreatedVm {
  /** `vcp_id` (era A; what the kernel wrote in era B). */
  id: number;
  /** The fd VM ioctls go to: /dev/vmm (era A) or the VM's own fd (era B). */
  fd: number;
  /** Host mappings of the RAM ranges. */
  regions: MemoryRegion[];
}

function createParams(layout: StructLayout, req: CreateRequest): Uint8Array {
  const name = new TextEncoder().encode(req.name).subarray(0, abi.VMM_MAX_NAME_LEN - 1);
  return layout.bytes({
    vcp_nmemranges: BigInt(req.ranges.length),
    vcp_ncpus: BigInt(req.vcpus),
    vcp_memranges: req.ranges.map((r) => ({
      vmr_gpa: BigInt(r.gpa),
      vmr_va: 0n,
      vmr_size: BigInt(r.size),
      vmr_type: r.type,
    })),
    vcp_name: name,
  });
}

function issueCreate(
  libc: Libc,
  fd: number,
  request: IoctlRequest,
  params: Uint8Array,
  req: CreateRequest,
): void {
  try {
    libc.ioctl(fd, request, params);
  } catch (e) {
    if (e instanceof IoctlError) {
      if (e.code === "ENOMEM") {
        throw new Error(
          `Cannot create VM "${req.name}": vmm(4) is out of memory or vCPUs ` +
            `(VMM_IOC_CREATE: ENOMEM)`,
          { cause: e },
        );
      }
      if (e.code === "EINVAL") {
        const list = req.ranges.map((r) => `${hex(r.gpa)}+${hex(r.size)}`).join(", ");
        throw new Error(
          `vmm(4) rejected the memory ranges of VM "${req.name}" (${list}) or its ` +
            `vCPU count "${req.vcpus}" (VMM_IOC_CREATE: EINVAL)`,
          { cause: e },
        );
      }
    }
    throw e;
  }
}

/** Host mappings the kernel made: one region per RAM range, from `vmr_va`. */
function mappedRegions(
  libc: Libc,
  layout: StructLayout,
  params: Uint8Array,
  ranges: readonly VmmMemRange[],
): MemoryRegion[] {
  const d = layout.decode(new DataView(params.buffer));
  const regions: MemoryRegion[] = [];
  ranges.forEach((r, i) => {
    if (r.type !== abi.VM_MEM_RAM) return;
    const va = d.vcp_memranges[i].vmr_va as bigint;
    if (va === 0n || va % BigInt(PAGE) !== 0n) {
      throw new Error(
        `VMM_IOC_CREATE returned host address "${hex(va)}" for memory range ${i}: ` +
          `expected a page-aligned mapping`,
      );
    }
    regions.push({ gpa: r.gpa, bytes: libc.memoryAt(va, r.size), hostAddress: va });
  });
  return regions;
}

/** VMM_IOC_CREATE on /dev/vmm in era A: the VM is its `vcp_id`. */
export function createVmEraA(libc: Libc, vmmFd: number, req: CreateRequest): CreatedVm {
  const params = createParams(abi.vm_create_params, req);
  issueCreate(libc, vmmFd, abi.VMM_IOC_CREATE, params, req);
  const id = new DataView(params.buffer).getUint32(
    abi.vm_create_params.offsetOf("vcp_id"),
    true,
  );
  try {
    return {
      id,
      fd: vmmFd,
      regions: mappedRegions(libc, abi.vm_create_params, params, req.ranges),
    };
  } catch (e) {
    libc.ioctlTry(
      vmmFd,
      abi.VMM_IOC_TERM,
      abi.vm_terminate_params.bytes({ vtp_vm_id: id }),
      ["ENOENT", "EBUSY", "EPERM"],
    );
    throw e;
  }
}

/** VMM_IOC_CREATE in era B: the VM is the fd the kernel put in `vcp_fd`. */
export function createVmEraB(
  libc: Libc,
  vmmFd: number,
  devicePath: string,
  req: CreateRequest,
): CreatedVm {
  const layout = vm_create_params_era_b;
  const params = createParams(layout, req);
  const expected = `vm_create_params of ${layout.size} bytes with "int vcp_fd" after ` +
    `vcp_asid (VMM_IOC_CREATE 0x${VMM_IOC_CREATE_ERA_B.value.toString(16)})`;
  try {
    issueCreate(libc, vmmFd, VMM_IOC_CREATE_ERA_B, params, req);
  } catch (e) {
    if (e instanceof IoctlError && e.code === "ENOTTY") {
      throw new Error(
        `vmm(4) on this host has the per-VM fd ABI (era B: ${devicePath} answers ` +
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
  const ok = vmFd > 2 && vmFd !== vmmFd &&
    libc.ioctlTry(vmFd, abi.VMM_IOC_READREGS, probe, ["ENOTTY", "EBADF", "EINVAL", "ENOENT"]) >=
      0;
  if (!ok) {
    throw new Error(
      `vmm(4) era B: VMM_IOC_CREATE succeeded but vcp_fd "${vmFd}" is not a VM fd ` +
        `(VMM_IOC_READREGS on it failed): cannot confirm the expected layout, ${expected}`,
    );
  }
  try {
    return { id, fd: vmFd, regions: mappedRegions(libc, layout, params, req.ranges) };
  } catch (e) {
    libc.close(vmFd);
    throw e;
  }
}
