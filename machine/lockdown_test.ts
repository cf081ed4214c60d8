import assert from "node:assert/strict";
import {
  checkThreads,
  describeLockdown,
  type LockdownPlan,
  lockDownVcpuThread,
  lookUpUser,
  parseThreadStatus,
  planLockdown,
} from "./lockdown.ts";
import type { PrivilegeCalls } from "../ffi/privilege.ts";

const STATUS = `Name:\tdeno
Umask:\t0022
State:\tS (sleeping)
Tgid:\t100
Pid:\t101
Uid:\t999\t999\t999\t999
Gid:\t995\t995\t995\t995
FDSize:\t64
Groups:\t
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
`;

Deno.test("lockdown: a thread's /proc status is parsed (an empty Groups line is no groups)", () => {
  const t = parseThreadStatus(101, STATUS);
  assert.deepEqual(t, {
    tid: 101,
    name: "deno",
    uids: [999, 999, 999, 999],
    gids: [995, 995, 995, 995],
    groups: [],
    noNewPrivs: 1,
    seccomp: 2,
  });
});

Deno.test("lockdown: a thread left with root's ids, groups or no filter fails the check", () => {
  const plan: LockdownPlan = { identity: { user: "_vmmctl", uid: 999, gid: 995 }, seccomp: true };
  checkThreads([parseThreadStatus(1, STATUS)], plan);
  const root = parseThreadStatus(2, STATUS.replace("Uid:\t999\t999\t999", "Uid:\t999\t0\t999"));
  assert.throws(() => checkThreads([root], plan), /Thread 2 \(deno\) kept uids 999,0,999,999/);
  const grouped = parseThreadStatus(3, STATUS.replace("Groups:\t", "Groups:\t0 27"));
  assert.throws(() => checkThreads([grouped], plan), /supplementary groups 0,27/);
  const loose = parseThreadStatus(4, STATUS.replace("Seccomp:\t2", "Seccomp:\t0"));
  assert.throws(() => checkThreads([loose], plan), /not under the seccomp filter/);
  const nnp = parseThreadStatus(5, STATUS.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0"));
  assert.throws(() => checkThreads([nnp], plan), /lacks no_new_privs/);
});

Deno.test("lockdown: users are looked up in passwd; root's ids are refused", () => {
  const passwd = "root:x:0:0::/root:/bin/sh\n_vmmctl:x:999:995::/nonexistent:/usr/sbin/nologin\n";
  assert.deepEqual(lookUpUser("_vmmctl", passwd), { user: "_vmmctl", uid: 999, gid: 995 });
  assert.equal(lookUpUser("nobody", passwd), undefined);
  const env = () => undefined;
  assert.equal(planLockdown({ enabled: false }), undefined);
  if (Deno.build.os !== "linux") return;
  assert.throws(() => planLockdown({ uid: 0, user: "root", env }), /"root" is refused/);
  assert.throws(
    () => planLockdown({ uid: 0, user: "no-such-user-vmmctl", env }),
    /"no-such-user-vmmctl": no such user/,
  );
  // Not root: no identity to drop to, the rest still applies; another user is an error.
  const plan = planLockdown({ uid: 4321, env });
  assert.equal(plan?.identity, undefined);
  assert.equal(plan?.seccomp, Deno.build.arch === "x86_64");
  assert.throws(
    () => planLockdown({ uid: 4321, user: "root", env }),
    /needs vmmctl to run as root/,
  );
  assert.equal(planLockdown({ uid: 4321, env: () => "1" })?.probe, true);
});

/** Records the calls in order; the last one fails when `failAt` names it. */
function recordingCalls(log: string[], failAt?: string): PrivilegeCalls {
  const step = (name: string) => {
    log.push(name);
    if (name === failAt) throw new Error(`${name} failed: EPERM`);
  };
  return {
    setgroups: (g) => step(`setgroups [${g}]`),
    setresgid: (g) => step(`setresgid ${g}`),
    setresuid: (u) => step(`setresuid ${u}`),
    setNoNewPrivs: () => step("no_new_privs"),
    setNotDumpable: () => step("not dumpable"),
    installFilterAllThreads: (p) => step(`seccomp ${p.length / 8} insns`),
    sandboxState: () => ({ seccomp: 0, noNewPrivs: 0 }),
    probe: () => -1,
  };
}

Deno.test("lockdown: groups, gid, uid, then no_new_privs and the filter; a failure stops it", async () => {
  // Only the order is checked here (the real calls run in tests/lockdown_test.ts):
  // the thread check then fails, since this test process really is unchanged.
  const log: string[] = [];
  const plan: LockdownPlan = { identity: { user: "u", uid: 7, gid: 8 }, seccomp: true };
  await assert.rejects(() => lockDownVcpuThread(plan, recordingCalls(log)), /Thread \d+/);
  assert.equal(log.length, 6);
  assert.deepEqual(log.slice(0, 5), [
    "setgroups []",
    "setresgid 8",
    "setresuid 7",
    "not dumpable",
    "no_new_privs",
  ]);
  assert.match(log[5], /^seccomp \d+ insns$/);
  const failed: string[] = [];
  await assert.rejects(
    () => lockDownVcpuThread(plan, recordingCalls(failed, "setresgid 8")),
    /EPERM/,
  );
  assert.deepEqual(failed, ["setgroups []", "setresgid 8"], "nothing after a failed step");
});

Deno.test("lockdown: the report reads as one log line", () => {
  const line = describeLockdown({
    os: "linux",
    user: "_vmmctl",
    uid: 999,
    gid: 995,
    seccomp: true,
    allowedSyscalls: 120,
    threads: [parseThreadStatus(1, STATUS)],
  });
  assert.equal(
    line,
    "locked down: runs as _vmmctl (999:995), no_new_privs, seccomp allow-list of 120 calls, " +
      "checked on 1 threads",
  );
});
