/**
 * A stand-in back-end whose vCPU "exits" without entering any guest: every
 * `run()` returns a port-0x80 write until the last, which writes the exit
 * port. Running vmmctl's real run loop on it measures the loop's own
 * JavaScript cost per exit (timers, dispatch, bus, POST device), with no
 * KVM_RUN in the way.
 *
 * @module
 */

import type {
  Accel,
  CpuState,
  Registers,
  SpecialRegisters,
  Vcpu,
  VcpuExit,
  Vm,
  VmOptions,
} from "../accel/types.ts";
import { GuestMemory } from "../core/guest_memory.ts";

/** A back-end whose single vCPU produces `exits` POST-port writes, then an exit-port write. */
export class ScriptedPioAccel implements Accel {
  readonly name = "scripted";
  readonly #exits: number;
  readonly #exitPort: number;
  readonly #exitValue: number;

  constructor(exits: number, exitPort: number, exitValue: number) {
    this.#exits = exits;
    this.#exitPort = exitPort;
    this.#exitValue = exitValue;
  }

  createVm(options: VmOptions): Vm {
    const memory = GuestMemory.anonymous(options.ram);
    let left = this.#exits;
    const post: VcpuExit = {
      kind: "io-out",
      port: 0x80,
      size: 1,
      count: 1,
      data: new Uint8Array(1),
    };
    const end: VcpuExit = {
      kind: "io-out",
      port: this.#exitPort,
      size: 4,
      count: 1,
      data: Uint8Array.of(this.#exitValue, 0, 0, 0),
    };
    const vcpu: Vcpu = {
      id: 0,
      run: () => (left-- > 0 ? post : end),
      completeIo() {},
      pause() {},
      getRegisters: () => ({}) as Registers,
      setRegisters() {},
      getSpecialRegisters: () => ({}) as SpecialRegisters,
      setSpecialRegisters() {},
      readyForInterrupt: () => false,
      injectInterrupt() {},
      requestInterruptWindow() {},
      kickToken: () => ({}),
      close() {},
    };
    return {
      memory,
      createVcpu: (_id: number, _state: CpuState) => vcpu,
      setIrqLine() {},
      close() {},
    };
  }

  kick(): void {}
}
