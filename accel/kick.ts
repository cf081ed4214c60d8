/**
 * Kicking a vCPU out of `run()` from another thread.
 *
 * The vCPU's thread publishes a {@link KickToken}: its kernel thread id and,
 * for KVM, the address of `kvm_run.immediate_exit`. Setting that byte first
 * closes the race where the signal lands just before the vCPU enters the
 * guest; the signal then interrupts a running KVM_RUN (it returns EINTR).
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
  if (typeof token.immediateExit === "string") {
    libc.memoryAt(BigInt(token.immediateExit), 1)[0] = 1;
  }
  if (typeof token.thread === "string") {
    libc.signalThread(BigInt(token.thread), libc.consts.SIGUSR2);
  }
}
