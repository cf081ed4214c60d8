import assert from "node:assert/strict";
import { EventRing } from "./event_ring.ts";

Deno.test("event ring: events come out in order, across a wrap, and a full ring drops", () => {
  const r = new EventRing(2, 4);
  assert.equal(r.push([1, 10]), true);
  assert.equal(r.push([2, 20]), true);
  const got: number[][] = [];
  r.drain((e) => got.push([...e]));
  assert.deepEqual(got, [[1, 10], [2, 20]]);
  for (let i = 0; i < 3; i++) assert.equal(r.push([i, i]), true);
  assert.equal(r.push([9, 9]), false, "capacity 4 keeps one slot free");
  assert.equal(r.pending, true);
  got.length = 0;
  r.drain((e) => got.push([...e]));
  assert.deepEqual(got, [[0, 0], [1, 1], [2, 2]]);
  assert.equal(r.pending, false);
});

Deno.test("event ring: a second view over the same buffer sees the events", () => {
  const a = new EventRing(3, 8);
  const b = new EventRing(3, 8, a.buffer);
  a.push([7, -1, 2 ** 31 - 1]);
  const got: number[][] = [];
  b.drain((e) => got.push([...e]));
  assert.deepEqual(got, [[7, -1, 2 ** 31 - 1]]);
  assert.throws(() => new EventRing(3, 8, new SharedArrayBuffer(8)), RangeError);
});
