import assert from "node:assert/strict";
import { FakeClock, inb, inN, outb, outN } from "./fakes.ts";
import { POST_HISTORY_LENGTH, PostPort } from "./post.ts";

Deno.test("post: records codes with their time; reads return the last", () => {
  const clock = new FakeClock(100);
  const post = new PostPort(clock);
  assert.equal(inb(post, 0), 0);
  outb(post, 0, 0x12);
  clock.advanceNs(50);
  outb(post, 0, 0x34);
  assert.equal(inb(post, 0), 0x34);
  assert.equal(post.lastCode, 0x34);
  assert.deepEqual(post.entries(), [{ code: 0x12, atNs: 100 }, { code: 0x34, atNs: 150 }]);
  assert.deepEqual(post.codes(), [0x12, 0x34]);
});

Deno.test("post: keeps only the last 1024 codes", () => {
  const clock = new FakeClock();
  const post = new PostPort(clock);
  for (let i = 0; i < 3000; i++) {
    clock.timeNs = i;
    outb(post, 0, i & 0xff);
  }
  const entries = post.entries();
  assert.equal(entries.length, POST_HISTORY_LENGTH);
  assert.deepEqual(entries[0], { code: (3000 - 1024) & 0xff, atNs: 3000 - 1024 });
  assert.deepEqual(entries.at(-1), { code: 2999 & 0xff, atNs: 2999 });
});

Deno.test("post: wide accesses use the low byte", () => {
  const post = new PostPort(new FakeClock());
  outN(post, 0, 2, 0xbeef);
  assert.deepEqual(post.codes(), [0xef]);
  assert.equal(inN(post, 0, 4), 0xef);
});
