import assert from "node:assert/strict";
import { GuestMemory } from "../../core/guest_memory.ts";
import type { DiskImage } from "../../disk/image.ts";
import { DiskIoError, DiskRangeError, DiskReadOnlyError } from "../../disk/errors.ts";
import { RateLimitedLog } from "../../core/device.ts";
import { RecordingIrqLine } from "../fakes.ts";
import {
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VirtioBlk,
} from "./blk.ts";
import { VirtioPciDevice } from "./pci_transport.ts";
import { Virtqueue } from "./queue.ts";
import { DriverRing } from "./testing.ts";
import { hasFeature } from "./virtio.ts";

/** A disk in memory that counts flushes and can be told to fail. */
class MemoryDisk implements DiskImage {
  readonly format = "raw" as const;
  readonly bytes: Uint8Array;
  readonly readonly: boolean;
  flushes = 0;
  writes = 0;
  failIo = false;
  constructor(sectors: number, readonly = false) {
    this.bytes = new Uint8Array(sectors * 512);
    this.readonly = readonly;
  }
  get sizeBytes(): number {
    return this.bytes.length;
  }
  #check(offset: number, length: number) {
    if (this.failIo) throw new DiskIoError("mem", "injected failure");
    if (offset < 0 || offset + length > this.bytes.length) {
      throw new DiskRangeError("mem", offset, length, this.bytes.length);
    }
  }
  read(offset: number, into: Uint8Array): void {
    this.#check(offset, into.length);
    into.set(this.bytes.subarray(offset, offset + into.length));
  }
  write(offset: number, data: Uint8Array): void {
    if (this.readonly) throw new DiskReadOnlyError("mem");
    this.#check(offset, data.length);
    this.bytes.set(data, offset);
    this.writes++;
  }
  flush(): void {
    if (this.failIo) throw new DiskIoError("mem", "injected failure");
    this.flushes++;
  }
  close(): void {}
}

const HDR = 0x30000;
const DATA = 0x31000;
const STATUS = 0x33000;

function setup(disk: DiskImage) {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }]);
  const blk = new VirtioBlk(disk, { index: 3, log: new RateLimitedLog(1000, 1000, () => {}) });
  const q = new Virtqueue(128);
  q.descGpa = 0x10000;
  q.availGpa = 0x11000;
  q.usedGpa = 0x12000;
  q.enabled = true;
  q.activate(mem, { indirect: true, eventIdx: false });
  const ring = new DriverRing(mem, {
    size: 128,
    descGpa: 0x10000,
    availGpa: 0x11000,
    usedGpa: 0x12000,
  });
  /** Submits a request; returns [status byte, used length]. */
  const request = (
    type: number,
    sector: bigint,
    data?: { length: number; write: boolean },
    opts: { headerBytes?: number; status?: boolean } = {},
  ): [number, number] => {
    const view = new DataView(new ArrayBuffer(16));
    view.setUint32(0, type, true);
    view.setBigUint64(8, sector, true);
    mem.write(HDR, new Uint8Array(view.buffer));
    mem.writeU8(STATUS, 0xee);
    const buffers = [{ gpa: HDR, length: opts.headerBytes ?? 16 }];
    if (data) buffers.push({ gpa: DATA, length: data.length, write: data.write } as never);
    if (opts.status ?? true) buffers.push({ gpa: STATUS, length: 1, write: true } as never);
    ring.post(buffers);
    const chain = q.pop()!;
    const written = blk.handle(0, chain);
    q.pushUsed(chain.head, written);
    return [mem.readU8(STATUS), written];
  };
  return { mem, blk, request };
}

Deno.test("blk: features and configuration: capacity, size/seg max, 512-byte blocks, RO", () => {
  const blk = new VirtioBlk(new MemoryDisk(100), { index: 0 });
  assert.ok(hasFeature(blk.features, VIRTIO_BLK_F_FLUSH));
  assert.ok(!hasFeature(blk.features, VIRTIO_BLK_F_RO));
  const config = new Uint8Array(24);
  blk.readConfig(0, config);
  const v = new DataView(config.buffer);
  assert.equal(v.getBigUint64(0, true), 100n);
  assert.equal(v.getUint32(12, true), 126);
  assert.equal(v.getUint32(20, true), 512);
  assert.ok(
    hasFeature(new VirtioBlk(new MemoryDisk(1, true), { index: 0 }).features, VIRTIO_BLK_F_RO),
  );
});

Deno.test("blk: IN and OUT move whole sectors; FLUSH reaches the image", () => {
  const disk = new MemoryDisk(16);
  disk.bytes.set([1, 2, 3], 512 * 2);
  const { mem, request } = setup(disk);
  assert.deepEqual(request(VIRTIO_BLK_T_IN, 2n, { length: 1024, write: true }), [
    VIRTIO_BLK_S_OK,
    1025,
  ]);
  assert.deepEqual([...mem.read(DATA, 4)], [1, 2, 3, 0]);
  mem.fill(DATA, 512, 0x5a);
  assert.deepEqual(request(VIRTIO_BLK_T_OUT, 15n, { length: 512, write: false }), [
    VIRTIO_BLK_S_OK,
    1,
  ]);
  assert.ok(disk.bytes.subarray(15 * 512).every((b) => b === 0x5a));
  assert.deepEqual(request(VIRTIO_BLK_T_FLUSH, 0n), [VIRTIO_BLK_S_OK, 1]);
  assert.equal(disk.flushes, 1);
});

