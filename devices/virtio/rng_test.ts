import assert from "node:assert/strict";
import { GuestMemory } from "../../core/guest_memory.ts";
import { Virtqueue } from "./queue.ts";
import { VirtioRng } from "./rng.ts";
import { DriverRing } from "./testing.ts";

function setup(_rng: VirtioRng) {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }]);
  const q = new Virtqueue(64);
  q.descGpa = 0x1000;
  q.availGpa = 0x2000;
  q.usedGpa = 0x3000;
  q.activate(mem, { indirect: true, eventIdx: false });
  const ring = new DriverRing(mem, {
    size: 64,
    descGpa: 0x1000,
    availGpa: 0x2000,
    usedGpa: 0x3000,
  });
  return { mem, q, ring };
}

Deno.test("rng: fills every writable buffer of the chain and reports the length", () => {
  let n = 0;
  const rng = new VirtioRng("rng", (into) => into.forEach((_, i) => into[i] = (n++ * 7) & 0xff));
  const { mem, q, ring } = setup(rng);
  ring.post([{ gpa: 0x8000, length: 3, write: true }, { gpa: 0x9000, length: 2, write: true }]);
  const chain = q.pop()!;
  assert.equal(rng.handle(0, chain), 5);
  assert.deepEqual([...mem.read(0x8000, 3), ...mem.read(0x9000, 2)], [0, 7, 14, 21, 28]);
});

Deno.test("rng: the platform source gives different bytes each time; readable-only chains get 0", () => {
  const rng = new VirtioRng();
  const { mem, q, ring } = setup(rng);
  ring.post([{ gpa: 0x8000, length: 64, write: true }]);
  ring.post([{ gpa: 0x9000, length: 64, write: true }]);
  rng.handle(0, q.pop()!);
  rng.handle(0, q.pop()!);
  assert.notDeepEqual(mem.read(0x8000, 64), mem.read(0x9000, 64));
  assert.ok(mem.read(0x8000, 64).some((b) => b !== 0));
  ring.post([{ gpa: 0xa000, length: 16 }]);
  assert.equal(rng.handle(0, q.pop()!), 0);
});

Deno.test("rng: a huge buffer is served up to the per-request limit", () => {
  const rng = new VirtioRng("rng", (into) => into.fill(0xab));
  const { mem, q, ring } = setup(rng);
  ring.post([{ gpa: 0x10000, length: 0x20000, write: true }]);
  assert.equal(rng.handle(0, q.pop()!), 65536);
  assert.equal(mem.readU8(0x10000 + 65535), 0xab);
  assert.equal(mem.readU8(0x10000 + 65536), 0);
});
