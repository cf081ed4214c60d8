import assert from "node:assert/strict";
import { isQemuInstalled, qemuArgs, runQemu } from "./qemu.ts";
import { guestPath } from "../guests/images.ts";

Deno.test("qemuArgs builds the oracle machine and appends the command line", () => {
  const args = qemuArgs({ kernel: "k.bin", cmdline: "a=1 b", accel: "kvm", memoryMiB: 64 });
  const after = (flag: string) => args[args.indexOf(flag) + 1];
  assert.equal(after("-machine"), "pc");
  assert.equal(after("-accel"), "kvm");
  assert.equal(after("-kernel"), "k.bin");
  assert.equal(after("-device"), "isa-debug-exit,iobase=0xf4,iosize=4");
  assert.equal(after("-serial"), "stdio");
  assert.equal(after("-append"), "a=1 b");
  assert.ok(args.includes("-no-reboot") && args.includes("-nodefaults"));
  assert.equal(after("-m"), "64");
  const noCmdline = qemuArgs({ kernel: "k.bin", accel: "tcg", machine: "q35" });
  assert.equal(noCmdline.includes("-append"), false);
  assert.equal(noCmdline[noCmdline.indexOf("-machine") + 1], "q35");
  assert.equal(noCmdline.includes("-m"), false, "QEMU's default memory unless given");
});

Deno.test({
  name: "runQemu kills QEMU at the timeout",
  ignore: !isQemuInstalled(),
  async fn() {
    // SeaBIOS alone takes longer than 50 ms, so the guest cannot finish first.
    const result = await runQemu({ kernel: guestPath("hello"), accel: "tcg", timeoutMs: 50 });
    assert.ok(result);
    assert.equal(result.timedOut, true);
    assert.notEqual(result.status, 33);
    assert.ok(result.elapsedMs < 5000, `took ${result.elapsedMs} ms`);
  },
});

Deno.test({
  name: "runQemu reports the debug-exit status and the serial output",
  ignore: !isQemuInstalled(),
  async fn() {
    const result = await runQemu({
      kernel: guestPath("hello"),
      cmdline: "x=1",
      accel: "tcg",
      timeoutMs: 20_000,
    });
    assert.ok(result);
    assert.equal(result.timedOut, false);
    assert.equal(result.status, (0x10 << 1) | 1);
    assert.match(result.serial, /^Hello from vmmctl guest\r\ncmdline: \S+ x=1\r\nbye\r\n$/);
  },
});
