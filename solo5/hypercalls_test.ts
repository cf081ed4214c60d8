import assert from "node:assert/strict";
import { GuestMemory } from "../core/guest_memory.ts";
import type { DiskImage } from "../disk/image.ts";
import { DiskRangeError } from "../disk/image.ts";
import type { TapDevice } from "../net/tap.ts";
import { RateLimitedLog } from "../core/device.ts";
import {
  HC,
  HVT_HYPERCALL,
  HVT_RING,
  HVT_RING_COMMITS,
  SOLO5_R_AGAIN,
  SOLO5_R_EINVAL,
  SOLO5_R_OK,
} from "./abi.ts";
import { type AttachedDevices, NetDevice } from "./devices.ts";
import { GuestFault, Hypercalls } from "./hypercalls.ts";

const MEM = 0x40000;
const RING = 0x40000;

class FakeDisk implements DiskImage {
  readonly format = "raw";
  readonly readonly = false;
  readonly bytes: Uint8Array;
  constructor(size: number) {
    this.bytes = new Uint8Array(size).map((_, i) => i & 0xff);
  }
  get sizeBytes() {
    return this.bytes.length;
  }
  read(offset: number, into: Uint8Array) {
    if (offset + into.length > this.bytes.length) {
      throw new DiskRangeError("fake", offset, into.length, this.bytes.length);
    }
    into.set(this.bytes.subarray(offset, offset + into.length));
  }
  write(offset: number, data: Uint8Array) {
    this.bytes.set(data, offset);
  }
  flush() {}
  close() {}
}

class FakeTap implements TapDevice {
  readonly name = "fake0";
  inbox: Uint8Array[] = [];
  sent: Uint8Array[] = [];
  read(into: Uint8Array) {
    const f = this.inbox.shift();
    if (!f) return undefined;
    into.set(f);
    return f.length;
  }
  write(frame: Uint8Array) {
    this.sent.push(frame.slice());
    return true;
  }
  close() {}
}

function setup(options: { ring?: boolean; waitHook?: (ms: number) => boolean } = {}) {
  const memory = GuestMemory.anonymous([{ gpa: 0, size: MEM + (options.ring ? 0x10000 : 0) }]);
  const disk = new FakeDisk(8 * 512);
  const tap = new FakeTap();
  const devices: AttachedDevices = {
    blocks: new Map([[1, { name: "storage", image: disk, sectorBytes: 512, capacityBytes: 4096 }]]),
    nets: new Map([[2, new NetDevice("service", tap, new Uint8Array(6))]]),
    close() {},
  };
  const out: Uint8Array[] = [];
  let now = 0;
  const waits: number[] = [];
  const hc = new Hypercalls({
    memory,
    guestBytes: MEM,
    devices,
    output: (b) => out.push(b),
    nowNs: () => now,
    wallNs: () => 1_700_000_000_123_456_789n,
    ringGpa: options.ring ? RING : undefined,
    waiter: {
      wait: (ms) => {
        waits.push(ms);
        now += ms * 1e6;
        return options.waitHook ? options.waitHook(ms) : true;
      },
    },
    log: new RateLimitedLog(10, 1000, () => {}),
  });
  return { memory, disk, tap, hc, out, waits, advance: (ns: number) => (now += ns) };
}

Deno.test("hypercalls: walltime, puts and halt (with and without a trap-frame cookie)", () => {
  const { memory, hc, out } = setup();
  assert.deepEqual(hc.handle(HVT_HYPERCALL.WALLTIME, 0x1000), { kind: "continue" });
  assert.equal(memory.readU64(0x1000), 1_700_000_000_123_456_789n);
  memory.write(0x3000, new TextEncoder().encode("hello, hvt"));
  memory.writeU64(0x2000 + HC.puts.DATA, 0x3000n);
  memory.writeU64(0x2000 + HC.puts.LEN, 5n);
  hc.handle(HVT_HYPERCALL.PUTS, 0x2000);
  assert.equal(new TextDecoder().decode(out[0]), "hello");
  memory.writeU64(0x2000 + HC.halt.COOKIE, 0n);
  memory.writeU32(0x2000 + HC.halt.EXIT_STATUS, 7);
  assert.deepEqual(hc.handle(HVT_HYPERCALL.HALT, 0x2000), { kind: "halt", status: 7 });
  memory.writeU64(0x2000 + HC.halt.COOKIE, 0x4000n);
  memory.writeU32(0x2000 + HC.halt.EXIT_STATUS, 255);
  memory.writeU64(0x4000 + 16, 0x100123n); // rip
  const r = hc.handle(HVT_HYPERCALL.HALT, 0x2000);
  assert.equal(r.kind === "halt" && r.trap?.rip, 0x100123n);
  assert.equal(r.kind === "halt" && r.status, 255);
});

