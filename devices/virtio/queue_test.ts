import assert from "node:assert/strict";
import { GuestMemory, GuestMemoryError } from "../../core/guest_memory.ts";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  Virtqueue,
  VirtqueueError,
} from "./queue.ts";
import { DriverRing, RecordingGuestMemory } from "./testing.ts";

const RAM = 0x40000;
const LAYOUT = { size: 8, descGpa: 0x1000, availGpa: 0x2000, usedGpa: 0x3000 };

function setup(features = { indirect: true, eventIdx: false }, mem?: GuestMemory) {
  const memory = mem ?? GuestMemory.anonymous([{ gpa: 0, size: RAM }]);
  const q = new Virtqueue(8);
  q.descGpa = LAYOUT.descGpa;
  q.availGpa = LAYOUT.availGpa;
  q.usedGpa = LAYOUT.usedGpa;
  q.enabled = true;
  q.activate(memory, features);
  return { mem: memory, q, ring: new DriverRing(memory, LAYOUT) };
}

Deno.test("queue: a chain of readable then writable buffers round-trips through the used ring", () => {
  const { mem, q, ring } = setup();
  mem.write(0x8000, new TextEncoder().encode("hello"));
  const head = ring.post([
    { gpa: 0x8000, length: 3 },
    { gpa: 0x8003, length: 2 },
    { gpa: 0x9000, length: 4, write: true },
  ]);
  assert.equal(q.pending(), 1);
  const chain = q.pop()!;
  assert.equal(chain.head, head);
  assert.equal(chain.readableBytes, 5);
  assert.equal(chain.writableBytes, 4);
  const got = new Uint8Array(5);
  assert.equal(chain.read(0, got), 5);
  assert.equal(new TextDecoder().decode(got), "hello");
  const part = new Uint8Array(3);
  assert.equal(chain.read(2, part), 3);
  assert.equal(new TextDecoder().decode(part), "llo");
  assert.equal(chain.write(1, Uint8Array.of(7, 8, 9, 10)), 3); // truncated at the end
  assert.deepEqual([...mem.read(0x9000, 4)], [0, 7, 8, 9]);
  assert.equal(q.pop(), undefined);
  q.pushUsed(chain.head, 4);
  assert.equal(ring.usedIdx(), 1);
  assert.deepEqual(ring.used(0), { id: head, length: 4 });
  assert.equal(q.shouldInterrupt(), true);
  assert.equal(q.shouldInterrupt(), false, "nothing new since the last check");
});

Deno.test("queue: legacy PFN layout puts the used ring on the next 4 KiB boundary", () => {
  const q = new Virtqueue(256);
  q.setLegacyPfn(0x10);
  assert.equal(q.descGpa, 0x10000);
  assert.equal(q.availGpa, 0x10000 + 16 * 256);
  assert.equal(q.usedGpa, 0x12000); // 0x11000 + 6 + 512 rounded up
  assert.equal(q.legacyPfn, 0x10);
  q.setLegacyPfn(0);
  assert.equal(q.enabled, false);
});

Deno.test("queue: head index >= size breaks the queue", () => {
  const { q, ring } = setup();
  ring.publish(8);
  assert.throws(() => q.pop(), VirtqueueError);
});

Deno.test("queue: next index >= size breaks the queue", () => {
  const { q, ring } = setup();
  ring.setDesc(0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 200);
  ring.publish(0);
  assert.throws(() => q.pop(), /descriptor index 200/);
});

Deno.test("queue: a descriptor loop stops at the hop limit", () => {
  const { q, ring } = setup();
  ring.setDesc(0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 1);
  ring.setDesc(1, 0x8000, 4, VIRTQ_DESC_F_NEXT, 0);
  ring.publish(0);
  assert.throws(() => q.pop(), /loops/);
  const self = setup();
  self.ring.setDesc(3, 0x8000, 4, VIRTQ_DESC_F_NEXT, 3);
  self.ring.publish(3);
  assert.throws(() => self.q.pop(), /loops/);
});

Deno.test("queue: the available index running more than size ahead breaks the queue", () => {
  const { q, ring } = setup();
  ring.setAvailIdx(9);
  assert.throws(() => q.pending(), /ahead/);
  assert.throws(() => q.pop(), VirtqueueError);
  const ok = setup();
  ok.ring.setAvailIdx(8); // exactly size is legal
  assert.equal(ok.q.pending(), 8);
});

