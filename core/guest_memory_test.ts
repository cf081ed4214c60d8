import assert from "node:assert/strict";
import { gpaFromBigint, gpaFromHalves, GuestMemory, GuestMemoryError } from "./guest_memory.ts";

const mem = () =>
  GuestMemory.anonymous([{ gpa: 0, size: 0x10000 }, { gpa: 0x1_0000_0000, size: 0x1000 }]);

Deno.test("guest memory: reads and writes inside regions", () => {
  const m = mem();
  m.writeU32(0x100, 0xdeadbeef);
  assert.equal(m.readU32(0x100), 0xdeadbeef);
  assert.equal(m.readU8(0x103), 0xde);
  m.writeU64(0x1_0000_0ff8, 0x0102030405060708n);
  assert.equal(m.readU64(0x1_0000_0ff8), 0x0102030405060708n);
  m.write(0x200, new TextEncoder().encode("hi\0x"));
  assert.equal(m.readCString(0x200, 16), "hi");
  assert.equal(m.size, 0x11000);
  assert.equal(m.end, 0x1_0000_1000);
});

Deno.test("guest memory: every out-of-range or overflowing access is a GuestMemoryError", () => {
  const m = mem();
  const bad: [number, number][] = [
    [0xffff, 2], // crosses the end of a region
    [0x10000, 1], // in the hole
    [0x1_0000_0fff, 2],
    [-1, 1],
    [0, -1],
    [Number.MAX_SAFE_INTEGER, 1],
    [0, Number.MAX_SAFE_INTEGER], // would overflow if added naively
    [0.5, 1],
    [NaN, 1],
    [2 ** 64, 1],
  ];
  for (const [gpa, len] of bad) {
    assert.throws(() => m.slice(gpa, len), GuestMemoryError, `${gpa}+${len}`);
    assert.equal(m.contains(gpa, len), false);
  }
  assert.throws(() => m.readU32(0xfffe), GuestMemoryError);
  assert.throws(() => gpaFromBigint(1n << 60n), GuestMemoryError);
  assert.equal(gpaFromBigint(0x1234n), 0x1234);
  assert.equal(gpaFromHalves(0x1, 0x2000), 0x1_0000_2000);
  assert.throws(() => gpaFromHalves(1 << 20, 0), GuestMemoryError);
  assert.equal(m.contains(0xfff0, 0x10), true);
  assert.equal(m.slice(0, 0).length, 0);
});

Deno.test("guest memory: overlapping regions are refused", () => {
  assert.throws(
    () => GuestMemory.anonymous([{ gpa: 0, size: 0x2000 }, { gpa: 0x1000, size: 0x1000 }]),
    /overlap/,
  );
});
