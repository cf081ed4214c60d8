import assert from "node:assert/strict";
import { GuestMemory } from "../../core/guest_memory.ts";
import type { TapDevice } from "../../net/tap.ts";
import { FakeClock, inN, outN, RecordingIrqLine } from "../fakes.ts";
import { RateLimitedLog } from "../../core/device.ts";
import {
  VIRTIO_PCI_CONFIG_LEGACY,
  VIRTIO_PCI_GUEST_FEATURES,
  VIRTIO_PCI_QUEUE_NOTIFY,
  VIRTIO_PCI_QUEUE_PFN,
  VIRTIO_PCI_QUEUE_SEL,
  VIRTIO_PCI_STATUS,
} from "./pci_regs.ts";
import { VirtioPciDevice } from "./pci_transport.ts";
import { macForInterface, parseMac, VIRTIO_NET_HDR_LEGACY_BYTES, VirtioNet } from "./net.ts";
import { DriverRing } from "./testing.ts";

/** A tap whose kernel side is two arrays; `capacity` frames at most wait to be read. */
class FakeTap implements TapDevice {
  readonly name = "fake0";
  readonly toGuest: Uint8Array[] = [];
  readonly fromGuest: Uint8Array[] = [];
  reads = 0;
  closed = false;
  read(into: Uint8Array): number | undefined {
    this.reads++;
    const f = this.toGuest.shift();
    if (!f) return undefined;
    into.set(f);
    return f.length;
  }
  write(frame: Uint8Array): boolean {
    this.fromGuest.push(frame.slice());
    return true;
  }
  close(): void {
    this.closed = true;
  }
}

const QSIZE = 256;
const RX_PFN = 0x10;
const TX_PFN = 0x20;

function ringAt(mem: GuestMemory, pfn: number): DriverRing {
  const desc = pfn * 4096;
  const avail = desc + 16 * QSIZE;
  const used = Math.ceil((avail + 6 + 2 * QSIZE) / 4096) * 4096;
  return new DriverRing(mem, { size: QSIZE, descGpa: desc, availGpa: avail, usedGpa: used });
}

function setup() {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x400000 }]);
  const tap = new FakeTap();
  const clock = new FakeClock(1_000_000);
  const net = new VirtioNet(tap, {
    index: 0,
    mac: "fe:e1:ba:d0:12:34",
    clock,
    log: new RateLimitedLog(1000, 1000, () => {}),
  });
  const irq = new RecordingIrqLine();
  const dev = new VirtioPciDevice(net, { mem, irq, irqNumber: 5 });
  const l = dev.legacy;
  outN(l, VIRTIO_PCI_STATUS, 1, 1);
  outN(l, VIRTIO_PCI_STATUS, 1, 3);
  outN(l, VIRTIO_PCI_GUEST_FEATURES, 4, 1 << 5);
  outN(l, VIRTIO_PCI_QUEUE_SEL, 2, 0);
  outN(l, VIRTIO_PCI_QUEUE_PFN, 4, RX_PFN);
  outN(l, VIRTIO_PCI_QUEUE_SEL, 2, 1);
  outN(l, VIRTIO_PCI_QUEUE_PFN, 4, TX_PFN);
  outN(l, VIRTIO_PCI_STATUS, 1, 7);
  const rx = ringAt(mem, RX_PFN);
  const tx = ringAt(mem, TX_PFN);
  let nextBuffer = 0x100000;
  const postRx = (length = 2048) => {
    const gpa = nextBuffer;
    nextBuffer += 0x1000;
    rx.post([{ gpa, length, write: true }]);
    return gpa;
  };
  const notify = (q: number) => outN(l, VIRTIO_PCI_QUEUE_NOTIFY, 2, q);
  return { mem, tap, clock, net, dev, irq, rx, tx, postRx, notify };
}

const frame = (n: number, length = 60) => Uint8Array.from({ length }, (_, i) => (i * n) & 0xff);

Deno.test("net: MAC from lladdr or a stable fe:e1:ba:d0 address; config has MAC and link up", () => {
  assert.equal(macForInterface("vm", 0, "FE:E1:BA:D0:00:01"), "fe:e1:ba:d0:00:01");
  const a = macForInterface("web", 0);
  assert.match(a, /^fe:e1:ba:d0:[0-9a-f]{2}:[0-9a-f]{2}$/);
  assert.equal(macForInterface("web", 0), a);
  assert.notEqual(macForInterface("web", 1), a);
  assert.throws(() => parseMac("fe:e1"), /six hex pairs/);
  const { dev } = setup();
  const mac = Array.from({ length: 6 }, (_, i) => inN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY + i, 1));
  assert.deepEqual(mac, [0xfe, 0xe1, 0xba, 0xd0, 0x12, 0x34]);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY + 6, 2), 1);
  assert.equal(dev.config.u16(2), 0x1000);
});

