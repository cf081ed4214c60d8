import assert from "node:assert/strict";
import { ApicBus, type ApicMessage, ApicRegisterFile, DeliveryMode } from "./apic.ts";
import { IoApic, IOAPIC_VERSION } from "./apic.ts";
import { inN, outN } from "./fakes.ts";

/** An I/O APIC whose messages are recorded (and delivered to two APICs). */
function setup() {
  const files = [new ApicRegisterFile(), new ApicRegisterFile()];
  files[1].set(2, 1 << 24); // APIC ID 1
  const sent: ApicMessage[] = [];
  const bus = new ApicBus(files);
  const recording = {
    deliver: (m: ApicMessage) => {
      sent.push(m);
      return bus.deliver(m);
    },
  } as unknown as ApicBus;
  return { io: new IoApic(recording), sent, files };
}

const reg = (io: IoApic, index: number) => {
  outN(io, 0, 1, index);
  return inN(io, 0x10, 4);
};
const setReg = (io: IoApic, index: number, value: number) => {
  outN(io, 0, 1, index);
  outN(io, 0x10, 4, value >>> 0);
};
const program = (io: IoApic, pin: number, low: number, dest = 0) => {
  setReg(io, 0x11 + 2 * pin, dest << 24);
  setReg(io, 0x10 + 2 * pin, low);
};

Deno.test("ioapic: ID, version (82093AA, 24 entries), arbitration, entries start masked", () => {
  const { io } = setup();
  assert.equal(reg(io, 1), IOAPIC_VERSION);
  assert.equal(IOAPIC_VERSION, 0x00170011);
  setReg(io, 0, 0xffffffff);
  assert.equal(reg(io, 0), 0x0f000000);
  assert.equal(reg(io, 2), 0x0f000000);
  setReg(io, 1, 0);
  assert.equal(reg(io, 1), IOAPIC_VERSION, "version is read only");
  for (let pin = 0; pin < 24; pin++) assert.equal(reg(io, 0x10 + 2 * pin), 1 << 16);
  outN(io, 0, 1, 0x3f);
  assert.equal(inN(io, 0, 1), 0x3f, "IOREGSEL reads back");
});

Deno.test("ioapic: entries keep their writable bits (delivery status, remote IRR read only)", () => {
  const { io } = setup();
  setReg(io, 0x10, 0xffffffff);
  assert.equal(reg(io, 0x10), 0x1afff);
  setReg(io, 0x11, 0xffffffff);
  assert.equal(reg(io, 0x11), 0xff000000);
  assert.equal(io.entry(0), 0xff0000000001afffn);
});

Deno.test("ioapic: edge pin sends on a rising edge only, masked edges are lost", () => {
  const { io, sent, files } = setup();
  program(io, 1, 0x31, 1);
  io.line(1).setLevel(true);
  io.line(1).setLevel(true);
  io.line(1).setLevel(false);
  assert.equal(sent.length, 1);
  assert.deepEqual(
    { v: sent[0].vector, mode: sent[0].mode, dest: sent[0].dest, level: sent[0].level },
    { v: 0x31, mode: DeliveryMode.FIXED, dest: 1, level: false },
  );
  assert.notEqual(files[1].get(0x20 + 1) & (1 << 0x11), 0, "IRR of APIC 1");
  program(io, 1, (1 << 16) | 0x31, 1);
  io.line(1).setLevel(true);
  io.line(1).setLevel(false);
  program(io, 1, 0x31, 1);
  assert.equal(sent.length, 1, "the masked edge was not remembered");
});

Deno.test("ioapic: level pin sets remote IRR; EOI re-sends while asserted", () => {
  const { io, sent } = setup();
  program(io, 10, (1 << 15) | 0x5a);
  io.setPin(10, true);
  assert.equal(sent.length, 1);
  assert.ok(sent[0].level);
  assert.notEqual(reg(io, 0x10 + 20) & (1 << 14), 0, "remote IRR");
  io.setPin(10, true);
  assert.equal(sent.length, 1, "remote IRR holds further messages");
  io.endOfInterrupt(0x5b);
  assert.equal(sent.length, 1, "another vector's EOI does nothing");
  io.endOfInterrupt(0x5a);
  assert.equal(sent.length, 2, "still asserted: sent again");
  io.setPin(10, false);
  io.endOfInterrupt(0x5a);
  assert.equal(reg(io, 0x10 + 20) & (1 << 14), 0);
  assert.equal(sent.length, 2);
});

Deno.test("ioapic: unmasking an asserted level pin sends; active-low polarity inverts", () => {
  const { io, sent } = setup();
  program(io, 5, (1 << 16) | (1 << 15) | 0x45);
  io.setPin(5, true);
  assert.equal(sent.length, 0);
  program(io, 5, (1 << 15) | 0x45);
  assert.equal(sent.length, 1);
  // Active low: the pin is asserted while driven low.
  program(io, 6, (1 << 15) | (1 << 13) | 0x46);
  assert.equal(sent.length, 2, "pin 6 is low, so asserted");
  io.setPin(6, true);
  io.endOfInterrupt(0x46);
  assert.equal(sent.length, 2, "driven high: deasserted");
});

Deno.test("ioapic: logical destinations and NMI/INIT/ExtINT modes reach the bus", () => {
  const { io, sent, files } = setup();
  files[1].set(0xd, 0x02000000); // LDR bit 1
  program(io, 2, (1 << 11) | 0x22, 0x02);
  io.setPin(2, true);
  assert.notEqual(files[1].get(0x20 + 1) & (1 << 2), 0);
  program(io, 3, DeliveryMode.NMI << 8, 0);
  io.setPin(3, true);
  program(io, 0, DeliveryMode.EXTINT << 8, 0);
  io.setPin(0, true);
  assert.deepEqual(files[0].takePending(), 2 | 4, "NMI and ExtINT pending on APIC 0");
  assert.equal(sent.length, 3);
});

Deno.test("ioapic: hostile accesses are ignored: absent indexes, reserved modes, bad sizes", () => {
  const { io, sent } = setup();
  for (const index of [0x03, 0x0f, 0x40, 0x41, 0xff]) {
    setReg(io, index, 0xffffffff);
    assert.equal(reg(io, index), 0);
  }
  for (let pin = 0; pin < 24; pin++) assert.equal(reg(io, 0x10 + 2 * pin), 1 << 16);
  program(io, 4, (3 << 8) | 0x44);
  io.setPin(4, true);
  program(io, 7, (DeliveryMode.STARTUP << 8) | 0x44);
  io.setPin(7, true);
  assert.equal(sent.length, 0);
  io.setPin(24, true);
  io.setPin(-1, true);
  outN(io, 0x10, 2, 0xffff);
  outN(io, 0x08, 4, 0xffff);
  assert.equal(inN(io, 0x14, 4), 0);
  // A level entry to an absent CPU stays deliverable (no remote IRR) instead of wedging.
  program(io, 9, (1 << 15) | 0x49, 7);
  io.setPin(9, true);
  assert.equal(reg(io, 0x10 + 18) & (1 << 14), 0);
});