Deno.test("hypercalls: pointers outside guest memory (or into the tender's ring) end the guest", () => {
  const { memory, hc, out } = setup({ ring: true });
  const fault = (nr: number, gpa: number, message: RegExp) =>
    assert.throws(
      () => hc.handle(nr, gpa),
      (e) => e instanceof GuestFault && message.test(e.message),
    );
  fault(HVT_HYPERCALL.PUTS, MEM - 8, /PUTS: argument structure of 16 bytes at 0x3fff8/);
  fault(HVT_HYPERCALL.WALLTIME, 0xffffffff, /WALLTIME/);
  memory.writeU64(0x2000, BigInt(MEM - 4));
  memory.writeU64(0x2008, 8n);
  fault(HVT_HYPERCALL.PUTS, 0x2000, /string of 8 bytes at 0x3fffc is outside guest memory/);
  memory.writeU64(0x2000, 0x1000n);
  memory.writeU64(0x2008, 0xffffffffffffffffn);
  fault(HVT_HYPERCALL.PUTS, 0x2000, /outside guest memory/);
  memory.writeU64(0x2000, BigInt(RING)); // the ring is allocated but not the guest's
  memory.writeU64(0x2008, 16n);
  fault(HVT_HYPERCALL.PUTS, 0x2000, /outside guest memory/);
  memory.writeU64(0x2000 + HC.halt.COOKIE, BigInt(MEM - 100));
  fault(HVT_HYPERCALL.HALT, 0x2000, /halt cookie of 512 bytes/);
  fault(0, 0x1000, /Invalid guest hypercall 0/);
  fault(9, 0x1000, /Invalid guest hypercall 9/);
  assert.equal(out.length, 0);
});

Deno.test("hypercalls: block read/write honour capacity, sector alignment and handles", () => {
  const { memory, disk, hc } = setup();
  const call = (nr: number, handle: bigint, offset: bigint, len: bigint, data = 0x8000n) => {
    memory.writeU64(0x2000 + HC.block.HANDLE, handle);
    memory.writeU64(0x2000 + HC.block.OFFSET, offset);
    memory.writeU64(0x2000 + HC.block.DATA, data);
    memory.writeU64(0x2000 + HC.block.LEN, len);
    memory.writeU32(0x2000 + HC.block.RET, 0xdead);
    hc.handle(nr, 0x2000);
    return memory.readU32(0x2000 + HC.block.RET);
  };
  assert.equal(call(HVT_HYPERCALL.BLOCK_READ, 1n, 512n, 1024n), SOLO5_R_OK);
  assert.deepEqual(memory.read(0x8000, 1024), disk.bytes.slice(512, 1536));
  memory.fill(0x8000, 512, 0xab);
  assert.equal(call(HVT_HYPERCALL.BLOCK_WRITE, 1n, 3584n, 512n), SOLO5_R_OK);
  assert.deepEqual(disk.bytes.subarray(3584), new Uint8Array(512).fill(0xab));
  for (
    const [handle, offset, len] of [
      [1n, 4096n, 512n], // at capacity
      [1n, 3584n, 1024n], // runs past the end
      [1n, 256n, 512n], // misaligned offset
      [1n, 0n, 100n], // partial sector
      [1n, 0xfffffffffffffe00n, 512n], // wraps
      [0n, 0n, 512n], // the reserved entry
      [2n, 0n, 512n], // a network device
      [1n << 40n, 0n, 512n],
    ]
  ) {
    assert.equal(
      call(HVT_HYPERCALL.BLOCK_READ, handle, offset, len),
      SOLO5_R_EINVAL,
      `${handle} ${offset} ${len}`,
    );
  }
  assert.throws(() => call(HVT_HYPERCALL.BLOCK_READ, 1n, 0n, 512n, BigInt(MEM - 256)), GuestFault);
});

