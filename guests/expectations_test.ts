import assert from "node:assert/strict";
import {
  compareSerial,
  debugExitStatus,
  expectationLabel,
  GUEST_EXPECTATIONS,
  lcgAfter,
  serialLines,
} from "./expectations.ts";
import { GUEST_NAMES } from "./images.ts";

Deno.test("lcgAfter matches stepping the LCG one iteration at a time", () => {
  let x = 1n;
  for (let i = 0; i <= 300; i++) {
    assert.equal(lcgAfter(BigInt(i)), x, `after ${i} steps`);
    x = (x * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
  }
  assert.throws(() => lcgAfter(-1n), RangeError);
});

Deno.test("debugExitStatus follows isa-debug-exit's (v << 1) | 1", () => {
  assert.equal(debugExitStatus(0x10), 33);
  assert.equal(debugExitStatus(0x7f), 255);
  assert.equal(debugExitStatus(0), 1);
});

Deno.test("serialLines splits at LF and drops CRs and the final empty line", () => {
  assert.deepEqual(serialLines("a\r\nb\nc\r\n"), ["a", "b", "c"]);
  assert.deepEqual(serialLines("a\r\n\r\nb"), ["a", "", "b"]);
  assert.deepEqual(serialLines(""), []);
});

Deno.test("compareSerial accepts exact output and names the first difference", () => {
  const expected = ["one", /^t\w+$/, "three"];
  assert.equal(compareSerial(expected, "one\r\ntwo\r\nthree\r\n"), undefined);
  assert.equal(
    compareSerial(expected, "one\r\n2\r\nthree\r\n"),
    'Line 2 is "2": expected /^t\\w+$/',
  );
  assert.equal(compareSerial(expected, "one\r\ntwo\r\n"), 'Line 3 is missing: expected "three"');
  assert.equal(
    compareSerial(expected, "one\r\ntwo\r\nthree\r\nfour\r\n"),
    'Line 4 "four" is extra',
  );
  assert.equal(
    compareSerial(expected, "one\r\ntwo\r\nthreE\r\n"),
    'Line 3 is "threE": expected "three"',
  );
});

Deno.test("every expectation names a built guest and a consistent status", () => {
  const labels = new Set<string>();
  for (const e of GUEST_EXPECTATIONS) {
    assert.ok(GUEST_NAMES.includes(e.name), e.name);
    assert.ok(e.lines.length > 0);
    const status = e.end.kind === "debug-exit" ? debugExitStatus(e.end.value) : 0;
    assert.equal(e.status, status, expectationLabel(e));
    assert.equal(labels.has(expectationLabel(e)), false, `duplicate ${expectationLabel(e)}`);
    labels.add(expectationLabel(e));
  }
  // Guests that never stop on their own (for other tests) need no entry.
  for (const name of ["hello", "demo", "timer", "rtc", "pci", "serial", "cpl3", "triple"]) {
    assert.ok(GUEST_EXPECTATIONS.some((e) => e.name === name), `no expectation for ${name}`);
  }
  assert.ok(GUEST_EXPECTATIONS.some((e) => e.name === "pioloop"));
});
