import assert from "node:assert/strict";
import { parseConfig } from "../config/parse.ts";
import { childrenCpuMs, timeChild, timevalMs, vmmctlToml } from "./child.ts";
import { MICROVM_MACHINE, qemuBenchArgs, qemuLabel, qemuUnsupported } from "./qemu_ref.ts";
import { recordingLibc } from "./stage_worker.ts";
import type { IoctlRequest, Libc } from "../ffi/libc.ts";

Deno.test("timevalMs reads seconds and microseconds", () => {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setBigInt64(16, 2n, true);
  v.setBigInt64(24, 500_250n, true);
  assert.equal(timevalMs(b, 16), 2500.25);
});

Deno.test("vmmctlToml is a config vmmctl accepts, with the bench's settings", () => {
  const text = vmmctlToml({ kernel: "/k/hello.bin", cmdline: 'n="1"', memoryMiB: 64 });
  const r = parseConfig(text, { baseDir: "/", checkFiles: false });
  assert.ok(r.config, JSON.stringify(r.errors));
  assert.equal(r.config.vm.memoryBytes, 64 * 1024 * 1024);
  assert.equal(r.config.boot.kernel, "/k/hello.bin");
  assert.equal(r.config.boot.cmdline, 'n="1"');
  assert.equal(r.config.console.serial, "stdio");
  assert.equal(r.config.debug.exitPort, 0xf4);
});

Deno.test("timeChild: first stdout byte before exit, status, and the child's CPU time", async () => {
  const before = childrenCpuMs();
  // Prints, then burns CPU for a while, then exits 3.
  const r = await timeChild(
    "sh",
    ["-c", "echo hi; i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done; exit 3"],
    { timeoutMs: 20_000 },
  );
  assert.equal(r.stdout, "hi\n");
  assert.equal(r.status, 3);
  assert.equal(r.timedOut, false);
  assert.ok(r.firstByteMs !== undefined && r.firstByteMs <= r.exitMs);
  assert.ok(r.cpuMs > 0, `cpu ${r.cpuMs}`);
  assert.ok(childrenCpuMs() >= before + r.cpuMs - 1e-6);
});

Deno.test("timeChild kills at the timeout and onFirstByte can stop the child early", async () => {
  const t = await timeChild("sleep", ["30"], { timeoutMs: 200 });
  assert.equal(t.timedOut, true);
  assert.equal(t.status, 137);
  let seenPid = 0;
  const s = await timeChild("sh", ["-c", "echo up; exec sleep 30"], {
    timeoutMs: 20_000,
    onFirstByte: (pid, kill) => {
      seenPid = pid;
      kill("SIGTERM");
    },
  });
  assert.ok(seenPid > 0);
  assert.equal(s.timedOut, false);
  assert.equal(s.status, 143);
});

Deno.test("qemuBenchArgs: machine, accelerator, memory and the debug exit device", () => {
  const a = qemuBenchArgs("microvm-kvm", { kernel: "/k", memoryMiB: 64, cmdline: "n=1" });
  assert.deepEqual(a.slice(0, 4), ["-machine", MICROVM_MACHINE, "-accel", "kvm"]);
  assert.equal(a[a.indexOf("-m") + 1], "64");
  assert.equal(a[a.indexOf("-kernel") + 1], "/k");
  assert.equal(a[a.indexOf("-append") + 1], "n=1");
  assert.ok(a.includes("isa-debug-exit,iobase=0xf4,iosize=4"));
  const pc = qemuBenchArgs("pc-tcg", { kernel: "/k", memoryMiB: 32 });
  assert.deepEqual(pc.slice(0, 4), ["-machine", "pc", "-accel", "tcg"]);
  assert.ok(!pc.includes("-append"));
  assert.equal(qemuLabel("pc-kvm"), "QEMU pc KVM");
  assert.match(qemuUnsupported("microvm-tcg", true)!, /8259/);
  assert.equal(qemuUnsupported("pc-tcg", true), undefined);
  assert.equal(qemuUnsupported("microvm-kvm", false), undefined);
});

Deno.test("recordingLibc notes stage ioctls (first or last call) and passes calls through", () => {
  const calls: string[] = [];
  const fake = {
    os: "linux",
    ioctl(_fd: number, req: IoctlRequest) {
      calls.push(req.name);
      return 7;
    },
    ioctlTry(_fd: number, req: IoctlRequest) {
      calls.push(`try ${req.name}`);
      return -4;
    },
    getpid() {
      return this === fake ? 42 : -1; // bound to the real object, not the proxy
    },
  } as unknown as Libc;
  const noted: string[] = [];
  const libc = recordingLibc(fake, (name, last) => noted.push(`${name}${last ? " (last)" : ""}`));
  const req = (name: string) => ({ name, code: 0 }) as unknown as IoctlRequest;
  assert.equal(libc.ioctl(3, req("KVM_CREATE_VM")), 7);
  assert.equal(libc.ioctl(3, req("KVM_SET_USER_MEMORY_REGION"), new Uint8Array(1)), 7);
  assert.equal(libc.ioctl(3, req("KVM_GET_REGS")), 7);
  assert.equal(libc.ioctlTry(3, req("KVM_RUN"), 0, ["EINTR"]), -4);
  assert.equal(libc.getpid(), 42);
  assert.deepEqual(calls, [
    "KVM_CREATE_VM",
    "KVM_SET_USER_MEMORY_REGION",
    "KVM_GET_REGS",
    "try KVM_RUN",
  ]);
  assert.deepEqual(noted, [
    "VM created",
    "guest memory mapped (last)",
    "first KVM_RUN (first guest instruction)",
  ]);
});