Deno.test("net: TX strips the 10-byte legacy header and writes the frame to the tap", () => {
  const { mem, tap, tx, notify } = setup();
  mem.fill(0x50000, VIRTIO_NET_HDR_LEGACY_BYTES, 0xee);
  mem.write(0x50000 + VIRTIO_NET_HDR_LEGACY_BYTES, frame(3));
  tx.post([
    { gpa: 0x50000, length: VIRTIO_NET_HDR_LEGACY_BYTES },
    { gpa: 0x50000 + VIRTIO_NET_HDR_LEGACY_BYTES, length: 60 },
  ]);
  notify(1);
  assert.equal(tx.usedIdx(), 1);
  assert.deepEqual(tap.fromGuest, [frame(3)]);
});

Deno.test("net: RX reads the tap only while buffers are posted (back-pressure)", () => {
  const { mem, tap, rx, postRx, notify, net, irq } = setup();
  tap.toGuest.push(frame(1), frame(2), frame(3));
  assert.equal(net.nextDeadlineNs(), Infinity, "no buffers: wait for a notify");
  const first = postRx();
  notify(0);
  assert.equal(rx.usedIdx(), 1);
  assert.equal(rx.used(0).length, VIRTIO_NET_HDR_LEGACY_BYTES + 60);
  assert.deepEqual(mem.read(first + VIRTIO_NET_HDR_LEGACY_BYTES, 60), frame(1));
  assert.deepEqual([...mem.read(first, VIRTIO_NET_HDR_LEGACY_BYTES)], new Array(10).fill(0));
  assert.equal(tap.toGuest.length, 2, "the other frames stay in the tap");
  assert.equal(irq.level, true);
  const readsBefore = tap.reads;
  net.poll(Number.MAX_SAFE_INTEGER);
  assert.equal(tap.reads, readsBefore, "no buffer: the tap is not read");
  postRx();
  postRx();
  notify(0);
  assert.equal(rx.usedIdx(), 3);
  assert.equal(tap.toGuest.length, 0);
});

Deno.test("net: no lost wake-ups when the ring and the tap are both full", () => {
  const { tap, rx, postRx, notify, net, clock, dev } = setup();
  // The ring full of buffers and nothing to read: poll on a deadline, backing off.
  for (let i = 0; i < QSIZE; i++) postRx();
  notify(0);
  const d1 = net.nextDeadlineNs();
  assert.ok(d1 > clock.nowNs() && d1 < Infinity);
  // Frames arrive: the next poll at the deadline delivers them without a notify.
  for (let i = 0; i < 3 * QSIZE; i++) tap.toGuest.push(frame(i));
  clock.timeNs = d1;
  dev.poll(clock.nowNs());
  while (dev.nextDeadlineNs() <= clock.nowNs()) dev.poll(clock.nowNs());
  assert.equal(rx.usedIdx(), QSIZE, "every posted buffer was filled");
  assert.equal(tap.toGuest.length, 2 * QSIZE, "the rest waits in the tap");
  assert.equal(dev.nextDeadlineNs(), Infinity, "nothing posted: wait for the driver's notify");
  // The driver recycles buffers and notifies: delivery resumes at once.
  for (let i = 0; i < 10; i++) postRx();
  notify(0);
  assert.equal(rx.usedIdx(), QSIZE + 10);
  assert.equal(tap.toGuest.length, 2 * QSIZE - 10);
});

Deno.test("net: a receive buffer too small for the frame returns empty; the frame is dropped", () => {
  const { tap, rx, postRx, notify } = setup();
  tap.toGuest.push(frame(1, 1000));
  postRx(100);
  notify(0);
  assert.equal(rx.usedIdx(), 1);
  assert.equal(rx.used(0).length, 0);
  assert.equal(tap.toGuest.length, 0);
});

Deno.test("net: close closes the tap", () => {
  const { dev, tap } = setup();
  dev.close();
  assert.equal(tap.closed, true);
});
