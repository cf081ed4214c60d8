import assert from "node:assert/strict";
import { MsixTable } from "./apic.ts";
import { ApicBus, ApicRegisterFile, DeliveryMode, msiMessage } from "./apic.ts";
import { PciConfigSpace } from "./pci.ts";
import { VIRTIO_MSI_NO_VECTOR, VirtioMsix } from "./virtio/pci_msix.ts";
import { inN, outN } from "./fakes.ts";

function table(size = 3) {
  const sent: [number, number][] = [];
  const msix = new MsixTable(size, (a, d) => sent.push([a, d]));
  const entry = (n: number, address: number, data: number, masked = false) => {
    outN(msix.table, n * 16, 4, address);
    outN(msix.table, n * 16 + 4, 4, 0);
    outN(msix.table, n * 16 + 8, 4, data);
    outN(msix.table, n * 16 + 12, 4, masked ? 1 : 0);
  };
  return { msix, sent, entry };
}

Deno.test("msix: entries start masked; reads return what was written (address dword aligned)", () => {
  const { msix } = table();
  for (let n = 0; n < 3; n++) assert.equal(inN(msix.table, n * 16 + 12, 4), 1);
  outN(msix.table, 0, 4, 0xfee01007);
  assert.equal(inN(msix.table, 0, 4), 0xfee01004);
  outN(msix.table, 12, 4, 0xfffffffe);
  assert.equal(inN(msix.table, 12, 4), 0, "reserved vector-control bits read 0");
  const q = new Uint8Array(8);
  msix.table.read(0, q);
  assert.deepEqual([...q.subarray(0, 4)], [0x04, 0x10, 0xe0, 0xfe]);
});

Deno.test("msix: signal sends when enabled and unmasked; masked sets the pending bit", () => {
  const { msix, sent, entry } = table();
  entry(0, 0xfee00000, 0x41);
  entry(1, 0xfee01000, 0x42, true);
  msix.signal(0);
  assert.deepEqual(sent, [], "MSI-X disabled: nothing");
  msix.writeControl(0x8000);
  msix.signal(0);
  msix.signal(1);
  assert.deepEqual(sent, [[0xfee00000, 0x41]]);
  assert.ok(msix.isPending(1));
  assert.equal(inN(msix.pba, 0, 4), 0b10);
  outN(msix.table, 16 + 12, 4, 0); // unmask entry 1: the pending message goes out
  assert.deepEqual(sent, [[0xfee00000, 0x41], [0xfee01000, 0x42]]);
  assert.equal(inN(msix.pba, 0, 4), 0);
});

Deno.test("msix: the function mask holds every entry; clearing it sends what is pending", () => {
  const { msix, sent, entry } = table();
  entry(0, 0xfee00000, 0x41);
  entry(2, 0xfee00000, 0x43);
  msix.writeControl(0x8000 | 0x4000);
  msix.signal(0);
  msix.signal(2);
  msix.signal(2);
  assert.deepEqual(sent, []);
  assert.equal(inN(msix.pba, 0, 4), 0b101);
  msix.writeControl(0x8000);
  assert.deepEqual(sent, [[0xfee00000, 0x41], [0xfee00000, 0x43]], "one message per pending bit");
});

Deno.test("msix: hostile accesses are ignored: outside the table, unaligned, PBA writes", () => {
  const { msix, sent } = table(2);
  outN(msix.table, 32, 4, 0x12345678); // entry 2 does not exist
  assert.equal(inN(msix.table, 32, 4), 0);
  outN(msix.table, 2, 4, 0xffffffff);
  outN(msix.table, 0, 2, 0xffff);
  outN(msix.table, 0, 1, 0xff);
  assert.equal(inN(msix.table, 0, 4), 0);
  outN(msix.pba, 0, 4, 0xffffffff);
  assert.equal(inN(msix.pba, 0, 4), 0);
  assert.equal(inN(msix.pba, 8, 4), 0, "past the PBA");
  assert.equal(msix.signal(2), false);
  assert.equal(msix.signal(-1), false);
  assert.deepEqual(sent, []);
  assert.throws(() => new MsixTable(0, () => {}));
  assert.throws(() => new MsixTable(4096, () => {}));
});

Deno.test("msi: address/data become an APIC message; outside 0xFEExxxxx is refused", () => {
  assert.deepEqual(msiMessage(0xfee03000, 0x4051), {
    vector: 0x51,
    mode: DeliveryMode.FIXED,
    logical: false,
    dest: 3,
    level: false,
    assert: true,
    shorthand: 0,
    source: -1,
  });
  assert.equal(msiMessage(0xfee0000c, 0x0100)?.logical, true);
  assert.equal(msiMessage(0xfee0000c, 0x0100)?.mode, DeliveryMode.LOWEST);
  assert.equal(msiMessage(0x1000, 0x41), undefined, "a DMA write, not an interrupt");
  const lapic = new ApicRegisterFile();
  new ApicBus([lapic]).deliver(msiMessage(0xfee00000, 0x61)!);
  assert.equal(lapic.get(0x20 + 3) & 2, 2, "IRR bit of vector 0x61");
});

Deno.test("virtio msix: capability, vectors out of range read NO_VECTOR, per-queue signal", () => {
  const config = new PciConfigSpace({
    vendorId: 0x1af4,
    deviceId: 0x1001,
    subsystemVendorId: 0x1af4,
    subsystemId: 2,
    classCode: 0x010000,
    interruptPin: 1,
  });
  const sent: [number, number][] = [];
  const v = new VirtioMsix(config, 2, (a, d) => sent.push([a, d]));
  const cap = config.u8(0x34);
  let at = cap;
  while (config.u8(at) !== 0x11) at = config.u8(at + 1);
  assert.equal(config.u16(at + 2) & 0x7ff, 2, "table size 3 (2 queues + config)");
  assert.equal(config.u32(at + 4), 0x000 | 1, "table at BAR1 + 0");
  assert.equal(config.u32(at + 8), 0x800 | 1, "PBA at BAR1 + 0x800");
  v.setQueueVector(0, 1);
  v.setQueueVector(1, 7);
  v.configVector = 0;
  assert.equal(v.queueVector(0), 1);
  assert.equal(v.queueVector(1), VIRTIO_MSI_NO_VECTOR, "7 is past the table");
  assert.equal(v.queueVector(5), VIRTIO_MSI_NO_VECTOR);
  outN(v.bar, 16, 4, 0xfee00000);
  outN(v.bar, 24, 4, 0x45);
  outN(v.bar, 28, 4, 0);
  // The guest enables MSI-X through config space (only bits 15-14 are writable).
  config.write(at + 2, Uint8Array.of(0xff, 0xff));
  assert.equal(config.u16(at + 2), 0xc002);
  v.signalQueue(0);
  assert.deepEqual(sent, [], "function masked");
  config.write(at + 2, Uint8Array.of(0x00, 0x80));
  assert.deepEqual(sent, [[0xfee00000, 0x45]], "the pending message went out on unmask");
  v.signalQueue(1);
  assert.equal(sent.length, 1, "NO_VECTOR raises nothing");
  v.resetVectors();
  assert.equal(v.queueVector(0), VIRTIO_MSI_NO_VECTOR);
});
