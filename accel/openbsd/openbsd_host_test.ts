import assert from "node:assert/strict";
import { SyscallError } from "../../ffi/errno.ts";
import { findLibcPath } from "../../ffi/libc.ts";
import { resetState } from "../../loaders/cpu_state.ts";
import * as abi from "./abi.ts";
import {
  applySandbox,
  type DlopenSandbox,
  enterVmSetup,
  lockDownVmProcess,
  openSandboxCalls,
  RUNNING_PROMISES,
  type SandboxCalls,
  SETUP_PROMISES,
  vmSandboxPlan,
} from "./openbsd_host.ts";
import { FakePledge, FakeVmmLibc, PledgeViolation } from "./test_helpers.ts";
import { OpenbsdAccel } from "./vmm.ts";

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
          if (fail.unveil && text(p) === "/nonexistent") return (errno = fail.unveil), -1;
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

Deno.test("applySandbox: unveil execpath x and the plan's paths, lock, pledge set-up then running", () => {
  const log: string[] = [];
  const calls: SandboxCalls = {
    pledge: (p, e) => void log.push(`pledge ${p} ${e}`),
    unveil: (p, m) => void log.push(`unveil ${p} ${m}`),
  };
  applySandbox(
    calls,
    vmSandboxPlan({
      execPath: "/usr/local/bin/deno",
      unveil: [{ path: "/tmp/console.log", permissions: "rwc" }, {
        path: "/var/run/vmmctl",
        permissions: "rw",
      }],
      extraPromises: ["recvfd"],
    }),
  );
  assert.deepEqual(log, [
    "unveil /usr/local/bin/deno x",
    "unveil /tmp/console.log rwc",
    "unveil /var/run/vmmctl rw",
    "unveil null null",
    `pledge ${SETUP_PROMISES} null`,
    `pledge ${RUNNING_PROMISES} recvfd null`,
  ]);
  // vmd's sets, plus what Deno needs.
  assert.match(SETUP_PROMISES, /^stdio .*\bvmm proc exec$/);
  assert.match(RUNNING_PROMISES, /^stdio .*\bvmm$/);
  assert.doesNotMatch(RUNNING_PROMISES, /\bproc\b|\bexec\b/, "no VM creation after set-up");
  for (const p of RUNNING_PROMISES.split(" ")) assert.ok(SETUP_PROMISES.includes(p), p);
});

Deno.test("pledge through the fake kernel: set-up allows CREATE; once running, a re-CREATE is a violation", () => {
  const kernel = new FakePledge();
  const libc = new FakeVmmLibc();
  libc.pledge = kernel;
  const C = abi.vm_create_params;
  libc.on("VMM_IOC_INFO", () => 0);
  libc.on("VMM_IOC_CREATE", (arg) => {
    const v = new DataView(arg.buffer);
    v.setUint32(C.offsetOf("vcp_id"), 3, true);
    v.setBigUint64(C.offsetOf("vcp_memranges[0].vmr_va"), libc.map(0x200000), true);
    return 0;
  });
  libc.on("VMM_IOC_RESETCPU", () => 0);
  libc.on("VMM_IOC_RUN", () => 0);
  libc.on("VMM_IOC_TERM", () => 0);
  const open = () => kernel;
  assert.equal(enterVmSetup({}, "openbsd", open), true);
  assert.deepEqual(kernel.log.slice(0, 2), [`unveil ${Deno.execPath()} x`, "unveil lock"]);
  const accel = new OpenbsdAccel(libc); // VMM_IOC_INFO: needs "proc", held
  const options = {
    name: "p",
    ram: [{ gpa: 0, size: 0x200000 }],
    vcpus: 1,
    irqchip: "user" as const,
  };
  const vm = accel.createVm(options);
  const vcpu = vm.createVcpu(0, resetState());
  assert.equal(lockDownVmProcess({}, "openbsd", open), true);
  assert.equal(kernel.log.at(-1), `pledge ${RUNNING_PROMISES}`);
  assert.equal(kernel.log.filter((l) => l.startsWith("unveil")).length, 2, "unveil once");
  vcpu.run(); // VMM_IOC_RUN: "vmm" is enough
  assert.throws(
    () => accel.createVm(options),
    (e) =>
      e instanceof PledgeViolation &&
      /VMM_IOC_CREATE needs "proc", promises are "stdio unix tty prot_exec vmm"/.test(e.message),
  );
  assert.throws(() => kernel.pledge(SETUP_PROMISES, null), /EPERM/, "promises only narrow");
  assert.throws(() => kernel.unveil("/etc", "r"), /EPERM/, "unveil stays locked");
  vm.close(); // TERM: allowed to a VM process
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
    () => enterVmSetup({ unveil: [{ path: "/nonexistent", permissions: "r" }] }, "openbsd", open),
    /unveil "\/nonexistent" "r" failed: ENOENT/,
  );
  assert.deepEqual(f.calls, [
    `unveil(${JSON.stringify(Deno.execPath())}, "x")`,
    'unveil("/nonexistent", "r")',
  ], "nothing pledged after the failure");
  const ok = fakeDlopen();
  const open2 = () =>
    openSandboxCalls({
      libcPath: "/usr/lib/libc.so.100.3",
      dlopen: ok.dlopen,
      readErrno: ok.readErrno,
    });
  assert.equal(lockDownVmProcess({}, "openbsd", open2), true);
  assert.equal(ok.calls.at(-1), `pledge(${JSON.stringify(RUNNING_PROMISES)}, null)`);
});
