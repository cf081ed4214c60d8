import assert from "node:assert/strict";
import { Bus } from "./bus.ts";
import type { BusDevice } from "./device.ts";

const dev = (name: string): BusDevice => ({ name, read: (o, d) => d.fill(o), write: () => {} });

Deno.test("bus: rejects overlapping inserts and bad ranges", () => {
  const bus = new Bus("pio");
  bus.insert(0x20, 2, dev("pic"));
  bus.insert(0x22, 2, dev("next"));
  assert.throws(() => bus.insert(0x21, 1, dev("x")), /overlaps "pic"/);
  assert.throws(() => bus.insert(0x1f, 2, dev("x")), /overlaps/);
  assert.throws(() => bus.insert(0, 0, dev("x")), /Cannot insert/);
  assert.throws(() => bus.insert(-1, 1, dev("x")), /Cannot insert/);
});

Deno.test("bus: routes only accesses wholly inside one range, at the device's offset", () => {
  const bus = new Bus("mmio");
  const a = dev("a");
  bus.insert(0x1000, 0x10, a);
  bus.insert(0x2000, 0x10, dev("b"));
  const d = new Uint8Array(4);
  assert.equal(bus.read(0x1004, d), true);
  assert.deepEqual([...d], [4, 4, 4, 4]);
  assert.equal(bus.read(0x100e, d), false, "straddles the end");
  assert.equal(bus.read(0xfff, new Uint8Array(1)), false);
  assert.equal(bus.find(0x2000, 16)?.device.name, "b");
  assert.equal(bus.remove(a), true);
  assert.equal(bus.read(0x1004, d), false);
  bus.insert(0x3000, 0x10, a); // a device can move (PCI BAR relocation)
  assert.equal(bus.find(0x3001, 1)?.device, a);
});

Deno.test("tryInsert: an overlap returns the range in the way and changes nothing", () => {
  const bus = new Bus("pio");
  const a = { name: "a", read: () => {}, write: () => {} };
  const b = { name: "b", read: () => {}, write: () => {} };
  assert.equal(bus.tryInsert(0x10, 8, a), undefined);
  assert.equal(bus.tryInsert(0x14, 8, b)?.device, a);
  assert.equal(bus.ranges.length, 1);
  assert.equal(bus.tryInsert(0x18, 8, b), undefined);
  assert.throws(() => bus.insert(0x17, 2, b), /"b" at 0x17\+0x2 overlaps "a" at 0x10\+0x8/);
});
