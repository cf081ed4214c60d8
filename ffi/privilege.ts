/**
 * The Linux calls that take privileges away from the process: supplementary
 * groups, group and user ids, no_new_privs, and a seccomp filter, through
 * glibc. glibc applies setgroups/setresgid/setresuid to every thread of the
 * process (it signals each thread to make the call itself), which the
 * kernel does not: Linux credentials are per thread.
 *
 * Also a few probes that a test-only request uses to show what the locked
 * process can no longer do (open, execve, socket).
 *
 * @example
 * ```ts
 * import { openPrivilegeCalls } from "./privilege.ts";
 * const calls = openPrivilegeCalls();
 * calls.setNoNewPrivs();
 * ```
 * @module
 */

import { SyscallError } from "./errno.ts";

/** The calls {@link openPrivilegeCalls} binds; tests use a recording fake. */
export interface PrivilegeCalls {
  setgroups(gids: readonly number[]): void;
  setresgid(gid: number): void;
  setresuid(uid: number): void;
  /** prctl(PR_SET_NO_NEW_PRIVS, 1). */
  setNoNewPrivs(): void;
  /** prctl(PR_SET_DUMPABLE, 0): no ptrace or /proc/PID/mem by the same user. */
  setNotDumpable(): void;
  /**
   * seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog): the
   * filter covers every thread, or nothing is installed and this throws.
   */
  installFilterAllThreads(program: Uint8Array): void;
  /** prctl(PR_GET_SECCOMP) and prctl(PR_GET_NO_NEW_PRIVS) of the calling thread. */
  sandboxState(): { seccomp: number; noNewPrivs: number };
  /** Raw syscall(2) returning -errno: a probe for tests (never throws). */
  probe(nr: number, a0?: bigint, a1?: bigint, a2?: bigint): number;
}

const SYMBOLS = {
  setgroups: { parameters: ["usize", "buffer"], result: "i32" },
  setresgid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  setresuid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

const PR_SET_DUMPABLE = 4;
const PR_GET_SECCOMP = 21;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_GET_NO_NEW_PRIVS = 39;
const SYS_SECCOMP_X86_64 = 317;
const SECCOMP_SET_MODE_FILTER = 1;
const SECCOMP_FILTER_FLAG_TSYNC = 1;

let cached: PrivilegeCalls | undefined;

/** The real calls (Linux x86-64, glibc). */
export function openPrivilegeCalls(): PrivilegeCalls {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new Error(
      `Privilege calls are bound for Linux x86-64, not ${Deno.build.os} ${Deno.build.arch}`,
    );
  }
  if (cached) return cached;
  const lib = Deno.dlopen("libc.so.6", SYMBOLS);
  const errno = () => {
    const p = lib.symbols.__errno_location();
    return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
  };
  const check = (call: string, r: number | bigint) => {
    if (Number(r) !== 0) throw new SyscallError(call, errno(), "linux");
  };
  cached = {
    setgroups(gids) {
      const list = new Uint32Array(gids.length || 1);
      list.set(gids);
      check(
        `setgroups [${gids.join(",")}]`,
        lib.symbols.setgroups(BigInt(gids.length), new Uint8Array(list.buffer)),
      );
    },
    setresgid(gid) {
      check(`setresgid ${gid}`, lib.symbols.setresgid(gid, gid, gid));
    },
    setresuid(uid) {
      check(`setresuid ${uid}`, lib.symbols.setresuid(uid, uid, uid));
    },
    setNoNewPrivs() {
      check("prctl PR_SET_NO_NEW_PRIVS", lib.symbols.prctl(PR_SET_NO_NEW_PRIVS, 1n, 0n, 0n, 0n));
    },
    setNotDumpable() {
      check("prctl PR_SET_DUMPABLE 0", lib.symbols.prctl(PR_SET_DUMPABLE, 0n, 0n, 0n, 0n));
    },
    installFilterAllThreads(program) {
      // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
      const fprog = new BigUint64Array(2);
      fprog[0] = BigInt(program.length / 8);
      fprog[1] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(program)));
      const r = Number(
        lib.symbols.syscall(
          BigInt(SYS_SECCOMP_X86_64),
          BigInt(SECCOMP_SET_MODE_FILTER),
          BigInt(SECCOMP_FILTER_FLAG_TSYNC),
          BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(fprog))),
        ),
      );
      if (r > 0) {
        throw new Error(`seccomp TSYNC failed: thread ${r} could not take the filter`);
      }
      check("seccomp SECCOMP_SET_MODE_FILTER TSYNC", r);
      // Keep both buffers alive across the call (the kernel copied them).
      void program[0], void fprog[0];
    },
    sandboxState() {
      return {
        seccomp: lib.symbols.prctl(PR_GET_SECCOMP, 0n, 0n, 0n, 0n),
        noNewPrivs: lib.symbols.prctl(PR_GET_NO_NEW_PRIVS, 0n, 0n, 0n, 0n),
      };
    },
    probe(nr, a0 = 0n, a1 = 0n, a2 = 0n) {
      const r = Number(lib.symbols.syscall(BigInt(nr), a0, a1, a2));
      return r < 0 ? -errno() : r;
    },
  };
  return cached;
}