Deno.test("blk: out of range, partial sectors and read-only answer IOERR and write nothing", () => {
  const disk = new MemoryDisk(16);
  const { request } = setup(disk);
  for (
    const [sector, length] of [
      [16n, 512],
      [15n, 1024],
      [2n ** 63n, 512],
      [0xffff_ffff_ffff_ffffn, 512],
      [0n, 100],
    ] as const
  ) {
    assert.deepEqual(
      request(VIRTIO_BLK_T_OUT, sector, { length, write: false }),
      [VIRTIO_BLK_S_IOERR, 1],
      `write at ${sector}`,
    );
    assert.deepEqual(request(VIRTIO_BLK_T_IN, sector, { length, write: true }), [
      VIRTIO_BLK_S_IOERR,
      1,
    ]);
  }
  assert.equal(disk.writes, 0);
  const ro = new MemoryDisk(16, true);
  const r = setup(ro);
  assert.deepEqual(r.request(VIRTIO_BLK_T_OUT, 0n, { length: 512, write: false }), [
    VIRTIO_BLK_S_IOERR,
    1,
  ]);
  assert.deepEqual(r.request(VIRTIO_BLK_T_IN, 0n, { length: 512, write: true }), [
    VIRTIO_BLK_S_OK,
    513,
  ]);
});

Deno.test("blk: disk errors become IOERR", () => {
  const disk = new MemoryDisk(16);
  disk.failIo = true;
  const { request } = setup(disk);
  assert.deepEqual(request(VIRTIO_BLK_T_IN, 0n, { length: 512, write: true }), [
    VIRTIO_BLK_S_IOERR,
    1,
  ]);
  assert.deepEqual(request(VIRTIO_BLK_T_FLUSH, 0n), [VIRTIO_BLK_S_IOERR, 1]);
});

Deno.test("blk: short header or missing status byte is dropped with used length 0", () => {
  const disk = new MemoryDisk(16);
  const { request } = setup(disk);
  assert.deepEqual(
    request(VIRTIO_BLK_T_OUT, 0n, undefined, { headerBytes: 8 }),
    [0xee, 0],
    "status untouched",
  );
  assert.deepEqual(
    request(VIRTIO_BLK_T_IN, 0n, { length: 512, write: false }, { status: false }),
    [0xee, 0],
  );
  assert.equal(disk.writes, 0);
});

Deno.test("blk: unknown types answer UNSUPP; GET_ID gives the serial", () => {
  const { request, mem } = setup(new MemoryDisk(16));
  assert.deepEqual(request(0x1234, 0n), [VIRTIO_BLK_S_UNSUPP, 1]);
  assert.deepEqual(request(VIRTIO_BLK_T_GET_ID, 0n, { length: 20, write: true }), [
    VIRTIO_BLK_S_OK,
    21,
  ]);
  assert.equal(new TextDecoder().decode(mem.read(DATA, 8)), "vmmctl-3");
  assert.equal(mem.readU8(DATA + 8), 0);
});

Deno.test("blk: through the PCI transport, the transitional block device ID and the capacity", () => {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }]);
  const dev = new VirtioPciDevice(new VirtioBlk(new MemoryDisk(0x12345), { index: 0 }), {
    mem,
    irq: new RecordingIrqLine(),
    irqNumber: 9,
  });
  assert.equal(dev.config.u16(2), 0x1001);
  assert.equal(dev.config.u32(8) >>> 8, 0x010000);
  const data = new Uint8Array(4);
  dev.legacy.read(0x14, data);
  assert.equal(new DataView(data.buffer).getUint32(0, true), 0x12345);
  dev.modern!.read(0x2000, data);
  assert.equal(new DataView(data.buffer).getUint32(0, true), 0x12345);
});

Deno.test("blk: a request of more than seg_max (126) data segments fails with IOERR", () => {
  const disk = new MemoryDisk(1024);
  const { mem } = setup(disk);
  const blk = new VirtioBlk(disk, { index: 3, log: new RateLimitedLog(1000, 1000, () => {}) });
  const q = new Virtqueue(256);
  const layout = { size: 256, descGpa: 0x40000, availGpa: 0x42000, usedGpa: 0x43000 };
  Object.assign(q, { descGpa: layout.descGpa, availGpa: layout.availGpa, usedGpa: layout.usedGpa });
  q.enabled = true;
  q.activate(mem, { indirect: true, eventIdx: false });
  const ring = new DriverRing(mem, layout);
  const send = (segments: number): number => {
    const view = new DataView(new ArrayBuffer(16));
    view.setUint32(0, VIRTIO_BLK_T_IN, true);
    mem.write(HDR, new Uint8Array(view.buffer));
    mem.writeU8(STATUS, 0xee);
    ring.post([
      { gpa: HDR, length: 16 },
      ...Array.from(
        { length: segments },
        (_, i) => ({ gpa: DATA + 512 * i, length: 512, write: true }),
      ),
      { gpa: STATUS, length: 1, write: true },
    ]);
    const chain = q.pop()!;
    q.pushUsed(chain.head, blk.handle(0, chain));
    return mem.readU8(STATUS);
  };
  assert.equal(send(126), VIRTIO_BLK_S_OK);
  assert.equal(send(127), VIRTIO_BLK_S_IOERR);
});
