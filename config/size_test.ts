import assert from "node:assert/strict";
import { formatSize, parseSize, scaledMegabytes, scanScaled, SizeError } from "./size.ts";

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;
const T = 1024 * G;

Deno.test("parseSize: plain byte counts, as numbers and strings", () => {
  assert.equal(parseSize(0), 0);
  assert.equal(parseSize(4096), 4096);
  assert.equal(parseSize("512"), 512);
  assert.equal(parseSize("512B"), 512);
  assert.equal(parseSize(" 7 "), 7);
  assert.equal(parseSize(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
});

Deno.test("parseSize: every unit and spelling is binary", () => {
  const cases: [string, number][] = [
    ["64K", 64 * K],
    ["64k", 64 * K],
    ["64KB", 64 * K],
    ["64KiB", 64 * K],
    ["64kib", 64 * K],
    ["256M", 256 * M],
    ["256MB", 256 * M],
    ["256MiB", 256 * M],
    ["256 M", 256 * M],
    ["2G", 2 * G],
    ["2GB", 2 * G],
    ["2GiB", 2 * G],
    ["1T", T],
    ["1TiB", T],
    ["0G", 0],
    ["0010M", 10 * M],
  ];
  for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
});

Deno.test("parseSize: rejects what is not a size, with the reason", () => {
  const cases: [string | number, string][] = [
    ["512Q", 'cannot parse size "512Q": unknown unit "Q"'],
    ["1KQ", 'cannot parse size "1KQ": unknown unit "KQ"'],
    ["1MiBs", 'cannot parse size "1MiBs": unknown unit "MiBs"'],
    ["1iB", 'cannot parse size "1iB": unknown unit "iB"'],
    ["-5", 'cannot parse size "-5": must not be negative'],
    ["-5M", 'cannot parse size "-5M": must not be negative'],
    ["1.5G", 'cannot parse size "1.5G": fractions are not supported, use a smaller unit'],
    ["", 'cannot parse size "": empty'],
    ["   ", 'cannot parse size "   ": empty'],
    ["M", 'cannot parse size "M": expected digits followed by an optional unit K, M, G or T'],
    [
      "0x100",
      'cannot parse size "0x100": expected digits followed by an optional unit K, M, G or T',
    ],
    [
      "1 G B",
      'cannot parse size "1 G B": expected digits followed by an optional unit K, M, G or T',
    ],
    ["+5", 'cannot parse size "+5": expected digits followed by an optional unit K, M, G or T'],
    ["8193T", 'cannot parse size "8193T": too large'],
    ["99999999999999999999", 'cannot parse size "99999999999999999999": too large'],
    [-5, "cannot parse size -5: must not be negative"],
    [1.5, "cannot parse size 1.5: not a whole number of bytes"],
    [NaN, "cannot parse size NaN: not a number"],
    [Infinity, "cannot parse size Infinity: not a number"],
    [2 ** 53, "cannot parse size 9007199254740992: too large"],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseSize(text), (e: unknown) => {
      assert.ok(e instanceof SizeError, `${text}: ${e}`);
      assert.equal(e.message, message);
      assert.equal(e.name, "SizeError");
      return true;
    });
  }
});

Deno.test("parseSize: the largest T count that fits in a safe integer", () => {
  // 8191 T = 2^53 - 2^40 <= MAX_SAFE_INTEGER; 8192 T = 2^53 does not fit.
  assert.equal(parseSize("8191T"), 8191 * T);
  assert.throws(() => parseSize("8192T"), /too large/);
});

Deno.test("formatSize: largest unit that divides exactly", () => {
  assert.equal(formatSize(0), "0");
  assert.equal(formatSize(1), "1");
  assert.equal(formatSize(4095), "4095");
  assert.equal(formatSize(4096), "4K");
  assert.equal(formatSize(1536), "1536");
  assert.equal(formatSize(1536 * K), "1536K");
  assert.equal(formatSize(256 * M), "256M");
  assert.equal(formatSize(G), "1G");
  assert.equal(formatSize(1025 * G), "1025G");
  assert.equal(formatSize(T), "1T");
  assert.equal(formatSize(3 * T), "3T");
  assert.equal(formatSize(16777217), "16777217");
});

Deno.test("formatSize: rejects what is not a byte count", () => {
  assert.throws(() => formatSize(-1), RangeError);
  assert.throws(() => formatSize(1.5), RangeError);
  assert.throws(() => formatSize(2 ** 53), RangeError);
});

Deno.test("formatSize and parseSize round-trip", () => {
  const values = [0, 1, 1023, 1024, 1025, 4096, 65536, 3 * M, 256 * M + 4096, 5 * G, 7 * T];
  for (let bits = 0; bits < 53; bits += 3) values.push(2 ** bits, 2 ** bits + 1);
  for (const bytes of values) assert.equal(parseSize(formatSize(bytes)), bytes, String(bytes));
});

Deno.test("scanScaled: scan_scaled(3)'s units, fractions and errors", () => {
  assert.equal(scanScaled("512"), 512);
  assert.equal(scanScaled("1k"), 1024);
  assert.equal(scanScaled("4.5G"), 4.5 * 1024 ** 3);
  assert.equal(scanScaled("1.25M"), 1.25 * 1024 ** 2);
  assert.equal(scanScaled(".5K"), 512);
  assert.throws(() => scanScaled("2E"), /Result too large/);
  for (const bad of ["", "M", "1Q", "1 M", "1MB", "0x10", "1..2"]) {
    assert.throws(() => scanScaled(bad), /Invalid argument/, bad);
  }
});

Deno.test("scaledMegabytes: at least one megabyte, rounded down to megabytes", () => {
  assert.deepEqual(scaledMegabytes("1M"), { megabytes: 1, rounded: false });
  assert.deepEqual(scaledMegabytes("1.5M"), { megabytes: 1, rounded: true });
  assert.deepEqual(scaledMegabytes("4.5G"), { megabytes: 4608, rounded: false });
  for (const small of ["1", "512K", "1048575"]) {
    assert.throws(() => scaledMegabytes(small), /size must be at least one megabyte/, small);
  }
});
