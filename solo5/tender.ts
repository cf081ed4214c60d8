/**
 * The tender machine: a Solo5 hvt unikernel on any accelerator. No PC
 * devices, no interrupts: guest memory, one vCPU in 64-bit mode, the
 * manifest's devices and the hypercall ports. The run loop turns every
 * `outl` to a hypercall port into a call of {@link Hypercalls} and anything
 * else the guest touches into the end of the VM with a clear reason.
 *
 * @example
 * ```ts
 * import { KvmAccel } from "../accel/kvm/kvm.ts";
 * import { openLibc } from "../ffi/libc.ts";
 * import { VcpuControl } from "../machine/vcpu_channel.ts";
 * import { Solo5Machine } from "./tender.ts";
 * // const m = new Solo5Machine({ config, accel: new KvmAccel(openLibc()), output: (b) => {} });
 * // const outcome = m.run(new VcpuControl());
 * ```
 * @module
 */

import type { Accel, Vcpu, Vm } from "../accel/types.ts";
import { formatCpuState } from "../accel/format.ts";
import type { VmConfig } from "../config/schema.ts";
import { type Clock, hostClock } from "../core/device.ts";
import { type Libc, openLibc } from "../ffi/libc.ts";
import { Activity, Command, type VcpuControl } from "../machine/vcpu_channel.ts";
import { checkHostMemory, type Outcome } from "../machine/machine.ts";
import { hex } from "../loaders/common.ts";
import { readImageFile } from "../loaders/image_file.ts";
import {
  BOOT_INFO,
  HVT_HYPERCALL_MAX,
  HVT_HYPERCALL_PIO_BASE,
  HVT_RING_KICK_PIO_BASE,
  X86_BOOT_INFO_BASE,
} from "./abi.ts";
import { attachDevices, type AttachedDevices, type AttachOptions } from "./devices.ts";
import { GuestFault, type HypercallResult, Hypercalls } from "./hypercalls.ts";
import {
  inspectUnikernel,
  loadUnikernel,
  type Solo5Image,
  type UnikernelMemory,
  unikernelMemory,
} from "./loader.ts";
import { encodeManifest } from "./manifest.ts";
import { guestTscHz } from "./tsc.ts";

/** What building a tender machine needs. */
export interface Solo5MachineOptions {
  /** `boot.kernel` is the unikernel, `boot.cmdline` its arguments, disks/interfaces by name. */
  config: VmConfig;
  accel: Accel;
  /** Where PUTS output goes (called synchronously on the vCPU thread). */
  output: (bytes: Uint8Array) => void;
  clock?: Clock;
  /** The image, when not read from `config.boot.kernel`. */
  kernelImage?: Uint8Array;
  /** Overrides the guest's TSC frequency (tests); otherwise asked of the hypervisor. */
  tscHz?: number;
  /** The host C library (TSC probing); default the real one. */
  libc?: Libc;
  /** Device openers (tests). */
  attach?: Omit<AttachOptions, "vmName">;
}

/** Process exit status of a guest that ended with solo5_exit(status): the status itself. */
export function solo5ExitOutcome(status: number): Outcome {
  // Statuses are ints in the ABI; a process status is 0-255.
  return { kind: "exit-port", status: status & 0xff };
}

/** A unikernel loaded into a VM, ready to run. */
export class Solo5Machine {
  readonly config: VmConfig;
  readonly vm: Vm;
  readonly vcpu: Vcpu;
  readonly image: Solo5Image;
  readonly layout: UnikernelMemory;
  readonly devices: AttachedDevices;
  readonly hypercalls: Hypercalls;
  readonly clock: Clock;
  /** Loader summary (what `up -v` prints). */
  readonly boot: { summary: string };
  /** The trap frame of an abort, when the guest passed one. */
  lastTrap?: Record<string, bigint>;
  #control?: VcpuControl;

  constructor(options: Solo5MachineOptions) {
    const { config, accel } = options;
    this.config = config;
    this.clock = options.clock ?? hostClock;
    const name = config.boot.kernel ?? "(no kernel)";
    const data = options.kernelImage ?? readImageFile(name, config.vm.memoryBytes, "kernel");
    this.image = inspectUnikernel(data, name);
    this.devices = attachDevices(this.image.manifest, config.disks, config.interfaces, {
      vmName: config.vm.name,
      owner: config.vm.owner,
      ...options.attach,
    });
    try {
      this.layout = unikernelMemory(config.vm.memoryBytes, this.devices.nets.size > 0);
      checkHostMemory(this.layout.allocBytes);
      this.vm = accel.createVm({
        name: config.vm.name,
        ram: [{ gpa: 0, size: this.layout.allocBytes }],
        vcpus: 1,
        irqchip: "user",
      });
    } catch (e) {
      this.devices.close();
      throw e;
    }
    try {
      const loaded = loadUnikernel(data, this.image, {
        memory: this.vm.memory,
        layout: this.layout,
        cmdline: config.boot.cmdline,
        manifest: encodeManifest(this.image.manifest),
        tscHz: options.tscHz ?? 0,
        name,
      });
      this.vcpu = this.vm.createVcpu(0, loaded.state);
      // KVM tells the TSC rate per vCPU, so it is filled in once the vCPU exists.
      const tscHz = options.tscHz ?? guestTscHz(this.vcpu, options.libc ?? openLibc());
      this.vm.memory.writeU64(X86_BOOT_INFO_BASE + BOOT_INFO.CPU_CYCLE_FREQ, BigInt(tscHz));
      this.boot = {
        summary: `${loaded.summary}, TSC ${(tscHz / 1e6).toFixed(1)} MHz` +
          (this.devices.blocks.size + this.devices.nets.size > 0
            ? `, devices ${
              [...this.devices.blocks.values(), ...this.devices.nets.values()].map((d) =>
                `"${d.name}"`
              ).join(", ")
            }`
            : ""),
      };
      this.hypercalls = new Hypercalls({
        memory: this.vm.memory,
        guestBytes: this.layout.guestBytes,
        devices: this.devices,
        output: options.output,
        nowNs: () => this.clock.nowNs(),
        ringGpa: this.layout.ringGpa,
        waiter: {
          wait: (ms) => this.#wait(ms),
        },
      });
      this.hypercalls.initRing();
    } catch (e) {
      this.devices.close();
      (this as { vcpu?: Vcpu }).vcpu?.close();
      this.vm.close();
      throw e;
    }
  }

