/**
 * The VM process's lock-down: the one place where a VM process gives up what
 * it no longer needs, once /dev/kvm, the images, the taps, the console and
 * the control socket are open and before the guest runs.
 *
 * On Linux, in this order (each step needs the one before):
 * 1. when root: setgroups([]), setresgid, setresuid to an unprivileged user
 *    (`[vm] user`, default `_vmmctl`, created on first use when missing);
 *    glibc makes every thread take the new ids, and we check each thread's
 *    /proc/self/task/TID/status afterwards;
 * 2. PR_SET_DUMPABLE 0 (the same user cannot ptrace it or read its memory)
 *    and PR_SET_NO_NEW_PRIVS (no exec can gain privileges);
 * 3. a seccomp allow-list ({@link buildVmFilter}) installed with TSYNC, so
 *    it covers every thread at once, Deno's and the vCPU Worker's;
 * 4. Deno's permissions narrowed by the host thread once the guest runs
 *    ({@link narrowHostPermissions}): a Worker started with inherited
 *    permissions shares one permission set with the thread that started it
 *    (measured on Deno 2.9: a revoke in the Worker is seen by the main
 *    thread), so one narrowing covers both.
 * On OpenBSD the same point calls {@link lockDownOpenbsd} (pledge/unveil).
 *
 * `[debug] lockdown = false` or `vmmctl up --no-lockdown` skip it all (for
 * strace and gdb).
 *
 * @module
 */

import { buildVmFilter, encodeFilter, SECCOMP_RET, syscallNumber } from "../ffi/seccomp.ts";
import { openPrivilegeCalls, type PrivilegeCalls } from "../ffi/privilege.ts";
import type { UnveilPath } from "../accel/openbsd/openbsd_host.ts";

/** The user a VM process becomes when none is configured. */
export const DEFAULT_VM_USER = "_vmmctl";

/** Who to become. */
export interface VmIdentity {
  user: string;
  uid: number;
  gid: number;
}

/** What {@link lockDownVcpuThread} does; made on the host thread by {@link planLockdown}. */
export interface LockdownPlan {
  /** Become this user (only set when the process runs as root). */
  identity?: VmIdentity;
  /** Install the seccomp filter (Linux x86-64). */
  seccomp: boolean;
  /**
   * Deny action: ERRNO(EPERM) normally; SECCOMP_RET_LOG with
   * VMMCTL_SECCOMP=log, to list what a workload would be denied.
   */
  denyAction?: number;
  /** Run the test probes after lock-down and report them (VMMCTL_LOCKDOWN_PROBE=1). */
  probe?: boolean;
  /** OpenBSD: paths to keep visible after unveil. */
  unveil?: UnveilPath[];
  /** Why the process keeps its user (see {@link PlanOptions.keepUser}). */
  keptUser?: string;
}

/** One thread's credentials and sandbox state, from /proc/self/task/TID/status. */
export interface ThreadState {
  tid: number;
  name: string;
  /** Real, effective, saved, file-system uid. */
  uids: number[];
  gids: number[];
  groups: number[];
  noNewPrivs: number;
  seccomp: number;
}

/** What a lock-down did, for the log and the tests. */
export interface LockdownReport {
  os: string;
  user?: string;
  uid?: number;
  gid?: number;
  seccomp: boolean;
  /** Allowed system calls in the filter. */
  allowedSyscalls?: number;
  threads: ThreadState[];
  /** Results of the probes (when asked): call -> errno name or "allowed". */
  probes?: Record<string, string>;
  /** The process was already locked down (a machine rebuilt after a reset). */
  again?: boolean;
  /** Why the user was kept, when it was. */
  keptUser?: string;
}

function field(status: string, key: string): string {
  const m = new RegExp(`^${key}:[ \\t]*(.*)$`, "m").exec(status);
  return m ? m[1].trim() : "";
}

const numbers = (s: string) => s.split(/\s+/).filter(Boolean).map(Number);