Deno.test("queue: the available index wraps at 65536", () => {
  const { q, ring, mem } = setup();
  for (let i = 0; i < 70000; i++) {
    ring.setDesc(0, 0x8000, 4, 0, 0);
    ring.publish(0);
    const chain = q.pop()!;
    q.pushUsed(chain.head, 0);
  }
  assert.equal(ring.usedIdx(), 70000 & 0xffff);
  assert.equal(mem.readU16(LAYOUT.availGpa + 2), 70000 & 0xffff);
});

Deno.test("queue: buffers past RAM or overflowing addr+len break the queue", () => {
  for (
    const [gpa, length] of [
      [RAM - 2, 4],
      [RAM, 1],
      [2 ** 53 - 1, 0x10],
      [0xffff_ffff_ffff_f000n, 0x2000],
    ] as [number | bigint, number][]
  ) {
    const { q, ring } = setup();
    ring.setDesc(0, gpa, length, 0, 0);
    ring.publish(0);
    assert.throws(() => q.pop(), /outside guest RAM/, `buffer at ${gpa}`);
  }
});

Deno.test("queue: rings outside RAM or misaligned are refused at activation", () => {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: RAM }]);
  const cases: [number, number, number, RegExp][] = [
    [RAM - 16, 0x2000, 0x3000, /descriptor table/],
    [0x1000, RAM - 4, 0x3000, /available ring/],
    [0x1000, 0x2000, RAM - 8, /used ring/],
    [0x1008, 0x2000, 0x3000, /aligned/],
    [0x1000, 0x2000, 0x3002, /aligned/],
  ];
  for (const [desc, avail, used, re] of cases) {
    const q = new Virtqueue(8);
    q.descGpa = desc;
    q.availGpa = avail;
    q.usedGpa = used;
    assert.throws(() => q.activate(mem, { indirect: false, eventIdx: false }), re);
    assert.equal(q.active, false);
  }
});

Deno.test("queue: size 0, not a power of two or above the maximum is refused", () => {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: RAM }]);
  for (const size of [0, 3, 6, 16, 0xffff]) {
    const q = new Virtqueue(8);
    q.size = size;
    q.descGpa = 0x1000;
    q.availGpa = 0x2000;
    q.usedGpa = 0x3000;
    assert.throws(() => q.activate(mem, { indirect: false, eventIdx: false }), /queue size/);
  }
  assert.throws(() => new Virtqueue(0), RangeError);
  assert.throws(() => new Virtqueue(12), RangeError);
});

