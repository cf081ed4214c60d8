/**
 * A back-end with no hypervisor behind it, so the real {@link Machine}
 * (buses, legacy devices, PCI, virtio, loaded kernel) can be built and driven
 * by tests and fuzzers on any machine: its vCPU never runs; the caller plays
 * the guest by calling the buses directly, as the run loop's exit dispatch
 * would. Guest RAM is a {@link GuardedMemory}: every region sits between
 * canary bytes in one host buffer, so a device that writes outside guest RAM
 * through a view is caught, and every access the gateway refused is counted.
 *
 * @module
 */

import type { Accel, CpuState, Vcpu, Vm, VmOptions } from "../../accel/types.ts";
import { GuestMemory, GuestMemoryError } from "../../core/guest_memory.ts";
import type { VmConfig } from "../../config/schema.ts";
import { Machine, type MachineOptions } from "../../machine/machine.ts";
import { writeElf } from "../../loaders/test_helpers.ts";

/** Canary bytes around each region of a {@link GuardedMemory}. */
const GUARD_BYTES = 4096;
const CANARY = 0xa5;

/** Guest memory whose regions are fenced by canaries; counts the accesses it refused. */
export class GuardedMemory extends GuestMemory {
  readonly #whole: Uint8Array[];
  /** Accesses refused as outside guest RAM (a device must catch these, never crash). */
  refused = 0;

  constructor(layout: readonly { gpa: number; size: number }[]) {
    const whole = layout.map(({ size }) =>
      new Uint8Array(size + 2 * GUARD_BYTES).fill(CANARY, 0, GUARD_BYTES)
        .fill(CANARY, size + GUARD_BYTES)
    );
    super(layout.map(({ gpa, size }, i) => ({
      gpa,
      bytes: whole[i].subarray(GUARD_BYTES, GUARD_BYTES + size),
    })));
    this.#whole = whole;
  }

  override slice(gpa: number, length: number): Uint8Array {
    try {
      return super.slice(gpa, length);
    } catch (e) {
      if (e instanceof GuestMemoryError) this.refused++;
      throw e;
    }
  }

  /** Where a canary was overwritten (a write outside guest RAM), or undefined. */
  brokenGuard(): string | undefined {
    for (const [i, w] of this.#whole.entries()) {
      const size = w.length - 2 * GUARD_BYTES;
      for (const [from, to] of [[0, GUARD_BYTES], [GUARD_BYTES + size, w.length]]) {
        for (let o = from; o < to; o++) {
          if (w[o] !== CANARY) return `region ${i}: guard byte ${o - GUARD_BYTES} changed`;
        }
      }
    }
    return undefined;
  }
}

/** A vCPU that is never entered. */
function idleVcpu(id: number): Vcpu {
  const never = (): never => {
    throw new Error("the null back-end's vCPU does not run");
  };
  return {
    id,
    run: never,
    completeIo: () => {},
    pause: () => {},
    getRegisters: never,
    setRegisters: () => {},
    getSpecialRegisters: never,
    setSpecialRegisters: () => {},
    readyForInterrupt: () => false,
    injectInterrupt: () => {},
    requestInterruptWindow: () => {},
    kickToken: () => ({}),
    close: () => {},
  };
}

/** The back-end: guarded RAM, an idle vCPU, in-kernel IRQ lines recorded. */
export class NullAccel implements Accel {
  readonly name = "null";
  memory?: GuardedMemory;
  /** Levels of in-kernel irqchip lines (irqchip "kernel"). */
  readonly lines = new Map<number, boolean>();

  createVm(options: VmOptions): Vm {
    const memory = new GuardedMemory(options.ram);
    this.memory = memory;
    return {
      memory,
      createVcpu: (id: number, _state: CpuState) => idleVcpu(id),
      setIrqLine: (irq, high) => this.lines.set(irq, high),
      setIrqLevelTriggered: () => {},
      close: () => {},
    };
  }

  kick(): void {}
}

/** A minimal ELF64 kernel the Linux loader accepts (never run). */
export function tinyKernel(): Uint8Array {
  return writeElf({
    elfClass: 64,
    entry: 0x1000000n,
    segments: [{ vaddr: 0x1000000n, paddr: 0x1000000n, data: new Uint8Array(64).fill(0xf4) }],
  });
}

/** A config for a null machine: 64 MiB, user irqchip, exit port 0xf4, no files. */
export function nullConfig(extra: Partial<VmConfig> = {}): VmConfig {
  return {
    vm: { name: "null", memoryBytes: 64 * 2 ** 20, vcpus: 1, accel: "kvm", irqchip: "user" },
    boot: { kernel: "tiny", cmdline: "" },
    disks: [],
    interfaces: [],
    console: { serial: "none" },
    debug: { exitPort: 0xf4 },
    ...extra,
  };
}

/** The real machine on the null back-end; `accel.memory` is its guarded RAM. */
export function nullMachine(
  config: VmConfig = nullConfig(),
  options: Partial<MachineOptions> = {},
): { machine: Machine; accel: NullAccel; memory: GuardedMemory } {
  const accel = new NullAccel();
  const machine = new Machine({
    config,
    accel,
    serialOut: () => {},
    kernelImage: tinyKernel(),
    clock: { nowNs: () => 0 },
    ...options,
  });
  return { machine, accel, memory: accel.memory! };
}