/** Parses one /proc/PID/task/TID/status. */
export function parseThreadStatus(tid: number, status: string): ThreadState {
  return {
    tid,
    name: field(status, "Name"),
    uids: numbers(field(status, "Uid")),
    gids: numbers(field(status, "Gid")),
    groups: numbers(field(status, "Groups")),
    noNewPrivs: Number(field(status, "NoNewPrivs") || 0),
    seccomp: Number(field(status, "Seccomp") || 0),
  };
}

/** Every thread of process `pid` (default this one), from /proc. */
export function threadStates(pid: number | "self" = "self"): ThreadState[] {
  const out: ThreadState[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    const tid = Number(e.name);
    try {
      out.push(parseThreadStatus(tid, Deno.readTextFileSync(`/proc/${pid}/task/${tid}/status`)));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out.sort((a, b) => a.tid - b.tid);
}

/** Looks `name` up in /etc/passwd: uid and primary gid. */
export function lookUpUser(
  name: string,
  passwd: string = Deno.readTextFileSync("/etc/passwd"),
): VmIdentity | undefined {
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f.length >= 4 && f[0] === name && /^\d+$/.test(f[2]) && /^\d+$/.test(f[3])) {
      return { user: name, uid: Number(f[2]), gid: Number(f[3]) };
    }
  }
  return undefined;
}

