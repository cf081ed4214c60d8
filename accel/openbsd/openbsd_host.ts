/**
 * The OpenBSD host side of vmmctl: dropping privileges after set-up the way
 * vmd's VM process does (unveil(2) then pledge(2) with the "vmm" promise),
 * through the same C library the back-end uses.
 *
 * Order matters on OpenBSD: VMM_IOC_CREATE and VMM_IOC_INFO need the "proc"
 * promise, so pledge only after the VM and its vCPUs exist; from then on the
 * process keeps "vmm" (VMM_IOC_RUN, RESETCPU, READREGS/WRITEREGS, INTR,
 * TERM) and what the rest of vmmctl needs. unveil(2) first narrows the file
 * system to the paths still needed (console file, control socket folder)
 * and is then locked with unveil(NULL, NULL).
 *
 * Deno itself needs more than vmd's "stdio vmm recvfd": V8 maps JIT code
 * ("prot_exec"), the console uses a tty ("tty"), the control socket a Unix
 * socket ("unix"), and files may still be opened ("rpath wpath cpath"), so
 * {@link DEFAULT_VM_PROMISES} is wider than vmd's. It was not tried on an
 * OpenBSD machine (there is none here); tests check the calls through a fake.
 *
 * Device open errors (no /dev/vmm, no permission) are explained where the
 * device is opened, in `vmm.ts`.
 *
 * @example
 * ```ts
 * import { lockDownVmProcess } from "./openbsd_host.ts";
 * // After Machine construction, before the run loop (a no-op off OpenBSD):
 * lockDownVmProcess({ unveil: [{ path: "/var/run/vmmctl", permissions: "rwc" }] });
 * ```
 * @module
 */

import { SyscallError } from "../../ffi/errno.ts";
import { findLibcPath } from "../../ffi/libc.ts";

/** The promises a running VM process keeps (see the module doc for why each). */
export const DEFAULT_VM_PROMISES = "stdio rpath wpath cpath unix tty prot_exec vmm";

/** One path to keep visible after unveil is locked. */
export interface UnveilPath {
  path: string;
  /** unveil(2) permissions: any of "r", "w", "x", "c"; "" hides the path. */
  permissions: string;
}

/** What to keep after set-up. */
export interface SandboxPlan {
  /** pledge(2) promises. */
  promises: string;
  /** Paths to leave visible; everything else disappears. */
  unveil: UnveilPath[];
}

/** pledge(2) and unveil(2), each throwing a {@link SyscallError} on failure. */
export interface SandboxCalls {
  pledge(promises: string | null, execpromises: string | null): void;
  unveil(path: string | null, permissions: string | null): void;
}

const SANDBOX_SYMBOLS = {
  pledge: { parameters: ["buffer", "buffer"], result: "i32" },
  unveil: { parameters: ["buffer", "buffer"], result: "i32" },
  __errno: { parameters: [], result: "pointer" },
} as const;

/** The part of `Deno.dlopen` this module uses (tests pass a fake). */
export type DlopenSandbox = (
  path: string,
  symbols: typeof SANDBOX_SYMBOLS,
) => {
  symbols: {
    pledge(promises: Uint8Array | null, exec: Uint8Array | null): number;
    unveil(path: Uint8Array | null, permissions: Uint8Array | null): number;
    __errno(): Deno.PointerValue;
  };
};

/** Options of {@link openSandboxCalls}. */
export interface SandboxCallsOptions {
  /** The C library (default: the newest /usr/lib/libc.so.N.M, as the back-end finds it). */
  libcPath?: string;
  dlopen?: DlopenSandbox;
  /** Reads errno through `__errno()`'s pointer. */
  readErrno?: (pointer: Deno.PointerValue) => number;
}

function cString(s: string | null): Uint8Array | null {
  return s === null ? null : new TextEncoder().encode(s + "\0");
}

function realReadErrno(p: Deno.PointerValue): number {
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/** pledge/unveil of OpenBSD's libc through FFI. */
export function openSandboxCalls(options: SandboxCallsOptions = {}): SandboxCalls {
  const path = options.libcPath ?? findLibcPath("openbsd");
  const dlopen = options.dlopen ?? (Deno.dlopen as unknown as DlopenSandbox);
  const readErrno = options.readErrno ?? realReadErrno;
  const lib = dlopen(path, SANDBOX_SYMBOLS);
  const check = (call: string, r: number) => {
    if (r !== 0) throw new SyscallError(call, readErrno(lib.symbols.__errno()), "openbsd");
  };
  return {
    pledge(promises, execpromises) {
      check(`pledge "${promises}"`, lib.symbols.pledge(cString(promises), cString(execpromises)));
    },
    unveil(p, permissions) {
      const what = p === null ? "unveil (lock)" : `unveil "${p}" "${permissions}"`;
      check(what, lib.symbols.unveil(cString(p), cString(permissions)));
    },
  };
}

/** The plan for a VM process: {@link DEFAULT_VM_PROMISES} plus `extraPromises`, and `unveil`. */
export function vmSandboxPlan(
  options: { unveil?: UnveilPath[]; extraPromises?: string[] } = {},
): SandboxPlan {
  const promises = [DEFAULT_VM_PROMISES, ...(options.extraPromises ?? [])].join(" ");
  for (const u of options.unveil ?? []) {
    if (!u.path.startsWith("/")) {
      throw new Error(`unveil path "${u.path}" must be absolute`);
    }
    if (!/^[rwxc]*$/.test(u.permissions)) {
      throw new Error(
        `unveil permissions "${u.permissions}" for "${u.path}" are not a subset of "rwxc"`,
      );
    }
  }
  return { promises, unveil: options.unveil ?? [] };
}

/**
 * Applies `plan`: unveil every path (or hide "/" when there is none, so the
 * file system disappears), lock unveil, then pledge. Throws the first failure.
 */
export function applySandbox(calls: SandboxCalls, plan: SandboxPlan): void {
  const paths = plan.unveil.length > 0 ? plan.unveil : [{ path: "/", permissions: "" }];
  for (const u of paths) calls.unveil(u.path, u.permissions);
  calls.unveil(null, null);
  calls.pledge(plan.promises, null);
}

/**
 * On OpenBSD, narrows this process to what a running VM needs (call it
 * after the VM and its vCPUs are created); elsewhere does nothing. Returns
 * whether it applied a sandbox.
 */
export function lockDownVmProcess(
  options: { unveil?: UnveilPath[]; extraPromises?: string[] } = {},
  os: string = Deno.build.os,
  open: () => SandboxCalls = openSandboxCalls,
): boolean {
  if (os !== "openbsd") return false;
  applySandbox(open(), vmSandboxPlan(options));
  return true;
}