Deno.test("queue: indirect tables work and every bad table breaks the queue", () => {
  const { q, ring, mem } = setup();
  mem.write(0x8000, Uint8Array.of(1, 2, 3, 4));
  ring.postIndirect(0x5000, [{ gpa: 0x8000, length: 4 }, { gpa: 0x9000, length: 8, write: true }]);
  const chain = q.pop()!;
  assert.equal(chain.readableBytes, 4);
  assert.equal(chain.writableBytes, 8);

  const bad: [string, (r: DriverRing) => void, RegExp][] = [
    ["nested", (r) => {
      r.setTableDesc(0x5000, 0, 0x6000, 16, VIRTQ_DESC_F_INDIRECT, 0);
      r.setDesc(0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    }, /nested/],
    [
      "length not a multiple of 16",
      (r) => r.setDesc(0, 0x5000, 24, VIRTQ_DESC_F_INDIRECT, 0),
      /multiple/,
    ],
    ["length zero", (r) => r.setDesc(0, 0x5000, 0, VIRTQ_DESC_F_INDIRECT, 0), /multiple/],
    ["past RAM", (r) => r.setDesc(0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0), /invalid/],
    [
      "INDIRECT with NEXT",
      (r) => r.setDesc(0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1),
      /NEXT/,
    ],
    ["loop inside a table", (r) => {
      r.setTableDesc(0x5000, 0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 1);
      r.setTableDesc(0x5000, 1, 0x8000, 4, VIRTQ_DESC_F_NEXT, 0);
      r.setDesc(0, 0x5000, 32, VIRTQ_DESC_F_INDIRECT, 0);
    }, /loops/],
    ["next beyond the table", (r) => {
      r.setTableDesc(0x5000, 0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 2);
      r.setDesc(0, 0x5000, 32, VIRTQ_DESC_F_INDIRECT, 0);
    }, /table size 2/],
  ];
  for (const [what, build, re] of bad) {
    const s = setup();
    build(s.ring);
    s.ring.publish(0);
    assert.throws(() => s.q.pop(), re, what);
  }
  const noFeature = setup({ indirect: false, eventIdx: false });
  noFeature.ring.setDesc(0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT, 0);
  noFeature.ring.publish(0);
  assert.throws(() => noFeature.q.pop(), /without VIRTIO_F_INDIRECT_DESC/);
});

Deno.test("queue: zero-length buffers are skipped; readable after writable is refused", () => {
  const { q, ring } = setup();
  ring.post([{ gpa: RAM + 0x1000, length: 0 }, { gpa: 0x9000, length: 2, write: true }]);
  const chain = q.pop()!;
  assert.equal(chain.readable.length, 0);
  assert.equal(chain.writableBytes, 2);
  const s = setup();
  s.ring.post([{ gpa: 0x9000, length: 2, write: true }, { gpa: 0x8000, length: 2 }]);
  assert.throws(() => s.q.pop(), /readable buffer after/);
});

Deno.test("queue: interrupt suppression by flag and by used_event", () => {
  const a = setup();
  a.ring.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
  a.ring.post([{ gpa: 0x9000, length: 1, write: true }]);
  a.q.pushUsed(a.q.pop()!.head, 1);
  assert.equal(a.q.shouldInterrupt(), false);

  const { q, ring, mem } = setup({ indirect: false, eventIdx: true });
  // avail_event tells the driver which index to notify at.
  ring.setUsedEvent(1); // interrupt only once used idx passes 1 (i.e. reaches 2)
  for (let i = 0; i < 3; i++) ring.post([{ gpa: 0x9000, length: 1, write: true }]);
  q.pushUsed(q.pop()!.head, 1);
  assert.equal(mem.readU16(LAYOUT.usedGpa + 4 + 8 * 8), 1, "avail_event follows our index");
  assert.equal(q.shouldInterrupt(), false, "used idx 1 has not passed used_event 1");
  q.pushUsed(q.pop()!.head, 1);
  assert.equal(q.shouldInterrupt(), true, "used idx 2 passed used_event 1");
  q.pushUsed(q.pop()!.head, 1);
  assert.equal(q.shouldInterrupt(), false, "used_event still 1");
});

Deno.test("queue: a GuestMemoryError never escapes as anything but a guest fault", () => {
  const { q, ring } = setup();
  ring.setDesc(0, 0x8000, 4, VIRTQ_DESC_F_WRITE, 0);
  ring.publish(0);
  const chain = q.pop()!;
  assert.equal(chain.write(0, new Uint8Array(4)), 4);
  // A queue that is not active is a bug of ours: it throws a plain Error.
  const idle = new Virtqueue(8);
  assert.throws(() => idle.pop(), (e) => !(e instanceof VirtqueueError) && e instanceof Error);
  assert.ok(new GuestMemoryError(0, 1) instanceof Error);
});

/** A small deterministic PRNG (xorshift32) so fuzz failures reproduce. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

Deno.test("queue: seeded fuzz of descriptor tables never throws anything but VirtqueueError and stays in RAM", () => {
  const ramBytes = 0x20000;
  let broken = 0;
  let served = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const rand = xorshift(seed * 2654435761);
    const mem = RecordingGuestMemory.anonymous([{ gpa: 0, size: ramBytes }]);
    const size = 1 << (rand() % 5); // 1..16
    const q = new Virtqueue(16);
    q.size = size;
    q.descGpa = 0x1000;
    q.availGpa = 0x2000;
    q.usedGpa = 0x3000;
    q.activate(mem, { indirect: (rand() & 1) === 1, eventIdx: (rand() & 1) === 1 });
    const pick = (): number => {
      switch (rand() % 9) {
        case 0:
        case 6:
        case 7:
        case 8:
          return rand() % (ramBytes - 0x3000); // inside
        case 1:
          return ramBytes - (rand() % 64); // straddling the end
        case 2:
          return 0x4000 + 16 * (rand() % 64); // an aligned table area
        case 3:
          return rand() * 2 ** 21; // far away
        case 4:
          return 2 ** 52 - (rand() % 4096);
        default:
          return 0x4000;
      }
    };
    // Random descriptors in the ring and in a possible indirect table area.
    for (let i = 0; i < size; i++) {
      mem.writeU64(0x1000 + 16 * i, BigInt(pick()));
      mem.writeU32(0x1000 + 16 * i + 8, rand() % 4 === 0 ? 16 * (rand() % 8) : rand() % 0x3000);
      mem.writeU16(0x1000 + 16 * i + 12, rand() % 3 === 0 ? rand() & 7 : rand() & 2);
      mem.writeU16(0x1000 + 16 * i + 14, rand() % (size + 2));
    }
    for (let i = 0; i < 64; i++) {
      mem.writeU64(0x4000 + 16 * i, BigInt(pick()));
      mem.writeU32(0x4000 + 16 * i + 8, rand() % 0x100);
      mem.writeU16(0x4000 + 16 * i + 12, rand() & 7);
      mem.writeU16(0x4000 + 16 * i + 14, rand() % 70);
    }
    for (let i = 0; i < size; i++) mem.writeU16(0x2000 + 4 + 2 * i, rand() % (size + 2));
    mem.writeU16(0x2002, rand() % 4 === 0 ? rand() & 0xffff : rand() % (size + 1));
    mem.accesses.length = 0;
    try {
      for (let n = 0; n < 2 * size + 2; n++) {
        const chain = q.pop();
        if (!chain) break;
        const scratch = new Uint8Array(Math.min(chain.readableBytes, 0x4000));
        chain.read(0, scratch);
        chain.write(0, new Uint8Array(Math.min(chain.writableBytes, 0x4000)));
        q.pushUsed(chain.head, 0);
        q.shouldInterrupt();
        served++;
      }
    } catch (e) {
      assert.ok(e instanceof VirtqueueError, `seed ${seed}: ${e}`);
      broken++;
    }
    assert.deepEqual(mem.outside(), [], `seed ${seed}: access outside RAM`);
  }
  // The fuzz must exercise both outcomes to mean anything.
  assert.ok(broken > 50, `only ${broken} broken rings`);
  assert.ok(served > 50, `only ${served} chains served`);
});

Deno.test("queue: a 12M-entry looping indirect table is refused at once, in bounded heap", () => {
  // The table spans 192 MiB of a 256 MiB guest; entry 0 chains to itself.
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 256 * 2 ** 20 }]);
  const { q, ring } = setup({ indirect: true, eventIdx: false }, mem);
  const entries = 12 * 2 ** 20;
  ring.setTableDesc(0x100000, 0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 0);
  ring.setDesc(0, 0x100000, entries * 16, VIRTQ_DESC_F_INDIRECT, 0);
  ring.publish(0);
  const heap = Deno.memoryUsage().heapUsed;
  assert.throws(
    () => q.pop(),
    /indirect table of 12582912 descriptors is longer than the queue size 8/,
  );
  assert.ok(Deno.memoryUsage().heapUsed - heap < 16 * 2 ** 20);
});

Deno.test("queue: a chain visits at most queue-size descriptors, indirect ones included", () => {
  // A full indirect table of queue-size (8) buffers is fine.
  const full = setup();
  full.ring.postIndirect(
    0x5000,
    Array.from({ length: 8 }, (_, i) => ({ gpa: 0x8000 + 16 * i, length: 16 })),
  );
  assert.equal(full.q.pop()!.readable.length, 8);
  // One table entry more than the queue size is refused, looping or not.
  const long = setup();
  long.ring.postIndirect(
    0x5000,
    Array.from({ length: 9 }, (_, i) => ({ gpa: 0x8000 + 16 * i, length: 16 })),
  );
  assert.throws(
    () => long.q.pop(),
    /indirect table of 9 descriptors is longer than the queue size 8/,
  );
  // Three direct descriptors, then a table of 6: 9 buffers in all.
  const mixed = setup();
  for (let i = 0; i < 6; i++) {
    mixed.ring.setTableDesc(0x5000, i, 0x8000, 4, i < 5 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
  }
  mixed.ring.setDesc(0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 1);
  mixed.ring.setDesc(1, 0x8000, 4, VIRTQ_DESC_F_NEXT, 2);
  mixed.ring.setDesc(2, 0x8000, 4, VIRTQ_DESC_F_NEXT, 3);
  mixed.ring.setDesc(3, 0x5000, 6 * 16, VIRTQ_DESC_F_INDIRECT, 0);
  mixed.ring.publish(0);
  assert.throws(() => mixed.q.pop(), /longer than the queue size 8/);
});
