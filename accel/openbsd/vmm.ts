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
import { ABI_2025_12, type VmmAbi } from "./abi_tables.ts";
import { createVm, detectVmmEra, openVmm, type VmmAbiEra } from "./create.ts";
import { openbsdProbeHost, type ProbeHost, resolveVmmAbi } from "./header_probe.ts";
import { type VmmMemRange, vmmMemRanges } from "./mem_ranges.ts";
import { OpenbsdVcpu } from "./vcpu.ts";

/** Options of {@link OpenbsdAccel}. */
export interface OpenbsdAccelOptions {
  /** Where the PCI hole starts (VM_MEM_MMIO up to 4 GiB); default the machine layout's. */
  pciHoleBase?: number;
  /**
   * The kernel's layout (`header_probe.ts` finds it on a real host); default
   * the verified 2025-12 era-A table. Must agree with the era the kernel shows.
   */
  abi?: VmmAbi;
}

/** The OpenBSD vmm(4) accelerator. */
export class OpenbsdAccel implements Accel {
  readonly name = "openbsd";
  readonly libc: Libc;
  /** The /dev/vmm fd. */
  readonly fd: number;
  readonly era: VmmAbiEra;
  /** The layouts and requests every ioctl uses. */
  readonly abi: VmmAbi;
  readonly devicePath: string;
  readonly pciHoleBase: number;
  #closed = false;

  constructor(libc: Libc, devicePath = "/dev/vmm", options: OpenbsdAccelOptions = {}) {
    abi.assertOpenbsdAbi();
    this.libc = libc;
    this.devicePath = devicePath;
    this.pciHoleBase = options.pciHoleBase ?? PCI_HOLE_BASE;
    this.abi = options.abi ?? ABI_2025_12;
    this.fd = openVmm(libc, devicePath);
    try {
      this.era = detectVmmEra(libc, this.fd);
      if (this.era !== this.abi.era) {
        throw new Error(
          this.era === "B"
            ? `vmm(4) on this host has the per-VM fd ABI (era B: ${devicePath} answers ENOTTY ` +
              `to VMM_IOC_INFO) but the layout given is ${this.abi.name} (${this.abi.source}): ` +
              `probe this host's headers (era B layouts differ between kernels)`
            : `vmm(4) on this host keeps VMs on ${devicePath} (era A) but the layout given is ` +
              `${this.abi.name} (${this.abi.source}): the headers do not match the kernel`,
        );
      }
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

/**
 * The accelerator of this OpenBSD host, with the layout of its own headers
 * (`header_probe.ts`: probed once per kernel, or the release's table when
 * there is no compiler); `report` gets the one line saying which.
 */
export function openOpenbsdAccel(
  libc: Libc,
  host: ProbeHost = openbsdProbeHost(),
  report: (line: string) => void = (line) => console.error(line),
): OpenbsdAccel {
  const { abi, message } = resolveVmmAbi(host);
  report(message);
  return new OpenbsdAccel(libc, "/dev/vmm", { abi });
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
    const created = createVm(accel.libc, accel.fd, accel.abi, req, accel.devicePath);
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
    const term = this.accel.abi.structs.vm_terminate_params;
    const TERM = this.accel.abi.requests.VMM_IOC_TERM;
    if (this.accel.era === "A" && term && TERM) {
      libc.ioctlTry(this.fd, TERM, term.bytes({ vtp_vm_id: this.id }), ["ENOENT"]);
    } else {
      libc.close(this.fd);
    }
  }
}
