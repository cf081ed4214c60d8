/**
 * The part of a vCPU every back-end shares: the lifecycle transitions around
 * `run()` and `completeIo()`, so no back-end can skip or reorder them.
 *
 * @module
 */

import { Lifecycle, type VcpuState } from "./lifecycle.ts";
import type { KickToken, Registers, SpecialRegisters, Vcpu, VcpuExit } from "./types.ts";

/** Exits whose access must be completed before the vCPU runs again. */
function needsCompletion(exit: VcpuExit): boolean {
  return exit.kind === "io-in" || exit.kind === "io-out" || exit.kind === "mmio-read" ||
    exit.kind === "mmio-write";
}

/** Base class: back-ends implement the `do*` hooks. */
export abstract class VcpuBase implements Vcpu {
  readonly id: number;
  readonly lifecycle: Lifecycle = new Lifecycle();

  constructor(id: number) {
    this.id = id;
  }

  get state(): VcpuState {
    return this.lifecycle.state;
  }

  /** Called by the back-end once the initial state is loaded. */
  protected configured(): void {
    this.lifecycle.to("configured");
  }

  run(): VcpuExit {
    this.lifecycle.to("running");
    const exit = this.doRun();
    this.lifecycle.to(needsCompletion(exit) ? "awaiting-io" : "exited");
    return exit;
  }

  completeIo(): void {
    this.doCompleteIo();
    this.lifecycle.to("exited");
  }

  /** Marks the vCPU paused (between runs) and resumed. */
  pause(): void {
    this.lifecycle.to("paused");
  }

  close(): void {
    if (this.lifecycle.live) this.lifecycle.to("stopped");
    if (this.lifecycle.state === "stopped") {
      this.doClose();
      this.lifecycle.to("destroyed");
    }
  }

  protected abstract doRun(): VcpuExit;
  protected abstract doCompleteIo(): void;
  protected abstract doClose(): void;
  abstract getRegisters(): Registers;
  abstract setRegisters(regs: Registers): void;
  abstract getSpecialRegisters(): SpecialRegisters;
  abstract setSpecialRegisters(sregs: SpecialRegisters): void;
  abstract readyForInterrupt(): boolean;
  abstract injectInterrupt(vector: number): void;
  abstract requestInterruptWindow(wanted: boolean): void;
  abstract kickToken(): KickToken;
}