  /** Poll's sleep: false when the host asked the VM to stop (a pause is served here). */
  #wait(ms: number): boolean {
    const control = this.#control;
    if (!control) {
      if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      return true;
    }
    const seq = control.wakeSeq;
    if (control.command === Command.PAUSE) this.#pause(control);
    if (control.command === Command.STOP) return false;
    control.activity = Activity.HALTED;
    control.sleep(seq, ms);
    control.activity = Activity.IN_VMM;
    return control.command !== Command.STOP;
  }

  /** Runs the guest until it halts, fails or the host stops it. */
  run(control: VcpuControl): Outcome {
    this.#control = control;
    control.publishDeadline(Infinity);
    control.activity = Activity.IN_VMM;
    try {
      return this.#loop(control);
    } catch (e) {
      if (e instanceof GuestFault) {
        return { kind: "failed", reason: `${e.message}\n${this.#dump()}` };
      }
      return { kind: "failed", reason: e instanceof Error ? e.message : String(e) };
    } finally {
      control.activity = Activity.DONE;
    }
  }

  #dump(): string {
    try {
      return formatCpuState({
        regs: this.vcpu.getRegisters(),
        sregs: this.vcpu.getSpecialRegisters(),
      });
    } catch (e) {
      return `(registers unavailable: ${e instanceof Error ? e.message : e})`;
    }
  }

  #fail(reason: string): Outcome {
    return {
      kind: "failed",
      reason: `${reason}${this.vcpu.describeLocation?.() ?? ""}\n${this.#dump()}`,
    };
  }

  #loop(control: VcpuControl): Outcome {
    const vcpu = this.vcpu;
    for (;;) {
      const command = control.command;
      if (command === Command.STOP) return { kind: "stopped", detail: vcpu.describeLocation?.() };
      if (command === Command.PAUSE) {
        this.#pause(control);
        continue;
      }
      const exit = vcpu.run();
      switch (exit.kind) {
        case "io-out": {
          const nr = exit.port - HVT_HYPERCALL_PIO_BASE;
          if (exit.size === 4 && exit.count === 1 && nr >= 0 && nr < HVT_HYPERCALL_MAX) {
            const gpa = new DataView(exit.data.buffer, exit.data.byteOffset, 4).getUint32(0, true);
            const r = this.hypercalls.handle(nr, gpa);
            const o = this.#after(r);
            if (o) return o;
            vcpu.completeIo();
            break;
          }
          if (exit.size === 4 && exit.port === HVT_RING_KICK_PIO_BASE && this.layout.ringGpa) {
            this.hypercalls.serveRing();
            vcpu.completeIo();
            break;
          }
          return this.#fail(
            `Invalid guest port access: OUT of ${exit.size} byte(s) x${exit.count} to port ` +
              `${hex(exit.port)} (hvt guests only write 4 bytes to ports ` +
              `${hex(HVT_HYPERCALL_PIO_BASE + 1)}-${
                hex(HVT_HYPERCALL_PIO_BASE + HVT_HYPERCALL_MAX - 1)
              })`,
          );
        }
        case "io-in":
          return this.#fail(
            `Invalid guest port access: IN of ${exit.size} byte(s) from ${hex(exit.port)}`,
          );
        case "mmio-read":
        case "mmio-write":
          return this.#fail(
            `Invalid guest memory access: ${exit.kind === "mmio-read" ? "read" : "write"} of ` +
              `${exit.data.length} byte(s) at ${hex(exit.gpa)}, outside guest memory`,
          );
        case "halt":
          return this.#fail("Guest executed HLT: an hvt guest has no interrupts to wake it");
        case "interrupt-window":
        case "interrupted":
          break;
        case "shutdown":
          if (exit.reason === "triple-fault") {
            return { kind: "triple-fault", detail: this.#dump() };
          }
          return this.#fail(`Unexpected shutdown of the vCPU (${exit.reason})`);
        case "fail":
          return this.#fail(exit.reason);
      }
    }
  }

  #after(r: HypercallResult): Outcome | undefined {
    switch (r.kind) {
      case "continue":
        return undefined;
      case "stopped":
        return { kind: "stopped", detail: this.vcpu.describeLocation?.() };
      case "halt":
        this.lastTrap = r.trap;
        return solo5ExitOutcome(r.status);
    }
  }

  #pause(control: VcpuControl): void {
    this.vcpu.pause();
    control.activity = Activity.PAUSED;
    control.ackPause();
    for (;;) {
      const seq = control.wakeSeq;
      if (control.command !== Command.PAUSE) break;
      control.sleep(seq, Infinity);
    }
    control.activity = Activity.IN_VMM;
  }

  close(): void {
    try {
      this.devices.close();
      this.vcpu.close();
    } finally {
      this.vm.close();
    }
  }
}

/** One line describing a trap frame from an abort cookie. */
export function describeTrap(trap: Record<string, bigint>): string {
  return Object.entries(trap).map(([k, v]) => `${k}=${hex(v)}`).join(" ");
}
