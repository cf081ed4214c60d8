/**
 * The OpenBSD vmm(4) back-end: /dev/vmm through the {@link Libc} interface
 * only, so the vmm(4)-on-KVM emulation and recorded transcripts can stand in
 * for the kernel. This file holds the accelerator and its VMs; the jobs vmm(4)
 * leaves to userspace live beside it:
 * - `create.ts`: opening /dev/vmm, the ABI era, VMM_IOC_CREATE;
 * - `mem_ranges.ts`: the VM's RAM and MMIO ranges;
 * - `vcpu.ts`: the run loop, register image and interrupt injection;
 * - `exits.ts`, `mmio_exit.ts`: exit decoding and completion;
 * - `regs.ts`: `vcpu_reg_state` codecs.
 *
 * @module
 */

import type { Libc } from "../../ffi/libc.ts";
import { GuestMemory } from "../../core/guest_memory.ts";
import { PCI_HOLE_BASE } from "../../core/layout.ts";
import type { Accel, CpuState, KickToken, Vm, VmOptions } from "../types.ts";
import { kickVcpu } from "../kick.ts";
import * as abi from "./abi.ts";
import { createVmEraA, createVmEraB, detectVmmEra, openVmm, type VmmAbiEra } from "./create.ts";
import { type VmmMemRange, vmmMemRanges } from "./mem_ranges.ts";
import { OpenbsdVcpu } from "./vcpu.ts";

// Names the test machinery (emulation, transcripts) still imports from here.
export { vm_create_params_era_b, VMM_IOC_CREATE_ERA_B, type VmmAbiEra } from "./create.ts";
export { encodeVcpuRegState } from "./regs.ts";
export { OpenbsdVcpu } from "./vcpu.ts";

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
    const req = { name: options.name, vcpus: options.vcpus, ranges: this.ranges };
    const created = accel.era === "A"
      ? createVmEraA(accel.libc, accel.fd, req)
      : createVmEraB(accel.libc, accel.fd, accel.devicePath, req);
    this.id = created.id;
    this.fd = created.fd;
    this.memory = new GuestMemory(created.regions);
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
