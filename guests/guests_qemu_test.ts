// The guests under QEMU: proves the guests themselves (and the expectations
// vmmctl's tests reuse) against an emulator nobody here wrote. TCG always;
// KVM (slow here: SeaBIOS runs emulated) with VMMCTL_QEMU_KVM=1.
import assert from "node:assert/strict";
import { isQemuInstalled, type QemuOptions, runQemu } from "../tests/qemu.ts";
import {
  compareSerial,
  expectationLabel,
  GUEST_EXPECTATIONS,
  type GuestExpectation,
  RTC_LINE,
  serialLines,
} from "./expectations.ts";
import { guestPath } from "./images.ts";

const qemuInstalled = isQemuInstalled();
const kvmWanted = Deno.env.get("VMMCTL_QEMU_KVM") === "1";

async function runAndCheck(
  expectation: GuestExpectation,
  accel: QemuOptions["accel"],
  machine: QemuOptions["machine"] = "pc",
): Promise<string> {
  const result = await runQemu({
    kernel: guestPath(expectation.name),
    cmdline: expectation.cmdline,
    accel,
    machine,
    timeoutMs: accel === "kvm" ? 120_000 : 30_000,
  });
  assert.ok(result, "qemu-system-x86_64 disappeared");
  const context = `serial:\n${result.serial}\nstderr:\n${result.stderr}`;
  assert.equal(result.timedOut, false, `timed out\n${context}`);
  assert.equal(compareSerial(expectation.lines, result.serial), undefined, context);
  assert.equal(result.status, expectation.status, context);
  return result.serial;
}

for (const expectation of GUEST_EXPECTATIONS) {
  Deno.test({
    name: `qemu tcg: ${expectationLabel(expectation)}`,
    ignore: !qemuInstalled,
    async fn() {
      await runAndCheck(expectation, "tcg");
    },
  });
  Deno.test({
    name: `qemu kvm: ${expectationLabel(expectation)}`,
    ignore: !qemuInstalled || !kvmWanted,
    async fn() {
      await runAndCheck(expectation, "kvm");
    },
  });
}

const demo = GUEST_EXPECTATIONS.find((e) => e.name === "demo")!;

Deno.test({
  name: "qemu tcg: demo powers off through port 0x604 on q35 too",
  ignore: !qemuInstalled,
  async fn() {
    await runAndCheck(demo, "tcg", "q35");
  },
});

Deno.test({
  name: "qemu tcg: demo prints the host's UTC time (QEMU's RTC default)",
  ignore: !qemuInstalled,
  async fn() {
    const before = Date.now();
    const serial = await runAndCheck(demo, "tcg");
    const line = serialLines(serial).find((l) => RTC_LINE.test(l))!;
    const [, year, month, day, hour, minute, second] = line.match(RTC_LINE)!.map(Number);
    const guestMs = Date.UTC(year, month - 1, day, hour, minute, second);
    // Whole seconds, read after the guest's 100 ms of ticks.
    assert.ok(
      guestMs >= before - 2000 && guestMs <= Date.now() + 1000,
      `${line} vs ${new Date(before).toISOString()}`,
    );
  },
});
