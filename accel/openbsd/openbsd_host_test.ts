import assert from "node:assert/strict";
import { SyscallError } from "../../ffi/errno.ts";
import { findLibcPath } from "../../ffi/libc.ts";
import {
  applySandbox,
  DEFAULT_VM_PROMISES,
  type DlopenSandbox,
  lockDownVmProcess,
  openSandboxCalls,
  type SandboxCalls,
  vmSandboxPlan,
} from "./openbsd_host.ts";

function text(b: Uint8Array | null): string | null {
  if (b === null) return null;
  assert.equal(b[b.length - 1], 0, "C strings end with NUL");
  return new TextDecoder().decode(b.subarray(0, b.length - 1));
}

/** A fake libc: records pledge/unveil with their C strings; fails the ones listed. */
function fakeDlopen(fail: Record<string, number> = {}) {
  const calls: string[] = [];
  let errno = 0;
  let opened: string | undefined;
  const dlopen: DlopenSandbox = (path, symbols) => {
    opened = path;
    assert.deepEqual(Object.keys(symbols), ["pledge", "unveil", "__errno"]);
    assert.deepEqual(symbols.pledge.parameters, ["buffer", "buffer"]);
    return {
      symbols: {
        pledge(p, e) {
          const c = `pledge(${JSON.stringify(text(p))}, ${JSON.stringify(text(e))})`;
          calls.push(c);
          if (fail.pledge) return (errno = fail.pledge), -1;
          return 0;
        },
        unveil(p, perm) {
          calls.push(`unveil(${JSON.stringify(text(p))}, ${JSON.stringify(text(perm))})`);
          if (fail.unveil && text(p) !== null) return (errno = fail.unveil), -1;
          return 0;
        },
        __errno: () => null,
      },
    };
  };
  return { dlopen, calls, readErrno: () => errno, opened: () => opened };
}

Deno.test("openSandboxCalls: OpenBSD's libc found by findLibcPath, C strings, errno on failure", () => {
  const listing = ["libc.so.97.1", "libc.so.100.3", "libc.so.100.0", "libm.so.10.1"];
  const libcPath = findLibcPath("openbsd", {
    procMaps: () => undefined,
    executableNeeded: () => ["libpthread.so.28.1", "libc.so.100.0"],
    listUsrLib: () => listing,
    loadedObjects: () => undefined,
  });
  assert.equal(libcPath, "/usr/lib/libc.so.100.3");
  const f = fakeDlopen({ pledge: 1 });
  const calls = openSandboxCalls({ libcPath, dlopen: f.dlopen, readErrno: f.readErrno });
  assert.equal(f.opened(), "/usr/lib/libc.so.100.3");
  calls.unveil("/var/run/vmmctl", "rwc");
  calls.unveil(null, null);
  assert.throws(
    () => calls.pledge("stdio vmm", null),
    (e) =>
      e instanceof SyscallError && e.code === "EPERM" &&
      /pledge "stdio vmm" failed: EPERM \(Operation not permitted\)/.test(e.message),
  );
  assert.deepEqual(f.calls, [
    'unveil("/var/run/vmmctl", "rwc")',
    "unveil(null, null)",
    'pledge("stdio vmm", null)',
  ]);
});

Deno.test("applySandbox: unveil each path, lock, then pledge; nothing to keep hides /", () => {
  const log: string[] = [];
  const calls: SandboxCalls = {
    pledge: (p, e) => void log.push(`pledge ${p} ${e}`),
    unveil: (p, m) => void log.push(`unveil ${p} ${m}`),
  };
  applySandbox(
    calls,
    vmSandboxPlan({
      unveil: [{ path: "/tmp/console.log", permissions: "rwc" }, {
        path: "/var/run/vmmctl",
        permissions: "rw",
      }],
      extraPromises: ["recvfd"],
    }),
  );
  assert.deepEqual(log, [
    "unveil /tmp/console.log rwc",
    "unveil /var/run/vmmctl rw",
    "unveil null null",
    `pledge ${DEFAULT_VM_PROMISES} recvfd null`,
  ]);
  log.length = 0;
  applySandbox(calls, vmSandboxPlan());
  assert.deepEqual(log, ["unveil / ", "unveil null null", `pledge ${DEFAULT_VM_PROMISES} null`]);
  assert.match(DEFAULT_VM_PROMISES, /\bvmm\b/);
  assert.match(DEFAULT_VM_PROMISES, /^stdio /);
  assert.doesNotMatch(DEFAULT_VM_PROMISES, /\bproc\b/, "no VM creation after set-up");
});

Deno.test("vmSandboxPlan rejects relative paths and unknown permissions", () => {
  assert.throws(
    () => vmSandboxPlan({ unveil: [{ path: "run", permissions: "r" }] }),
    /unveil path "run" must be absolute/,
  );
  assert.throws(
    () => vmSandboxPlan({ unveil: [{ path: "/run", permissions: "rz" }] }),
    /unveil permissions "rz" for "\/run" are not a subset of "rwxc"/,
  );
});

Deno.test("lockDownVmProcess: applies only on OpenBSD; an unveil failure stops before pledge", () => {
  let opened = 0;
  assert.equal(
    lockDownVmProcess({}, "linux", () => (opened++, { pledge() {}, unveil() {} })),
    false,
  );
  assert.equal(opened, 0);
  const f = fakeDlopen({ unveil: 2 });
  const open = () =>
    openSandboxCalls({
      libcPath: "/usr/lib/libc.so.100.3",
      dlopen: f.dlopen,
      readErrno: f.readErrno,
    });
  assert.throws(
    () =>
      lockDownVmProcess({ unveil: [{ path: "/nonexistent", permissions: "r" }] }, "openbsd", open),
    /unveil "\/nonexistent" "r" failed: ENOENT/,
  );
  assert.deepEqual(f.calls, ['unveil("/nonexistent", "r")']);
  const ok = fakeDlopen();
  const open2 = () =>
    openSandboxCalls({
      libcPath: "/usr/lib/libc.so.100.3",
      dlopen: ok.dlopen,
      readErrno: ok.readErrno,
    });
  assert.equal(lockDownVmProcess({}, "openbsd", open2), true);
  assert.equal(ok.calls.at(-1), `pledge(${JSON.stringify(DEFAULT_VM_PROMISES)}, null)`);
});
