/**
 * Opening /dev/vmm, telling the ABI era apart and creating a VM with
 * VMM_IOC_CREATE: the one place that knows how the kernel hands back a VM
 * (its id in era A, its own fd in era B) and the host mappings of its RAM.
 *
 * ABI eras (docs/openbsd-vmm-abi.md section 0): era A keeps everything on
 * /dev/vmm and names the VM by id; era B (2026 -current) returns a per-VM fd
 * from VMM_IOC_CREATE and answers ENOTTY to anything else on /dev/vmm.
 * The era is probed at start-up with a harmless VMM_IOC_INFO (vip_size 0):
 * success means era A, ENOTTY era B, and must agree with the layout the
 * back-end was given (`abi_tables.ts`, from the header probe). The VM is
 * then named only by what the kernel wrote: `vcp_id` in era A (written on
 * every successful CREATE), the fd in `vcp_fd` in era B (-1 until written,
 * confirmed with a VMM_IOC_READREGS on it). Whatever fails after CREATE
 * succeeded, the VM it made is destroyed (TERM, or close of every fd the
 * kernel may have put at a plausible `vcp_fd` place) before the error is
 * thrown, so no VM or fd outlives a failed start. vCPU ids are the
 * kernel's: 0..ncpus-1 in creation order (`vm_create`'s `vc_id`).
 *
 * The process must not be pledged yet when this runs (VMM_IOC_INFO and
 * VMM_IOC_CREATE need the "proc" promise besides "vmm").
 *
 * @module
 */

import type { IoctlRequest, Libc } from "../../ffi/libc.ts";
import { IoctlError, SyscallError } from "../../ffi/errno.ts";
import type { StructLayout } from "../../ffi/struct.ts";
import type { MemoryRegion } from "../../core/guest_memory.ts";
import * as abi from "./abi.ts";
import { abiForShape, KNOWN_SHAPES, shapeStructs, type VmmAbi } from "./abi_tables.ts";
import { hex, type VmmMemRange } from "./mem_ranges.ts";

/** The vmm(4) ABI era of the running kernel. */
export type VmmAbiEra = "A" | "B";

const PAGE = 4096;

/**
 * The era-B layout the vmm(4)-on-KVM emulation plays (`vcp_fd` at the end,
 * `*_vm_id` kept): one of the shapes of `abi_tables.ts`, not a claim about
 * any kernel.
 */
export const ABI_ERA_B_FD_AT_END: VmmAbi = abiForShape(
  { fd: "end", vmIds: true, avic: false },
  "the emulation's era-B layout",
);

/** `vm_create_params` of {@link ABI_ERA_B_FD_AT_END} (2664 bytes). */
export const vm_create_params_era_b: StructLayout = ABI_ERA_B_FD_AT_END.structs.vm_create_params;

/** VMM_IOC_CREATE of {@link ABI_ERA_B_FD_AT_END} (0xCA685601). */
export const VMM_IOC_CREATE_ERA_B: IoctlRequest = ABI_ERA_B_FD_AT_END.requests.VMM_IOC_CREATE;

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
  /** `vcp_id` as the kernel wrote it (era A); 0 in era B, where the fd names the VM. */
  id: number;
  /** The fd VM ioctls go to: /dev/vmm (era A) or the VM's own fd (era B). */
  fd: number;
  /** Host mappings of the RAM ranges. */
  regions: MemoryRegion[];
}

