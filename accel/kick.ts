/**
 * Kicking a vCPU out of `run()` from another thread.
 *
 * The vCPU's thread publishes a {@link KickToken} with its kernel thread id;
 * the signal interrupts a running KVM_RUN / VMM_IOC_RUN (EINTR / VM_EXIT_NONE).
 * A signal that lands just before the vCPU enters the guest is lost, so the
 * host repeats kicks while it still wants attention (machine/host.ts). The
 * host never writes into the vCPU's memory (kvm_run.immediate_exit): the
 * vCPU thread may have unmapped it already, and a write there would crash
 * the process.
 *
 * SIGUSR2, never SIGUSR1 (Deno opens its inspector on SIGUSR1). The host must
 * call {@link installKickHandler} once so the signal is not fatal.
 *
 * @module
 */

import type { Libc } from "../ffi/libc.ts";
import type { KickToken } from "./types.ts";

let installed = false;

/** Makes SIGUSR2 harmless for the process (Deno then merely notes it). */
export function installKickHandler(): void {
  if (installed) return;
  installed = true;
  Deno.addSignalListener("SIGUSR2", () => {});
}

/** Kicks the vCPU described by `token`. */
export function kickVcpu(libc: Libc, token: KickToken): void {
  if (typeof token.thread === "string") {
    libc.signalThread(BigInt(token.thread), libc.consts.SIGUSR2);
  }
}