/** Creates the system user `name` with its own group, no home and no shell (root only). */
export function createSystemUser(name: string): void {
  const r = new Deno.Command("useradd", {
    args: [
      "--system",
      "--user-group",
      "--no-create-home",
      "--home-dir",
      "/nonexistent",
      "--shell",
      "/usr/sbin/nologin",
      "--comment",
      "vmmctl VM processes",
      name,
    ],
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  // 9: the user exists (another VM process created it first).
  if (!r.success && r.code !== 9) {
    throw new Error(
      `Cannot create the VM user "${name}" (useradd: ${
        new TextDecoder().decode(r.stderr).trim()
      }); ` +
        `create it, or set [vm] user`,
    );
  }
}

/** Options of {@link planLockdown}. */
export interface PlanOptions {
  /** `[vm] user`. */
  user?: string;
  /** false: no lock-down at all (`--no-lockdown`, `[debug] lockdown = false`). */
  enabled?: boolean;
  /** Environment (tests pass one); default Deno.env. */
  env?: (name: string) => string | undefined;
  /** The process's uid (tests pass one). */
  uid?: number;
  /** OpenBSD unveil paths. */
  unveil?: UnveilPath[];
  /**
   * Stay the current user, saying why (the detached VM process: it rebuilds
   * its machine on a reset and keeps writing its run directory).
   */
  keepUser?: string;
}

/**
 * Decides the lock-down on the host thread, before the vCPU Worker starts
 * (it may create the VM user, which needs `useradd`). Undefined: none.
 */
export function planLockdown(options: PlanOptions = {}): LockdownPlan | undefined {
  if (options.enabled === false) return undefined;
  const env = options.env ?? ((n: string) => Deno.env.get(n));
  const os = Deno.build.os as string;
  if (os === "openbsd") return { seccomp: false, unveil: options.unveil };
  if (os !== "linux") return undefined;
  const plan: LockdownPlan = {
    seccomp: Deno.build.arch === "x86_64",
    probe: env("VMMCTL_LOCKDOWN_PROBE") === "1",
  };
  if (env("VMMCTL_SECCOMP") === "log") plan.denyAction = SECCOMP_RET.LOG;
  if (options.keepUser !== undefined) {
    plan.keptUser = options.keepUser;
    return plan;
  }
  const uid = options.uid ?? Deno.uid() ?? 0;
  const user = options.user ?? DEFAULT_VM_USER;
  if (uid !== 0) {
    // Not root: nothing to drop to; an explicit other user cannot be honoured.
    if (options.user !== undefined) {
      const me = lookUpUser(options.user);
      if (me?.uid !== uid) {
        throw new Error(
          `[vm] user = "${options.user}" needs vmmctl to run as root (it runs as uid ${uid})`,
        );
      }
    }
    return plan;
  }
  if (user === "root") {
    throw new Error('[vm] user = "root" is refused: use [debug] lockdown = false to debug');
  }
  let identity = lookUpUser(user);
  if (!identity && options.user === undefined) {
    // Two VM processes may race to create it: the loser sees it on a later look.
    for (let attempt = 0; !identity && attempt < 5; attempt++) {
      try {
        createSystemUser(user);
      } catch (e) {
        if (attempt === 4) throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      }
      identity = lookUpUser(user);
    }
  }
  if (!identity) throw new Error(`[vm] user "${user}": no such user`);
  if (identity.uid === 0 || identity.gid === 0) {
    throw new Error(`[vm] user "${user}" has uid or gid 0: it would keep root's rights`);
  }
  plan.identity = identity;
  return plan;
}

/**
 * Applies the process-wide part of `plan` (ids, no_new_privs, seccomp).
 * Called on the vCPU thread once the machine is built, before the guest's
 * first instruction. Throws when a thread kept root or missed the filter.
 */
export async function lockDownVcpuThread(
  plan: LockdownPlan,
  calls: PrivilegeCalls | undefined = undefined,
): Promise<LockdownReport> {
  const os = Deno.build.os as string;
  if (os === "openbsd") {
    await lockDownOpenbsd(plan);
    return { os, seccomp: false, threads: [] };
  }
  const c = calls ?? openPrivilegeCalls();
  const report: LockdownReport = {
    os,
    seccomp: plan.seccomp,
    threads: [],
    keptUser: plan.keptUser,
  };
  const now = c.sandboxState();
  if (now.seccomp === 2 && now.noNewPrivs === 1) {
    // A machine rebuilt in the same process (a reset): the process-wide part is done and
    // cannot be repeated (seccomp itself is denied now; /proc/self is no longer readable).
    report.again = true;
    return report;
  }
  const id = plan.identity;
  if (id) {
    // Groups first (needs root), then the gid (needs root), then the uid last.
    c.setgroups([]);
    c.setresgid(id.gid);
    c.setresuid(id.uid);
    Object.assign(report, { user: id.user, uid: id.uid, gid: id.gid });
  }
  c.setNotDumpable();
  c.setNoNewPrivs();
  if (plan.seccomp) {
    const prog = buildVmFilter({ deny: plan.denyAction, ownPid: Deno.pid });
    c.installFilterAllThreads(encodeFilter(prog));
    report.allowedSyscalls = prog.filter((i) => i.k === SECCOMP_RET.ALLOW).length;
  }
  report.threads = threadStates();
  checkThreads(report.threads, plan);
  if (plan.probe) report.probes = runProbes(c);
  return report;
}

/** Throws unless every thread has the plan's ids, no_new_privs and (if asked) the filter. */
export function checkThreads(threads: ThreadState[], plan: LockdownPlan): void {
  for (const t of threads) {
    const id = plan.identity;
    if (id && (t.uids.some((u) => u !== id.uid) || t.gids.some((g) => g !== id.gid))) {
      throw new Error(
        `Thread ${t.tid} (${t.name}) kept uids ${t.uids} / gids ${t.gids} after the drop to ` +
          `${id.user}`,
      );
    }
    if (id && t.groups.length > 0) {
      throw new Error(`Thread ${t.tid} (${t.name}) kept supplementary groups ${t.groups}`);
    }
    if (t.noNewPrivs !== 1) throw new Error(`Thread ${t.tid} (${t.name}) lacks no_new_privs`);
    if (plan.seccomp && t.seccomp !== 2) {
      throw new Error(`Thread ${t.tid} (${t.name}) is not under the seccomp filter`);
    }
  }
}

const ERRNO_NAMES: Record<number, string> = { 1: "EPERM", 2: "ENOENT", 13: "EACCES", 38: "ENOSYS" };

/**
 * What the locked process can no longer do, each tried for real: open
 * /etc/shadow, execve /bin/true, create a socket, become root again, ptrace.
 */
export function runProbes(c: PrivilegeCalls): Record<string, string> {
  const cstr = (s: string) => new TextEncoder().encode(s + "\0");
  const ptr = (b: Uint8Array) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  const name = (r: number) => r >= 0 ? "allowed" : (ERRNO_NAMES[-r] ?? `errno ${-r}`);
  const shadow = cstr("/etc/shadow");
  const truePath = cstr("/bin/true");
  const AT_FDCWD = -100n;
  const out: Record<string, string> = {};
  const fd = c.probe(syscallNumber("openat"), AT_FDCWD, ptr(shadow), 0n);
  if (fd >= 0) c.probe(syscallNumber("close"), BigInt(fd));
  out["open /etc/shadow"] = name(fd);
  // argv and envp NULL: if this were allowed, /bin/true would replace the process.
  out["execve /bin/true"] = name(c.probe(syscallNumber("execve"), ptr(truePath), 0n, 0n));
  const sock = c.probe(syscallNumber("socket"), 1n, /* AF_UNIX */ 1n, /* SOCK_STREAM */ 0n);
  if (sock >= 0) c.probe(syscallNumber("close"), BigInt(sock));
  out["socket AF_UNIX"] = name(sock);
  out["setresuid 0"] = name(c.probe(syscallNumber("setresuid"), 0n, 0n, 0n));
  out["ptrace PTRACE_TRACEME"] = name(c.probe(syscallNumber("ptrace"), 0n, 0n, 0n));
  out["fork"] = name(c.probe(syscallNumber("fork")));
  return out;
}

/**
 * Narrows Deno's permissions (the host thread's, which its vCPU Worker
 * shares): revokes run, net and env, and sys, read and write unless
 * `keepFiles` is non-empty (Deno cannot narrow a global grant to a list: a
 * host thread that still writes its run directory, and rebuilds its machine
 * on a reset, keeps them). FFI stays: the back-ends are FFI, which is also
 * why the uid and seccomp are what really confine the process. Called once
 * the vCPU thread reports the guest started.
 */
export function narrowHostPermissions(keepFiles: readonly string[] = []): string[] {
  const names: Deno.PermissionName[] = ["run", "net", "env"];
  if (keepFiles.length === 0) names.push("sys", "read", "write");
  const revoked: string[] = [];
  for (const name of names) {
    try {
      Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
      revoked.push(name);
    } catch {
      // a permission this Deno does not know
    }
  }
  return revoked;
}

/**
 * One line for the log: who the process became, the filter, every thread's
 * state, and the probes' results when they ran (JSON, for the tests).
 */
export function describeLockdown(r: LockdownReport): string {
  const who = r.user !== undefined
    ? `runs as ${r.user} (${r.uid}:${r.gid})`
    : `kept its user${r.keptUser ? ` (${r.keptUser})` : ""}`;
  const filter = !r.seccomp
    ? "no seccomp"
    : r.allowedSyscalls === undefined
    ? "seccomp allow-list"
    : `seccomp allow-list of ${r.allowedSyscalls} calls`;
  const threads = r.threads.length ? `, checked on ${r.threads.length} threads` : "";
  const probes = r.probes ? ` probes ${JSON.stringify(r.probes)}` : "";
  const again = r.again ? " (already, from before the reset)" : "";
  return `locked down${again}: ${who}, no_new_privs, ${filter}${threads}${probes}`;
}

/**
 * The OpenBSD hook: pledge/unveil as vmd does, through
 * accel/openbsd/openbsd_host.ts's lockDownVmProcess (this is its one call site).
 */
export async function lockDownOpenbsd(plan: LockdownPlan): Promise<boolean> {
  // Loaded only on OpenBSD: a KVM start loads no OpenBSD module.
  const { lockDownVmProcess } = await import("../accel/openbsd/openbsd_host.ts");
  return lockDownVmProcess({ unveil: plan.unveil });
}
