/**
 * The vCPUs of one VM as every vCPU thread sees them: their channels (one
 * {@link VcpuControl} each, created by the host) and how to get a vCPU's
 * attention from any thread: mark it, wake it if it sleeps (HLT, wait for
 * SIPI), and kick it with a signal if it may be inside `run()`. A kick that
 * lands just before the vCPU enters the guest is lost; the host's kicker
 * repeats kicks while the attention flag stays set (machine/host.ts).
 *
 * @module
 */

import type { Libc } from "../ffi/libc.ts";
import { Activity, VcpuControl } from "./vcpu_channel.ts";

/** Every vCPU's channel, by vCPU index. */
export class VcpuPeers {
  readonly controls: VcpuControl[];
  readonly #libc: Libc;
  /** The index of the vCPU on this thread (never kicked by itself). */
  readonly self: number;

  constructor(buffers: readonly SharedArrayBuffer[], libc: Libc, self: number) {
    this.controls = buffers.map((b) => new VcpuControl(b));
    this.#libc = libc;
    this.self = self;
  }

  /** Gets vCPU `index`'s attention (see the module doc). */
  notify(index: number): void {
    if (index === this.self) return;
    const c = this.controls[index];
    if (!c) return;
    c.requestAttention();
    this.kick(index);
  }

  /** Kicks vCPU `index` out of `run()` if it may be there. */
  kick(index: number): void {
    const c = this.controls[index];
    const a = c.activity;
    const tid = c.thread;
    if (tid !== 0 && (a === Activity.IN_GUEST || a === Activity.IN_VMM)) {
      this.#libc.signalThread(BigInt(tid), this.#libc.consts.SIGUSR2);
    }
  }
}
