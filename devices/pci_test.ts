import assert from "node:assert/strict";
import type { BusDevice } from "../core/device.ts";
import { inb, inN, outb, outN } from "./fakes.ts";
import {
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_VNDR,
  PciConfigSpace,
  type PciDevice,
  PciHost,
} from "./pci.ts";

const cfgAddress = (slot: number, fn: number, reg: number, bus = 0) =>
  (0x80000000 | (bus << 16) | (slot << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;

/** A guest's view: config reads and writes of any width through 0xCF8/0xCFC. */
function guest(host: PciHost) {
  const select = (slot: number, fn: number, reg: number, bus = 0) =>
    outN(host.addressPort, 0, 4, cfgAddress(slot, fn, reg, bus));
  return {
    read(slot: number, reg: number, width = 4, fn = 0, bus = 0): number {
      select(slot, fn, reg, bus);
      return inN(host.dataPort, reg & 3, width);
    },
    write(slot: number, reg: number, value: number, width = 4, fn = 0) {
      select(slot, fn, reg);
      outN(host.dataPort, reg & 3, width, value);
    },
  };
}

function netDevice() {
  const moves: { bar: number; base: number | undefined }[] = [];
  const config = new PciConfigSpace({
    vendorId: 0x1af4,
    deviceId: 0x1041,
    classCode: 0x020000,
    revisionId: 1,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x0001,
    interruptPin: 1,
  });
  config.addIoBar(0, 32, (base) => moves.push({ bar: 0, base }));
  config.addMemoryBar(1, 0x1000, (base) => moves.push({ bar: 1, base }));
  config.addMemoryBar(2, 0x4000, (base) => moves.push({ bar: 2, base }), {
    is64: true,
    prefetchable: true,
  });
  return { device: { config } satisfies PciDevice, moves };
}

Deno.test("pci: address register holds dword writes; byte accesses do not", () => {
  const host = new PciHost();
  outN(host.addressPort, 0, 4, 0x80001234);
  assert.equal(inN(host.addressPort, 0, 4), 0x80001234);
  outb(host.addressPort, 3, 0x01); // Linux's probe pokes 0xCFB
  outN(host.addressPort, 2, 2, 0);
  assert.equal(inN(host.addressPort, 0, 4), 0x80001234);
  assert.equal(inb(host.addressPort, 0), 0xff);
  assert.equal(inN(host.addressPort, 0, 2), 0xffff);
});

Deno.test("pci: Linux pci_check_type1 sequence succeeds", () => {
  const host = new PciHost();
  outb(host.addressPort, 3, 0x01);
  const saved = inN(host.addressPort, 0, 4);
  outN(host.addressPort, 0, 4, 0x80000000);
  assert.equal(inN(host.addressPort, 0, 4), 0x80000000);
  outN(host.addressPort, 0, 4, saved);
});

Deno.test("pci: byte port 0xCF9 goes to the reset control device", () => {
  const seen: string[] = [];
  const resetControl: BusDevice = {
    name: "rcr",
    read: (o, d) => (seen.push(`r${o}`), d.fill(0x02)),
    write: (o, d) => seen.push(`w${o}:${d[0]}`),
  };
  const host = new PciHost({ resetControl });
  outN(host.addressPort, 0, 4, 0x80000000);
  outb(host.addressPort, 1, 0x06);
  assert.equal(inb(host.addressPort, 1), 0x02);
  assert.deepEqual(seen, ["w0:6", "r0"]);
  assert.equal(inN(host.addressPort, 0, 4), 0x80000000, "address register untouched");
});

Deno.test("pci: host bridge is an i440FX at slot 0", () => {
  const host = new PciHost();
  const g = guest(host);
  assert.equal(g.read(0, 0x00), 0x12378086);
  assert.equal(g.read(0, 0x08) >>> 8, 0x060000);
  assert.equal(g.read(0, 0x0e, 1), 0x00);
  assert.equal(host.device(0), host.bridge);
});

Deno.test("pci: absent devices, functions, other buses and disabled cycles read all ones", () => {
  const host = new PciHost();
  const g = guest(host);
  assert.equal(g.read(5, 0x00), 0xffffffff);
  assert.equal(g.read(0, 0x00, 4, 1), 0xffffffff, "function 1 of the bridge");
  assert.equal(g.read(0, 0x00, 4, 0, 1), 0xffffffff, "bus 1");
  assert.equal(g.read(5, 0x02, 2), 0xffff);
  g.write(5, 0x04, 0xffff, 2); // ignored, no throw
  outN(host.addressPort, 0, 4, 0x00000000); // enable bit clear
  assert.equal(inN(host.dataPort, 0, 4), 0xffffffff);
  outN(host.dataPort, 0, 4, 0);
});

Deno.test("pci: data port serves every width and sub-offset", () => {
  const host = new PciHost();
  const { device } = netDevice();
  host.addDevice(3, device);
  const g = guest(host);
  assert.equal(g.read(3, 0x00), 0x10411af4);
  assert.equal(g.read(3, 0x00, 2), 0x1af4);
  assert.equal(g.read(3, 0x02, 2), 0x1041);
  assert.equal(g.read(3, 0x01, 1), 0x1a);
  assert.equal(g.read(3, 0x03, 1), 0x10);
  assert.equal(g.read(3, 0x0b, 1), 0x02, "base class");
  assert.equal(g.read(3, 0x2c), 0x00011af4);
  outN(host.addressPort, 0, 4, cfgAddress(3, 0, 0));
  assert.equal(inN(host.dataPort, 2, 4), 0xffffffff, "an access past the window reads ones");
});

Deno.test("pci: read-only header fields ignore writes", () => {
  const host = new PciHost();
  const { device } = netDevice();
  host.addDevice(3, device);
  const g = guest(host);
  g.write(3, 0x00, 0);
  g.write(3, 0x08, 0);
  g.write(3, 0x2c, 0);
  g.write(3, 0x3d, 0, 1);
  g.write(3, 0x30, 0xffffffff); // expansion ROM: not implemented
  assert.equal(g.read(3, 0x00), 0x10411af4);
  assert.equal(g.read(3, 0x08), 0x02000001);
  assert.equal(g.read(3, 0x3d, 1), 1, "interrupt pin INTA#");
  assert.equal(g.read(3, 0x30), 0);
});

Deno.test("pci: command, status, cache line, latency and interrupt line registers", () => {
  const host = new PciHost();
  const { device } = netDevice();
  host.addDevice(3, device);
  const g = guest(host);
  g.write(3, 0x04, 0xffff, 2);
  assert.equal(g.read(3, 0x04, 2), 0x0547);
  assert.equal(device.config.intxDisabled, true);
  device.config.setInterruptStatus(true);
  device.config.setU16(0x06, device.config.u16(0x06) | 0x2000); // a master abort was seen
  assert.equal(g.read(3, 0x06, 2), 0x2008);
  g.write(3, 0x06, 0x2008, 2); // write-one-to-clear the error; INTx status is read-only
  assert.equal(g.read(3, 0x06, 2), 0x0008);
  g.write(3, 0x0c, 0x4010, 2);
  assert.equal(g.read(3, 0x0c, 2), 0x4010);
  g.write(3, 0x3c, 0x0b, 1);
  assert.equal(device.config.interruptLine, 0x0b);
});

Deno.test("pci: I/O BAR sizing and relocation", () => {
  const host = new PciHost();
  const { device, moves } = netDevice();
  host.addDevice(3, device);
  const g = guest(host);
  assert.equal(g.read(3, 0x10), 0x00000001);
  g.write(3, 0x10, 0xffffffff);
  assert.equal(g.read(3, 0x10), 0xffffffe1, "32-byte I/O BAR");
  g.write(3, 0x10, 0xc040);
  assert.equal(g.read(3, 0x10), 0xc041);
  assert.deepEqual(moves, [], "decode disabled until the command register says so");
  g.write(3, 0x04, 0x0001, 2);
  assert.deepEqual(moves, [{ bar: 0, base: 0xc040 }]);
  g.write(3, 0x10, 0xffffffff); // sizing with decode on: never decodes the pattern
  assert.deepEqual(moves.at(-1), { bar: 0, base: undefined });
  g.write(3, 0x10, 0xc080);
  assert.deepEqual(moves.at(-1), { bar: 0, base: 0xc080 });
  g.write(3, 0x04, 0x0000, 2);
  assert.deepEqual(moves.at(-1), { bar: 0, base: undefined });
  assert.equal(moves.length, 4);
  assert.equal(device.config.bar(0)?.base, undefined);
});

Deno.test("pci: 32-bit memory BAR sizing and relocation", () => {
  const host = new PciHost();
  const { device, moves } = netDevice();
  host.addDevice(3, device);
  const g = guest(host);
  g.write(3, 0x14, 0xffffffff);
  assert.equal(g.read(3, 0x14), 0xfffff000);
  g.write(3, 0x14, 0xfebf1234);
  assert.equal(g.read(3, 0x14), 0xfebf1000, "low bits of the address are read-only");
  g.write(3, 0x04, 0x0002, 2);
  assert.deepEqual(moves, [{ bar: 1, base: 0xfebf1000 }]);
  assert.equal(device.config.bar(1)?.base, 0xfebf1000);
  g.write(3, 0x14, 0xe0000000);
  assert.deepEqual(moves.at(-1), { bar: 1, base: 0xe0000000 });
});

Deno.test("pci: 64-bit prefetchable BAR sizing and placement above 4 GiB", () => {
  const host = new PciHost();
  const { device, moves } = netDevice();
  host.addDevice(3, device);
  const g = guest(host);
  assert.equal(g.read(3, 0x18), 0x0000000c);
  g.write(3, 0x18, 0xffffffff);
  g.write(3, 0x1c, 0xffffffff);
  assert.equal(g.read(3, 0x18), 0xffffc00c);
  assert.equal(g.read(3, 0x1c), 0xffffffff);
  g.write(3, 0x04, 0x0002, 2);
  assert.equal(moves.filter((m) => m.bar === 2).length, 0, "sizing pattern never decodes");
  g.write(3, 0x18, 0x00000000);
  g.write(3, 0x1c, 0x00000008);
  assert.deepEqual(moves.filter((m) => m.bar === 2), [{ bar: 2, base: 0x8_0000_0000 }]);
  assert.equal(device.config.bar(2)?.base, 0x8_0000_0000);
  assert.equal(device.config.bar(2)?.prefetchable, true);
});

Deno.test("pci: large 64-bit BAR sizes the high dword", () => {
  const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0x030000 });
  config.addMemoryBar(0, 2 ** 34, () => {}, { is64: true });
  config.write(0x10, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  assert.equal(config.u32(0x10), 0x00000004, "64-bit, not prefetchable, no low address bits");
  assert.equal(config.u32(0x14), 0xfffffffc, "16 GiB");
});

Deno.test("pci: unused BARs read 0 and ignore writes", () => {
  const host = new PciHost();
  const { device } = netDevice();
  host.addDevice(3, device);
  const g = guest(host);
  g.write(3, 0x20, 0xffffffff);
  g.write(3, 0x24, 0xffffffff);
  assert.equal(g.read(3, 0x20), 0);
  assert.equal(g.read(3, 0x24), 0);
});

Deno.test("pci: capability list links, aligns and sets the status bit", () => {
  const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
  assert.equal(config.u16(0x06) & 0x10, 0);
  assert.equal(config.u8(0x34), 0);
  const a = config.addCapability(PCI_CAP_ID_VNDR, [16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const b = config.addCapability(PCI_CAP_ID_MSIX, [0x03, 0x00, 1, 0, 0, 0, 2, 0, 0, 0], [
    0x00,
    0xc0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  const c = config.addCapability(PCI_CAP_ID_VNDR, [4, 2]);
  assert.equal(a, 0x40);
  assert.equal(b, 0x50, "aligned to a dword after 16 bytes");
  assert.equal(c, 0x5c);
  assert.equal(config.u16(0x06) & 0x10, 0x10);
  assert.equal(config.u8(0x34), 0x40);
  assert.equal(config.u8(0x41), 0x50);
  assert.equal(config.u8(0x51), 0x5c);
  assert.equal(config.u8(0x5d), 0x00);
  assert.deepEqual(config.findCapabilities(PCI_CAP_ID_VNDR), [0x40, 0x5c]);
  // MSI-X message control: only enable and function mask are writable.
  config.write(b + 2, new Uint8Array([0xff, 0xff]));
  assert.equal(config.u16(b + 2), 0xc003);
  config.write(a, new Uint8Array([0, 0, 0]));
  assert.equal(config.u8(a), PCI_CAP_ID_VNDR, "capability header is read-only");
  assert.throws(() => config.addCapability(PCI_CAP_ID_VNDR, new Array(200).fill(0)), RangeError);
});

Deno.test("pci: region handlers see guest reads and writes", () => {
  const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
  const writes: number[][] = [];
  let counter = 0;
  config.addRegion(0x80, 8, {
    read: (offset, data) => {
      for (let i = 0; i < data.length; i++) data[i] = offset + i + 0x10 * ++counter;
    },
    write: (offset, data) => writes.push([offset, ...data]),
  });
  const data = new Uint8Array(4);
  config.read(0x7e, data);
  assert.deepEqual([...data], [0, 0, 0x10, 0x21]);
  config.write(0x86, new Uint8Array([1, 2, 3, 4]));
  assert.deepEqual(writes, [[6, 1, 2]]);
});

Deno.test("pci: functions beyond 0 exist only when added", () => {
  const host = new PciHost();
  const f0 = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0, multiFunction: true });
  const f1 = new PciConfigSpace({ vendorId: 1, deviceId: 3, classCode: 0 });
  host.addDevice(4, { config: f0 });
  host.addDevice(4, { config: f1 }, 1);
  const g = guest(host);
  assert.equal(g.read(4, 0x0e, 1), 0x80);
  assert.equal(g.read(4, 0x00, 4, 1), 0x00030001);
  assert.equal(g.read(4, 0x00, 4, 2), 0xffffffff);
  assert.equal(host.freeSlot(), 1);
});

Deno.test("pci: our own mistakes throw", () => {
  const host = new PciHost();
  const { device } = netDevice();
  assert.throws(() => host.addDevice(0, device), /taken/);
  assert.throws(() => host.addDevice(32, device), RangeError);
  const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
  assert.throws(() => config.addIoBar(0, 24, () => {}), RangeError);
  assert.throws(() => config.addIoBar(6, 16, () => {}), RangeError);
  assert.throws(() => config.addMemoryBar(0, 8, () => {}), RangeError);
  config.addMemoryBar(4, 0x1000, () => {}, { is64: true });
  assert.throws(() => config.addIoBar(5, 16, () => {}), /in use/);
  assert.throws(() => config.addMemoryBar(5, 0x1000, () => {}, { is64: true }), RangeError);
  assert.throws(
    () => new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0, interruptPin: 5 }),
    RangeError,
  );
});
