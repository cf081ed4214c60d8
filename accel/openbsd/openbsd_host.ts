/**
 * The OpenBSD host side of vmmctl: narrowing the VM process the way vmd's VM
 * process does, in two steps, through the C library the back-end uses:
 * 1. set-up ({@link applySetupSandbox}): unveil(2) the executable "x" (and
 *    any paths the plan keeps), lock unveil, pledge(2) {@link SETUP_PROMISES}
 *    ("stdio vmm proc exec" as vmd, plus what Deno needs while it opens
 *    images and devices). VMM_IOC_CREATE, INFO and SHAREMEM need "proc".
 * 2. running ({@link applyRunningSandbox}): pledge {@link RUNNING_PROMISES}
 *    once the VM and its vCPUs exist ("stdio vmm" as vmd, plus V8's
 *    "prot_exec", "tty" for the console and "unix" for the control socket).
 *    From then on CREATE is a pledge violation: a guest reboot must end the
 *    VM process, as in vmd, not re-create the VM inside it.
 * vmd also unveils /etc/firmware/vmm.dsdt; vmmctl builds its ACPI tables
 * itself and reads no DSDT file, so that path is not kept.
 *
 * The kernel's rules for which vmm(4) ioctl needs which promise
 * (`pledge_ioctl_vmm`) are data here ({@link VMM_IOCTL_PROMISE}) so the
 * test fakes enforce the same ones. Not tried on an OpenBSD machine (there
 * is none here); tests check the calls and their order through a fake that
 * fails what the current promises forbid.
 *
 * Device open errors (no /dev/vmm, no permission) are explained where the
 * device is opened, in `create.ts`.
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

/** Promises while the VM is being set up (see the module doc for why each). */
export const SETUP_PROMISES = "stdio rpath wpath cpath unix tty prot_exec vmm proc exec";
/** Promises the running VM process keeps. */
export const RUNNING_PROMISES = "stdio unix tty prot_exec vmm";

/**
 * The promise each vmm(4) ioctl needs besides "vmm" (the kernel's
 * `pledge_ioctl_vmm` and its amd64 part): "proc" for those vmd's parent
 * uses, nothing more for the ones a VM process issues.
 */
export const VMM_IOCTL_PROMISE: Readonly<Record<string, "proc" | "vmm">> = Object.freeze({
  VMM_IOC_CREATE: "proc",
  VMM_IOC_INFO: "proc",
  VMM_IOC_SHAREMEM: "proc",
  VMM_IOC_TERM: "vmm",
  VMM_IOC_RUN: "vmm",
  VMM_IOC_RESETCPU: "vmm",
  VMM_IOC_READREGS: "vmm",
  VMM_IOC_WRITEREGS: "vmm",
  VMM_IOC_READVMPARAMS: "vmm",
  VMM_IOC_WRITEVMPARAMS: "vmm",
  VMM_IOC_INTR: "vmm",
});

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
  /** The C library (default: the one this process runs on, as the back-end finds it). */
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

/** The plan for a VM process: {@link RUNNING_PROMISES} plus `extraPromises`, and `unveil`. */
export function vmSandboxPlan(
  options: { unveil?: UnveilPath[]; extraPromises?: string[]; execPath?: string } = {},
): SandboxPlan {
  const promises = [RUNNING_PROMISES, ...(options.extraPromises ?? [])].join(" ");
  const unveil = [
    { path: options.execPath ?? Deno.execPath(), permissions: "x" },
    ...(options.unveil ?? []),
  ];
  for (const u of unveil) {
    if (!u.path.startsWith("/")) {
      throw new Error(`unveil path "${u.path}" must be absolute`);
    }
    if (!/^[rwxc]*$/.test(u.permissions)) {
      throw new Error(
        `unveil permissions "${u.permissions}" for "${u.path}" are not a subset of "rwxc"`,
      );
    }
  }
  return { promises, unveil };
}

/** Step 1: unveil every path of `plan`, lock unveil, pledge {@link SETUP_PROMISES}. */
export function applySetupSandbox(calls: SandboxCalls, plan: SandboxPlan): void {
  for (const u of plan.unveil) calls.unveil(u.path, u.permissions);
  calls.unveil(null, null);
  calls.pledge(SETUP_PROMISES, null);
}

/** Step 2: pledge the running set of `plan` (a subset of the set-up one). */
export function applyRunningSandbox(calls: SandboxCalls, plan: SandboxPlan): void {
  calls.pledge(plan.promises, null);
}

/** Both steps, for a caller that is already past VM creation. */
export function applySandbox(calls: SandboxCalls, plan: SandboxPlan): void {
  applySetupSandbox(calls, plan);
  applyRunningSandbox(calls, plan);
}

/** Which openers already applied step 1 (the real one is process-wide; tests bring their own). */
const setupDone = new WeakSet<() => SandboxCalls>();

/**
 * On OpenBSD, step 1 for this process (call it in the VM process before
 * the VM is created, once its files are open); elsewhere does nothing.
 */
export function enterVmSetup(
  options: { unveil?: UnveilPath[] } = {},
  os: string = Deno.build.os,
  open: () => SandboxCalls = openSandboxCalls,
): boolean {
  if (os !== "openbsd" || setupDone.has(open)) return false;
  applySetupSandbox(open(), vmSandboxPlan(options));
  setupDone.add(open);
  return true;
}

/**
 * On OpenBSD, narrows this process to what a running VM needs (call it
 * after the VM and its vCPUs are created): step 1 if {@link enterVmSetup}
 * did not run, then step 2; elsewhere does nothing. Returns whether it
 * applied a sandbox.
 */
export function lockDownVmProcess(
  options: { unveil?: UnveilPath[]; extraPromises?: string[] } = {},
  os: string = Deno.build.os,
  open: () => SandboxCalls = openSandboxCalls,
): boolean {
  if (os !== "openbsd") return false;
  const calls = open();
  const plan = vmSandboxPlan(options);
  if (!setupDone.has(open)) applySetupSandbox(calls, plan);
  setupDone.add(open);
  applyRunningSandbox(calls, plan);
  return true;
}