function createParams(layout: StructLayout, req: CreateRequest): Uint8Array {
  const name = new TextEncoder().encode(req.name).subarray(0, abi.VMM_MAX_NAME_LEN - 1);
  const p = layout.bytes({
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
  // -1 until the kernel writes it: never an fd this process could close by mistake.
  const v = new DataView(p.buffer);
  if (layout.fields.some((f) => f.name === "vcp_fd")) {
    v.setInt32(layout.offsetOf("vcp_fd"), -1, true);
  }
  return p;
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
  const view = new DataView(params.buffer);
  const regions: MemoryRegion[] = [];
  ranges.forEach((r, i) => {
    if (r.type === abi.VM_MEM_MMIO) return; // RAM and reserved ranges (the BIOS copy) are backed
    const va = view.getBigUint64(layout.offsetOf(`vcp_memranges[${i}].vmr_va`), true);
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

/** Whether `fd` is a VM fd: VMM_IOC_READREGS of vCPU 0 works on it. */
function isVmFd(libc: Libc, vmAbi: VmmAbi, fd: number, vmmFd: number): boolean {
  if (fd <= 2 || fd === vmmFd) return false;
  const rw = vmAbi.structs.vm_rwregs_params;
  const probe = rw.bytes({ vrwp_mask: BigInt(abi.VM_RWREGS_GPRS) });
  return libc.ioctlTry(fd, vmAbi.requests.VMM_IOC_READREGS, probe, [
    "ENOTTY",
    "EBADF",
    "EINVAL",
    "ENOENT",
    "EPERM",
  ]) >= 0;
}

/** The `vcp_fd` offsets of every known era-B shape of this struct size. */
function plausibleFdOffsets(size: number): number[] {
  const offsets = new Set<number>();
  for (const shape of KNOWN_SHAPES) {
    if (shape.fd === "none") continue;
    const l = shapeStructs(shape).vm_create_params;
    if (l.size === size) offsets.add(l.offsetOf("vcp_fd"));
  }
  return [...offsets];
}

/**
 * VMM_IOC_CREATE on /dev/vmm with the layout of `vmAbi`; the VM is its
 * `vcp_id` (era A) or the fd the kernel put in `vcp_fd` (era B). Every
 * failure after the kernel created the VM destroys it first.
 */
export function createVm(
  libc: Libc,
  vmmFd: number,
  vmAbi: VmmAbi,
  req: CreateRequest,
  devicePath = "/dev/vmm",
): CreatedVm {
  const layout = vmAbi.structs.vm_create_params;
  const request = vmAbi.requests.VMM_IOC_CREATE;
  const params = createParams(layout, req);
  try {
    issueCreate(libc, vmmFd, request, params, req);
  } catch (e) {
    if (e instanceof IoctlError && e.code === "ENOTTY") {
      throw new Error(
        `vmm(4) on ${devicePath} does not take VMM_IOC_CREATE 0x${request.value.toString(16)} ` +
          `(vm_create_params of ${layout.size} bytes, layout ${vmAbi.name}, ${vmAbi.source}): ` +
          `the kernel's layout is another one; probe this host's headers`,
        { cause: e },
      );
    }
    throw e;
  }
  const view = new DataView(params.buffer);
  return vmAbi.era === "A"
    ? namedById(libc, vmmFd, vmAbi, view, () => mappedRegions(libc, layout, params, req.ranges))
    : namedByFd(libc, vmmFd, vmAbi, view, () => mappedRegions(libc, layout, params, req.ranges));
}

function namedById(
  libc: Libc,
  vmmFd: number,
  vmAbi: VmmAbi,
  view: DataView,
  regions: () => MemoryRegion[],
): CreatedVm {
  // vm_create writes vcp_id on every success (vmm.c: `vcp->vcp_id = vm->vm_id`).
  const id = view.getUint32(vmAbi.structs.vm_create_params.offsetOf("vcp_id"), true);
  try {
    return { id, fd: vmmFd, regions: regions() };
  } catch (e) {
    const term = vmAbi.structs.vm_terminate_params;
    const TERM = vmAbi.requests.VMM_IOC_TERM;
    if (term && TERM) {
      libc.ioctlTry(vmmFd, TERM, term.bytes({ vtp_vm_id: id }), ["ENOENT", "EBUSY", "EPERM"]);
    }
    throw e;
  }
}

function namedByFd(
  libc: Libc,
  vmmFd: number,
  vmAbi: VmmAbi,
  view: DataView,
  regions: () => MemoryRegion[],
): CreatedVm {
  const layout = vmAbi.structs.vm_create_params;
  const at = layout.offsetOf("vcp_fd");
  const vmFd = view.getInt32(at, true);
  if (!isVmFd(libc, vmAbi, vmFd, vmmFd)) {
    // The kernel made a VM but not where the layout says: find and close it.
    const found = plausibleFdOffsets(layout.size).filter((o) => o !== at)
      .map((o) => ({ o, fd: view.getInt32(o, true) }))
      .filter(({ fd }) => isVmFd(libc, vmAbi, fd, vmmFd));
    for (const { fd } of found) libc.close(fd);
    const where = found.length > 0
      ? `the kernel put it at offset ${found.map((f) => f.o).join(", ")} (closed)`
      : `no plausible place holds one`;
    throw new Error(
      `VMM_IOC_CREATE succeeded but vcp_fd at offset ${at} holds "${vmFd}", not a VM fd ` +
        `(layout ${vmAbi.name}, ${vmAbi.source}); ${where}. Probe this host's headers`,
    );
  }
  try {
    return { id: 0, fd: vmFd, regions: regions() };
  } catch (e) {
    libc.close(vmFd);
    throw e;
  }
}
