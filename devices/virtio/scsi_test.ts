import assert from "node:assert/strict";
import { GuestMemory } from "../../core/guest_memory.ts";
import { RateLimitedLog } from "../../core/device.ts";
import { Virtqueue } from "./queue.ts";
import { DriverRing } from "./testing.ts";
import type { VirtioDeviceContext } from "./virtio.ts";
import { VIRTIO_ID_SCSI, VIRTIO_SCSI_S_BAD_TARGET, VIRTIO_SCSI_S_OK, VirtioScsi } from "./scsi.ts";

const REQ = 0x30000;
const RESP = 0x31000;
const DATA = 0x32000;

function setup() {
  const iso = new Uint8Array(2048 * 16);
  iso.set(new TextEncoder().encode("CD001"), 16 * 0 + 1);
  let closed = false;
  const scsi = new VirtioScsi({
    sizeBytes: iso.length,
    read: (o, into) => into.set(iso.subarray(o, o + into.length)),
    close: () => (closed = true),
  }, { log: new RateLimitedLog(1000, 1000, () => {}) });
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }]);
  const queues = [0, 1, 2].map((i) => {
    const q = new Virtqueue(128);
    q.descGpa = 0x10000 + i * 0x3000;
    q.availGpa = q.descGpa + 0x1000;
    q.usedGpa = q.descGpa + 0x2000;
    q.enabled = true;
    q.activate(mem, { indirect: true, eventIdx: false });
    const ring = new DriverRing(mem, {
      size: 128,
      descGpa: q.descGpa,
      availGpa: q.availGpa,
      usedGpa: q.usedGpa,
    });
    return { q, ring };
  });
  const ctx = {} as VirtioDeviceContext;
  /** Sends a command; returns the response fields, the data and the used length. */
  const command = (
    cdbBytes: number[],
    o: { lun?: number[]; dataIn?: number; reqBytes?: number; respBytes?: number } = {},
  ) => {
    const req = new Uint8Array(51);
    req.set(o.lun ?? [1, 0, 0, 0, 0, 0, 0, 0]);
    req.set(cdbBytes, 19);
    mem.write(REQ, req);
    mem.fill(RESP, 108, 0xee);
    mem.fill(DATA, 0x2000, 0xee);
    const bufs = [{ gpa: REQ, length: o.reqBytes ?? 51 }, {
      gpa: RESP,
      length: o.respBytes ?? 108,
      write: true,
    }];
    if (o.dataIn) bufs.push({ gpa: DATA, length: o.dataIn, write: true });
    const { q, ring } = queues[2];
    const before = ring.usedIdx();
    ring.post(bufs);
    assert.equal(scsi.process(2, q, ctx), false);
    assert.equal(ring.usedIdx(), (before + 1) & 0xffff);
    const v = new DataView(mem.read(RESP, 12).buffer);
    return {
      senseLen: v.getUint32(0, true),
      resid: v.getUint32(4, true),
      status: mem.readU8(RESP + 10),
      response: mem.readU8(RESP + 11),
      sense: mem.read(RESP + 12, 18),
      data: mem.read(DATA, o.dataIn ?? 0),
      used: ring.used(before).length,
    };
  };
  return { scsi, mem, queues, command, ctx, closed: () => closed };
}

Deno.test("virtio-scsi: config space and device type", () => {
  const { scsi } = setup();
  assert.equal(scsi.deviceType, VIRTIO_ID_SCSI);
  const c = new Uint8Array(36);
  scsi.readConfig(0, c);
  const v = new DataView(c.buffer);
  assert.equal(v.getUint32(0, true), 1, "num_queues");
  assert.equal(v.getUint32(0x14, true), 96, "sense_size");
  assert.equal(v.getUint32(0x18, true), 32, "cdb_size");
  assert.equal(v.getUint16(0x1e, true), 0, "max_target");
  scsi.writeConfig(0x18, Uint8Array.of(16, 0, 0, 0));
  scsi.writeConfig(0x14, Uint8Array.of(200, 0, 0, 0)); // too big: ignored
  scsi.readConfig(0, c);
  assert.equal(v.getUint32(0x18, true), 16);
  assert.equal(v.getUint32(0x14, true), 96);
  scsi.reset();
  scsi.readConfig(0, c);
  assert.equal(v.getUint32(0x18, true), 32);
});

