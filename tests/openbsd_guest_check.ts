/**
 * One test guest booted over the vmm(4) emulation (`accel =
 * "openbsd-on-kvm"`) and checked against what QEMU prints
 * (guests/expectations.ts); shared by the Intel and AMD personality runs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { compareSerial, type GuestExpectation } from "../guests/expectations.ts";
import { guestPath } from "../guests/images.ts";
import { bootGuest } from "./boot.ts";

/** Guests that measure time: a loaded host may make them miss; they get this many tries. */
const TIMING_SENSITIVE: Readonly<Record<string, number>> = { timer: 5 };

/** Boots `e` over the emulation and asserts its serial output and end. */
export async function checkGuestOverEmulation(e: GuestExpectation): Promise<void> {
  const boot = () =>
    bootGuest({
      kernel: guestPath(e.name),
      cmdline: e.cmdline,
      accel: "openbsd-on-kvm",
      timeoutMs: 180_000,
    });
  const attempts = TIMING_SENSITIVE[e.name] ?? 1;
  let r = await boot();
  for (let i = 1; i < attempts && compareSerial(e.lines, r.serial) !== undefined; i++) {
    console.warn(`${e.name}: attempt ${i} missed its timing (${r.serial.split("\n")[1]}), again`);
    r = await boot();
  }
  const diff = compareSerial(e.lines, r.serial);
  assert.equal(
    diff,
    undefined,
    `${diff}\n--- serial ---\n${r.serial}\n${JSON.stringify(r.outcome)}`,
  );
  if (e.end.kind === "triple-fault") {
    assert.equal(r.outcome.kind, "triple-fault");
  } else if (e.end.kind === "poweroff") {
    assert.equal(r.outcome.kind, "poweroff");
    assert.equal(r.status, 0);
  } else {
    assert.equal(r.status, e.status, JSON.stringify(r.outcome));
  }
}
