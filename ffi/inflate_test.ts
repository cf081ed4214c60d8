import assert from "node:assert/strict";
import { constants, deflateRawSync, gzipSync } from "node:zlib";
import {
  crc32,
  gunzip,
  gunzipPrefix,
  InflateError,
  InflateLimitError,
  inflateRaw,
} from "./inflate.ts";

/** Deterministic test data: random bytes, text-like runs and long repeats. */
function sample(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16;
  for (let i = 0; i < size;) {
    const kind = next() % 3;
    const run = 1 + (next() % 300);
    for (let j = 0; j < run && i < size; j++, i++) {
      out[i] = kind === 0
        ? next() & 0xff
        : kind === 1
        ? 97 + (next() % 6)
        : out[Math.max(0, i - 37)];
    }
  }
  return out;
}

Deno.test("inflate: agrees with zlib on every level, strategy and size", () => {
  const strategies = [
    constants.Z_DEFAULT_STRATEGY,
    constants.Z_FILTERED,
    constants.Z_HUFFMAN_ONLY,
    constants.Z_RLE,
    constants.Z_FIXED,
  ];
  for (const size of [0, 1, 100, 65535, 65536 + 7, 300_000]) {
    for (let level = 0; level <= 9; level += 3) {
      for (const strategy of strategies) {
        const data = sample(size + level * 7 + strategy, size);
        const packed = new Uint8Array(deflateRawSync(data, { level, strategy }));
        assert.deepEqual(
          inflateRaw(packed),
          data,
          `size ${size} level ${level} strategy ${strategy}`,
        );
      }
    }
  }
});

Deno.test("gunzip: header fields, CRC and size are checked; members are concatenated", () => {
  const a = sample(1, 5000);
  const b = sample(2, 777);
  const gz = new Uint8Array(gzipSync(a));
  assert.deepEqual(gunzip(gz), a);
  const two = new Uint8Array([...gz, ...new Uint8Array(gzipSync(b))]);
  assert.deepEqual(gunzip(two), new Uint8Array([...a, ...b]));
  // A file name in the header (FNAME), as `gzip` writes it.
  const named = new Uint8Array([
    0x1f,
    0x8b,
    8,
    8,
    0,
    0,
    0,
    0,
    0,
    3,
    ...new TextEncoder().encode("bsd\0"),
    ...gz.subarray(10),
  ]);
  assert.deepEqual(gunzip(named), a);
  const badCrc = gz.slice();
  badCrc[badCrc.length - 8] ^= 1;
  assert.throws(() => gunzip(badCrc), /gzip CRC mismatch/);
  assert.throws(() => gunzip(gz.subarray(0, gz.length - 3)), InflateError);
  assert.throws(() => gunzip(new Uint8Array(20)), /not gzip data/);
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("inflate: malformed streams fail with InflateError, never loop or read past the input", () => {
  assert.throws(() => inflateRaw(new Uint8Array([0x07])), /invalid block type 3/);
  assert.throws(() => inflateRaw(new Uint8Array([0x01, 0x05, 0x00, 0x00, 0x00])), /length check/);
  assert.throws(() => inflateRaw(new Uint8Array([])), /ends early/);
  const big = new Uint8Array(deflateRawSync(new Uint8Array(10000)));
  assert.equal(inflateRaw(big, 10000).length, 10000);
  assert.throws(() => inflateRaw(big, 9999), /larger than the 9999 bytes allowed/);
  const packed = new Uint8Array(deflateRawSync(sample(9, 20000)));
  for (const cut of [1, 10, packed.length >> 1, packed.length - 1]) {
    assert.throws(() => inflateRaw(packed.subarray(0, cut)), InflateError, `cut at ${cut}`);
  }
  // Random garbage: only InflateError may come out.
  for (let seed = 1; seed < 300; seed++) {
    try {
      inflateRaw(sample(seed, 64));
    } catch (e) {
      assert.ok(e instanceof InflateError, String(e));
    }
  }
});

Deno.test("gunzip: output past the cap is refused as it happens, members counted together", () => {
  const mib = new Uint8Array(gzipSync(new Uint8Array(1 << 20)));
  // 64 members of 1 MiB of zeros: 64 MiB of output from 64 KiB of input.
  const many = new Uint8Array(mib.length * 64);
  for (let i = 0; i < 64; i++) many.set(mib, i * mib.length);
  assert.equal(gunzip(many, 64 << 20).length, 64 << 20);
  assert.throws(() => gunzip(many, (64 << 20) - 1), InflateLimitError);
  assert.throws(() => gunzip(mib, 1000), (e) => e instanceof InflateLimitError && e.limit === 1000);
});

Deno.test("gunzipPrefix: the head of the output, decompressing only that far", () => {
  const data = sample(4, 200_000);
  for (const level of [0, 1, 9]) {
    const gz = new Uint8Array(gzipSync(data, { level }));
    for (const n of [0, 1, 64, 65535, 65536 + 3, 199_999]) {
      assert.deepEqual(gunzipPrefix(gz, n), data.subarray(0, n), `level ${level} prefix ${n}`);
    }
    assert.deepEqual(gunzipPrefix(gz, 300_000), data); // shorter than asked: all of it
  }
  // A member that expands 1000-fold but is cut short: its head is all we need and can read.
  const zeros = new Uint8Array(gzipSync(new Uint8Array(16 << 20)));
  assert.deepEqual(gunzipPrefix(zeros.subarray(0, 200), 4096), new Uint8Array(4096));
  assert.throws(() => gunzipPrefix(new Uint8Array(30), 4), /not gzip data/);
});