Deno.test("virtio-scsi: READ(10) of block 0 lands after the response, resid counts the rest", () => {
  const { command } = setup();
  const r = command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataIn: 4096 });
  assert.equal(r.response, VIRTIO_SCSI_S_OK);
  assert.equal(r.status, 0);
  assert.equal(r.senseLen, 0);
  assert.equal(r.resid, 2048);
  assert.equal(new TextDecoder().decode(r.data.subarray(1, 6)), "CD001");
  assert.equal(r.used, 108 + 2048);
});

Deno.test("virtio-scsi: CHECK CONDITION carries sense; other LUNs are BAD_TARGET", () => {
  const { command } = setup();
  const r = command([0xff, 0, 0, 0, 0, 0], { dataIn: 512 });
  assert.equal(r.response, VIRTIO_SCSI_S_OK);
  assert.equal(r.status, 2);
  assert.equal(r.senseLen, 18);
  assert.equal(r.sense[2], 0x05);
  assert.equal(r.sense[12], 0x20);
  for (const lun of [[1, 1, 0, 0], [1, 0, 0x40, 1], [0, 0, 0, 0]]) {
    const b = command([0x00, 0, 0, 0, 0, 0], { lun: [...lun, 0, 0, 0, 0] });
    assert.equal(b.response, VIRTIO_SCSI_S_BAD_TARGET, JSON.stringify(lun));
  }
  // Flat-addressed LUN 0 (0x40 0x00) is LUN 0.
  assert.equal(command([0x00, 0, 0, 0, 0, 0], { lun: [1, 0, 0x40, 0, 0, 0, 0, 0] }).response, 0);
});

Deno.test("virtio-scsi: short requests and missing response room are dropped untouched", () => {
  const { command, mem } = setup();
  const short = command([0x12, 0, 0, 0, 36, 0], { reqBytes: 30, dataIn: 64 });
  assert.equal(short.used, 0);
  assert.equal(mem.readU8(RESP + 11), 0xee);
  const noRoom = command([0x12, 0, 0, 0, 36, 0], { respBytes: 100 });
  assert.equal(noRoom.used, 0);
  assert.equal(mem.readU8(RESP), 0xee);
  // The response may span buffers: 50 + 64 bytes hold the 108-byte response and 6 data bytes.
  const split = command([0x12, 0, 0, 0, 36, 0], { respBytes: 50, dataIn: 64 });
  assert.equal(split.used, 108 + 6);
  assert.equal(mem.readU8(DATA + 58), 0x05, "INQUIRY's first byte right after the response");
});

Deno.test("virtio-scsi: control queue answers TMF and AN; the event queue keeps its buffers", () => {
  const { scsi, mem, queues, ctx, closed } = setup();
  const { q, ring } = queues[0];
  mem.write(0x40000, Uint8Array.of(0, 0, 0, 0)); // TMF
  mem.writeU8(0x41000, 0xee);
  ring.post([{ gpa: 0x40000, length: 28 }, { gpa: 0x41000, length: 1, write: true }]);
  mem.write(0x42000, Uint8Array.of(1, 0, 0, 0)); // AN query
  mem.fill(0x43000, 8, 0xee);
  ring.post([{ gpa: 0x42000, length: 16 }, { gpa: 0x43000, length: 8, write: true }]);
  mem.write(0x44000, Uint8Array.of(9, 0, 0, 0)); // unknown
  ring.post([{ gpa: 0x44000, length: 4 }, { gpa: 0x45000, length: 8, write: true }]);
  scsi.process(0, q, ctx);
  assert.equal(ring.usedIdx(), 3);
  assert.equal(mem.readU8(0x41000), 0);
  assert.equal(ring.used(0).length, 1);
  assert.deepEqual([...mem.read(0x43000, 5)], [0, 0, 0, 0, 0]);
  assert.equal(ring.used(2).length, 0);
  const ev = queues[1];
  ev.ring.post([{ gpa: 0x50000, length: 16, write: true }]);
  assert.equal(scsi.process(1, ev.q, ctx), false);
  assert.equal(ev.ring.usedIdx(), 0);
  scsi.close();
  assert.equal(closed(), true);
});
