import assert from "node:assert/strict";
import {
  AUDIT_ARCH_X86_64,
  buildVmFilter,
  CLONE_THREAD,
  encodeFilter,
  runFilter,
  SECCOMP_RET,
  syscallNumber,
  VM_DENIED_EXAMPLES,
  vmAllowList,
  X86_64_SYSCALLS,
} from "./seccomp.ts";

const HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

Deno.test({
  name: "seccomp: every x86-64 system call number matches the kernel's header",
  ignore: (() => {
    try {
      Deno.statSync(HEADER);
      return false;
    } catch {
      return true;
    }
  })(),
  fn() {
    const header = new Map<string, number>();
    for (const m of Deno.readTextFileSync(HEADER).matchAll(/^#define __NR_(\w+) (\d+)$/gm)) {
      header.set(m[1], Number(m[2]));
    }
    const names = Object.keys(X86_64_SYSCALLS);
    assert.ok(names.length > 250, `${names.length} names`);
    for (const name of names) assert.equal(X86_64_SYSCALLS[name], header.get(name), name);
  },
});

const EPERM = SECCOMP_RET.ERRNO | 1;
const verdict = (nr: number, args?: number[], arch?: number) =>
  runFilter(buildVmFilter({ ownPid: 4242 }), { nr, args, arch });

Deno.test("seccomp: the VM filter allows what the VM process needs", () => {
  for (const name of vmAllowList()) {
    if (name === "tgkill") continue; // checked with its argument below
    assert.equal(verdict(syscallNumber(name)), SECCOMP_RET.ALLOW, name);
  }
  for (const name of ["ioctl", "pwrite64", "fdatasync", "futex", "accept4", "mprotect"]) {
    assert.ok(vmAllowList().includes(name), name);
  }
});

Deno.test("seccomp: exec, new sockets, ptrace, mounts and id changes are denied with EPERM", () => {
  for (const name of VM_DENIED_EXAMPLES) {
    assert.equal(verdict(syscallNumber(name)), EPERM, name);
    assert.ok(!vmAllowList().includes(name), `${name} is on the allow-list`);
  }
  // A number no kernel has yet is denied too.
  assert.equal(verdict(600), EPERM);
});

Deno.test("seccomp: clone makes threads, not processes; clone3 falls back with ENOSYS", () => {
  const clone = syscallNumber("clone");
  const threadFlags = 0x3d0f00; // glibc's pthread_create flags
  assert.ok((threadFlags & CLONE_THREAD) !== 0);
  assert.equal(verdict(clone, [threadFlags]), SECCOMP_RET.ALLOW);
  assert.equal(verdict(clone, [0x01200011]), EPERM, "fork()'s clone flags");
  assert.equal(verdict(syscallNumber("clone3")), SECCOMP_RET.ERRNO | 38);
});

Deno.test("seccomp: tgkill reaches this process only; other architectures and x32 are killed", () => {
  const tgkill = syscallNumber("tgkill");
  assert.equal(verdict(tgkill, [4242, 7, 12]), SECCOMP_RET.ALLOW);
  assert.equal(verdict(tgkill, [4243, 7, 12]), EPERM);
  assert.equal(verdict(0, [], 0x40000003 /* i386 */), SECCOMP_RET.KILL_PROCESS);
  assert.equal(verdict(0x40000000 | 1), SECCOMP_RET.KILL_PROCESS, "x32 write");
  assert.equal(verdict(1, [], AUDIT_ARCH_X86_64), SECCOMP_RET.ALLOW);
});

Deno.test("seccomp: a logging filter (to measure a workload) logs instead of denying", () => {
  const prog = buildVmFilter({ deny: SECCOMP_RET.LOG });
  assert.equal(runFilter(prog, { nr: syscallNumber("execve") }), SECCOMP_RET.LOG);
  assert.equal(runFilter(prog, { nr: syscallNumber("read") }), SECCOMP_RET.ALLOW);
});

Deno.test("seccomp: the program encodes as struct sock_filter[] within the kernel's limits", () => {
  const prog = buildVmFilter();
  const bytes = encodeFilter(prog);
  assert.equal(bytes.length, prog.length * 8);
  assert.ok(prog.length < 4096);
  const v = new DataView(bytes.buffer);
  // ld [4] (arch): BPF_LD|BPF_W|BPF_ABS = 0x20, k = 4
  assert.deepEqual([v.getUint16(0, true), v.getUint8(2), v.getUint8(3), v.getUint32(4, true)], [
    0x20,
    0,
    0,
    4,
  ]);
  // jeq AUDIT_ARCH_X86_64, 1, 0
  assert.deepEqual([v.getUint16(8, true), v.getUint8(10), v.getUint8(11)], [0x15, 1, 0]);
  assert.equal(v.getUint32(12, true), AUDIT_ARCH_X86_64);
  // Every jump stays inside the program.
  prog.forEach((insn, i) => {
    if ((insn.code & 0x07) === 0x05) assert.ok(i + 1 + Math.max(insn.jt, insn.jf) < prog.length);
  });
  assert.throws(() => encodeFilter([]), RangeError);
});
