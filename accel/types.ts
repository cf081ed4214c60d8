/**
 * The accelerator contract: every hypervisor back-end (KVM, OpenBSD vmm(4),
 * the fake) implements these interfaces, and nothing outside `accel/<name>/`
 * knows a back-end's quirks.
 *
 * An exit's way: `vcpu.run()` decodes the back-end's exit struct into a
 * {@link VcpuExit}; the dispatcher routes it to a bus; the device fills the
 * exit's `data` for reads; `vcpu.completeIo()` finishes the access the way
 * the hypervisor needs (KVM: nothing; vmm(4): RAX and RIP); run again.
 *
 * @module
 */

import type { GuestMemory } from "../core/guest_memory.ts";

export {
  type CpuState,
  type DescriptorTable,
  GPR_FIELDS,
  type Registers,
  type Segment,
  type SpecialRegisters,
} from "../core/cpu.ts";
import type { CpuState, Registers, SpecialRegisters } from "../core/cpu.ts";

/**
 * Why `run()` returned. `data` views are valid until the next `run()`.
 * For `io-in` and `mmio-read` the handler fills `data`, then calls
 * `completeIo()`.
 */
export type VcpuExit =
  | {
    kind: "io-in";
    port: number;
    /** Bytes per access: 1, 2 or 4. */
    size: number;
    /** Repetitions (string/REP I/O); `data` holds `size * count` bytes. */
    count: number;
    data: Uint8Array;
  }
  | { kind: "io-out"; port: number; size: number; count: number; data: Uint8Array }
  | { kind: "mmio-read"; gpa: number; data: Uint8Array }
  | { kind: "mmio-write"; gpa: number; data: Uint8Array }
  | { kind: "halt" }
  | { kind: "interrupt-window" }
  | { kind: "interrupted" }
  | { kind: "shutdown"; reason: "triple-fault" | "reset" | "poweroff" | "system-event" }
  | {
    kind: "fail";
    /** One line for the user, e.g. "emulation failure at RIP 0x100004: 0f 01 ...". */
    reason: string;
    /** The back-end's raw exit reason, for the log. */
    raw: number;
  };

/** The exit kinds, for exhaustive tables. */
export type VcpuExitKind = VcpuExit["kind"];

/** One virtual CPU; used only from the thread that runs it. */
export interface Vcpu {
  readonly id: number;
  /** Enters the guest until the next exit. */
  run(): VcpuExit;
  /** Finishes the access of the last io-in/io-out/mmio exit (after the device ran). */
  completeIo(): void;
  /** Marks the vCPU paused (between runs); the next `run()` resumes it. */
  pause(): void;
  /** Cached; reading does not cost an ioctl twice. */
  getRegisters(): Registers;
  /** Marks the registers dirty; they reach the hypervisor before the next run. */
  setRegisters(regs: Registers): void;
  getSpecialRegisters(): SpecialRegisters;
  setSpecialRegisters(sregs: SpecialRegisters): void;
  /** Whether an external interrupt could be injected now (IF=1, no interrupt shadow). */
  readyForInterrupt(): boolean;
  /** Injects external interrupt `vector` (only when {@link readyForInterrupt}). */
  injectInterrupt(vector: number): void;
  /** Injects an NMI (local APIC NMI delivery; back-ends without it omit this). */
  injectNmi?(): void;
  /** Asks for an `interrupt-window` exit as soon as the guest can take an interrupt. */
  requestInterruptWindow(wanted: boolean): void;
  /** " at RIP 0x... (CS base 0x...): <bytes>" for reports; "" when unavailable. */
  describeLocation?(): string;
  /**
   * What another thread needs to kick this vCPU out of `run()` (see
   * {@link Accel.kick}); structured-clonable.
   */
  kickToken(): KickToken;
  close(): void;
}

/** Opaque data that lets another thread kick a vCPU (thread id, kvm_run address). */
export type KickToken = Record<string, string | number | boolean>;

/** How interrupts reach the guest. */
export type IrqchipMode = "user" | "kernel";

/** What a back-end needs to create a VM. */
export interface VmOptions {
  name: string;
  /**
   * Guest RAM ranges (page aligned, sorted, not overlapping); the machine's layout decides.
   * `reserved`: backed memory that is not RAM to the guest (the BIOS flash copy below
   * 4 GiB); vmm(4) gets it as VM_MEM_RESERVED, as vmd lays it out.
   */
  ram: readonly { gpa: number; size: number; reserved?: boolean }[];
  vcpus: number;
  irqchip: IrqchipMode;
}

/** Device memory mapped into a guest by {@link Vm.mapDeviceMemory}. */
export interface DeviceMapping {
  /** Removes the mapping (the host memory stays the caller's). */
  unmap(): void;
}
/**
 * What another thread needs to reach the same VM (its fd, where its RAM is
 * mapped); structured-clonable. See {@link Vm.share} and {@link Accel.attachVm}.
 */
export type VmShare = Record<string, string | number | boolean | (number | string)[]>;

/** A virtual machine: memory, vCPUs and (for in-kernel irqchips) interrupt lines. */
export interface Vm {
  /** For a vCPU thread of its own per vCPU (back-ends that support several). */
  share?(): VmShare;
  /** Guest RAM, as the back-end mapped it. */
  readonly memory: GuestMemory;
  /** Creates vCPU `id` with `state` as its initial architectural state. */
  createVcpu(id: number, state: CpuState): Vcpu;
  /** Drives an interrupt line of the in-kernel irqchip (irqchip "kernel" only). */
  setIrqLine(irq: number, high: boolean): void;
  /** Injects an MSI into the in-kernel APICs (irqchip "kernel" only). */
  signalMsi?(address: number, data: number): void;
  /** Makes ISA `irq` level-triggered in the in-kernel PIC's ELCR (irqchip "kernel" only). */
  setIrqLevelTriggered?(irq: number): void;
  /**
   * Maps `size` bytes of host memory at `hostAddress` (page aligned, owned by
   * the caller) into the guest at `gpa`, so guest accesses there do not exit:
   * device memory such as a framebuffer. Absent where a VM's memory is fixed
   * when it is created (vmm(4)).
   */
  mapDeviceMemory?(gpa: number, hostAddress: bigint, size: number): DeviceMapping;
  close(): void;
}

/** A hypervisor back-end. */
export interface Accel {
  /** "kvm", "openbsd", "fake", ... */
  readonly name: string;
  createVm(options: VmOptions): Vm;
  /**
   * The VM another thread shared (same fd and RAM, owned by the sharer:
   * closing the returned Vm releases nothing of it).
   */
  attachVm?(share: VmShare, options: VmOptions): Vm;
  /** Kicks a vCPU (from any thread) out of `run()`; `run()` then returns `interrupted`. */
  kick(token: KickToken): void;
  /** Releases the hypervisor device (after every VM of it is closed). */
  close?(): void;
}