Deno.test("hypercalls: net write/read and poll waking on input, timing out otherwise", () => {
  let waitsLeft = 3;
  const holder: { tap?: FakeTap } = {};
  const env = setup({
    waitHook: () => {
      if (--waitsLeft === 0) holder.tap!.inbox.push(new Uint8Array(60).fill(7));
      return true;
    },
  });
  const { memory, hc, waits, tap } = env;
  holder.tap = tap;
  const net = (nr: number, handle: bigint, len: bigint) => {
    memory.writeU64(0x2000 + HC.net.HANDLE, handle);
    memory.writeU64(0x2000 + HC.net.DATA, 0x8000n);
    memory.writeU64(0x2000 + HC.net.LEN, len);
    hc.handle(nr, 0x2000);
    return [memory.readU32(0x2000 + HC.net.RET), Number(memory.readU64(0x2000 + HC.net.LEN))];
  };
  memory.fill(0x8000, 42, 0x11);
  assert.deepEqual(net(HVT_HYPERCALL.NET_WRITE, 2n, 42n), [SOLO5_R_OK, 42]);
  assert.deepEqual(tap.sent[0], new Uint8Array(42).fill(0x11));
  assert.equal(net(HVT_HYPERCALL.NET_WRITE, 1n, 42n)[0], SOLO5_R_EINVAL);
  assert.deepEqual(net(HVT_HYPERCALL.NET_READ, 2n, 2048n), [SOLO5_R_AGAIN, 0]);
  // Poll with 1 s: the frame appears during the third wait; poll returns then, not at 1 s.
  memory.writeU64(0x3000 + HC.poll.TIMEOUT_NSECS, 1_000_000_000n);
  hc.handle(HVT_HYPERCALL.POLL, 0x3000);
  assert.equal(memory.readU64(0x3000 + HC.poll.READY_SET), 1n << 2n);
  assert.equal(memory.readU32(0x3000 + HC.poll.RET), 1);
  assert.equal(waits.length, 3);
  assert.ok(waits.every((ms) => ms <= 1));
  assert.deepEqual(net(HVT_HYPERCALL.NET_READ, 2n, 2048n), [SOLO5_R_OK, 60]);
  assert.deepEqual(memory.read(0x8000, 60), new Uint8Array(60).fill(7));
  // Nothing arrives: poll waits out its timeout and reports no events.
  waitsLeft = Infinity;
  memory.writeU64(0x3000 + HC.poll.TIMEOUT_NSECS, 5_000_000n);
  hc.handle(HVT_HYPERCALL.POLL, 0x3000);
  assert.equal(memory.readU64(0x3000 + HC.poll.READY_SET), 0n);
  assert.equal(memory.readU32(0x3000 + HC.poll.RET), 0);
  assert.ok(waits.length >= 8);
});

Deno.test("hypercalls: poll returns 'stopped' when the host wants the vCPU back", () => {
  const { memory, hc } = setup({ waitHook: () => false });
  memory.writeU64(0x3000 + HC.poll.TIMEOUT_NSECS, 10_000_000_000n);
  assert.deepEqual(hc.handle(HVT_HYPERCALL.POLL, 0x3000), { kind: "stopped" });
});

Deno.test("hypercalls: the network ring serves writes and reads, and a corrupt ring ends the guest", () => {
  const { memory, hc, tap } = setup({ ring: true });
  hc.initRing();
  assert.equal(memory.readU32(RING + HVT_RING.NEEDS_KICK), 1);
  const submit = (op: number, len: number, id: number) => {
    const tail = memory.readU32(RING + HVT_RING.ENT_TAIL);
    const e = RING + HVT_RING.ENTRIES + (tail & 1023) * HVT_RING.ENTRY_BYTES;
    memory.writeU32(e + HVT_RING.E_OPERATION, op);
    memory.writeU32(e + HVT_RING.E_HANDLE, 2);
    memory.writeU64(e + HVT_RING.E_DATA, 0x9000n);
    memory.writeU32(e + HVT_RING.E_LEN, len);
    memory.writeU32(e + HVT_RING.E_ID, id);
    memory.writeU32(RING + HVT_RING.ENT_TAIL, tail + 1);
  };
  memory.fill(0x9000, 64, 0x22);
  submit(HVT_RING.OP_NET_WRITE, 64, 1);
  tap.inbox.push(new Uint8Array(50).fill(0x33));
  submit(HVT_RING.OP_NET_READ, 2048, 2);
  hc.serveRing();
  assert.deepEqual(tap.sent[0], new Uint8Array(64).fill(0x22));
  assert.equal(memory.readU32(RING + HVT_RING.ENT_HEAD), 2);
  assert.equal(memory.readU32(RING + HVT_RING.COM_TAIL), 1);
  const c = RING + HVT_RING_COMMITS;
  assert.equal(memory.readU32(c + HVT_RING.C_ID), 2);
  assert.equal(memory.readU32(c + HVT_RING.C_RET), SOLO5_R_OK);
  assert.equal(memory.readU32(c + HVT_RING.C_LEN), 50);
  assert.deepEqual(memory.read(0x9000, 50), new Uint8Array(50).fill(0x33));
  memory.writeU32(RING + HVT_RING.ENT_TAIL, 5000);
  assert.throws(() => hc.serveRing(), /Corrupt network ring: 4998 entries pending/);
  memory.writeU32(RING + HVT_RING.ENT_TAIL, 3);
  const e = RING + HVT_RING.ENTRIES + 2 * HVT_RING.ENTRY_BYTES;
  memory.writeU32(e + HVT_RING.E_OPERATION, HVT_RING.OP_NET_WRITE);
  memory.writeU32(e + HVT_RING.E_HANDLE, 2);
  memory.writeU64(e + HVT_RING.E_DATA, BigInt(RING));
  memory.writeU32(e + HVT_RING.E_LEN, 60);
  assert.throws(
    () => hc.serveRing(),
    /network ring: frame of 60 bytes at 0x40000 is outside guest memory/,
  );
});
