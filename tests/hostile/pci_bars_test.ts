/**
 * A guest moving PCI BARs onto other devices: the VM keeps running, the
 * device already there keeps its range, the moved BAR does not decode (and
 * that is logged) until the guest moves it somewhere free.
 */
import assert from "node:assert/strict";
import { PCI_BASE_ADDRESS_0, PCI_COMMAND } from "../../devices/pci.ts";
import type { Machine } from "../../machine/machine.ts";
import { nullMachine } from "../harness/null_accel.ts";

function out(m: Machine, port: number, value: number, width: 1 | 2 | 4): void {
  const data = new Uint8Array(width);
  for (let i = 0; i < width; i++) data[i] = (value >>> (8 * i)) & 0xff;
  m.pio.write(port, data);
}

function inl(m: Machine, port: number): number {
  const data = new Uint8Array(4);
  m.pio.read(port, data);
  return new DataView(data.buffer).getUint32(0, true);
}

/** Writes config dword `reg` of bus 0 device `dev` through 0xCF8/0xCFC, as a guest does. */
function configWrite(m: Machine, dev: number, reg: number, value: number): void {
  out(m, 0xcf8, (0x80000000 | (dev << 11) | reg) >>> 0, 4);
  out(m, 0xcfc, value, 4);
}

function configRead(m: Machine, dev: number, reg: number): number {
  out(m, 0xcf8, (0x80000000 | (dev << 11) | reg) >>> 0, 4);
  return inl(m, 0xcfc);
}

/** Captures guest-misbehaviour log lines while `f` runs. */
function logged(f: () => void): string[] {
  const lines: string[] = [];
  const saved = console.error;
  console.error = (l: string) => lines.push(String(l));
  try {
    f();
  } finally {
    console.error = saved;
  }
  return lines;
}

const BAR0 = PCI_BASE_ADDRESS_0;
const BAR4 = PCI_BASE_ADDRESS_0 + 16;

/** The first two virtio functions: their slots and legacy I/O bases. */
function setup() {
  const { machine } = nullMachine();
  const [a, b] = machine.virtio.all;
  const ioA = a.config.bar(0)!.base!;
  const ioB = b.config.bar(0)!.base!;
  const size = a.config.bar(0)!.sizeBytes;
  return { machine, a, b, ioA, ioB, size };
}

/** Device number of the virtio function whose BAR0 is at `io`. */
function deviceAt(m: Machine, io: number): number {
  for (let dev = 0; dev < 32; dev++) {
    if ((configRead(m, dev, BAR0) & ~3) >>> 0 === io) return dev;
  }
  throw new Error(`no function with BAR0 at 0x${io.toString(16)}`);
}

for (
  const [what, target, owner] of [
    ["COM1", 0x3f8, "com1"],
    ["the slave PIC", 0xa0, "pic-slave"],
    ["PCI config address 0xCF8", 0xcf8, undefined],
  ] as const
) {
  Deno.test(`a virtio I/O BAR moved onto ${what} stops decoding; the VM and ${what} go on`, () => {
    const { machine, a, ioA, size } = setup();
    try {
      const dev = deviceAt(machine, ioA);
      const base = target & ~(size - 1);
      const before = machine.pio.find(target, 1)!.device;
      if (owner) assert.equal(before.name, owner);
      const lines = logged(() => configWrite(machine, dev, BAR0, base | 1));
      assert.equal(machine.outcome, undefined);
      assert.equal(machine.pio.find(target, 1)!.device, before, `${what} keeps its port`);
      assert.equal(a.config.bar(0)!.base, base, "the BAR register holds what the guest wrote");
      assert.ok(!machine.pio.ranges.some((r) => r.device === a.legacy), "the BAR decodes nowhere");
      assert.equal(lines.length, 1);
      assert.match(
        lines[0],
        new RegExp(`overlaps "${before.name}" .* does not decode until moved`),
      );
      // Config space still works (even after a BAR over 0xCF8) and moving it away restores it.
      configWrite(machine, dev, BAR0, 0xd000 | 1);
      assert.equal(machine.pio.find(0xd000, 1)!.device, a.legacy);
      assert.equal(configRead(machine, dev, BAR0), 0xd001);
    } finally {
      machine.close();
    }
  });
}

Deno.test("a virtio I/O BAR moved onto another device's BAR: the other keeps it until it moves", () => {
  const { machine, a, b, ioA, ioB } = setup();
  try {
    const devA = deviceAt(machine, ioA);
    const lines = logged(() => configWrite(machine, devA, BAR0, ioB | 1));
    assert.equal(lines.length, 1);
    assert.equal(machine.pio.find(ioB, 1)!.device, b.legacy);
    assert.ok(!machine.pio.ranges.some((r) => r.device === a.legacy));
    // Disabling and re-enabling I/O decode retries the same place: still taken, still quiet.
    const command = configRead(machine, devA, PCI_COMMAND) & 0xffff;
    configWrite(machine, devA, PCI_COMMAND, command & ~1);
    logged(() => configWrite(machine, devA, PCI_COMMAND, command));
    assert.equal(machine.pio.find(ioB, 1)!.device, b.legacy);
    configWrite(machine, devA, BAR0, ioA | 1);
    assert.equal(machine.pio.find(ioA, 1)!.device, a.legacy);
    assert.equal(machine.outcome, undefined);
  } finally {
    machine.close();
  }
});

Deno.test("a modern (MMIO) BAR moved onto another device's MMIO BAR stops decoding", () => {
  const { machine, a, b, ioA } = setup();
  try {
    if (!a.modern || !b.modern) return; // legacy-only transport: no MMIO BAR to move
    const devA = deviceAt(machine, ioA);
    const mmioB = b.config.bar(4)!.base!;
    const lines = logged(() => {
      configWrite(machine, devA, BAR4, mmioB % 2 ** 32 | 4);
      configWrite(machine, devA, BAR4 + 4, Math.floor(mmioB / 2 ** 32));
    });
    assert.ok(lines.some((l) => /overlaps/.test(l)), lines.join("\n"));
    assert.equal(machine.mmio.find(mmioB, 4)!.device, b.modern);
    assert.ok(!machine.mmio.ranges.some((r) => r.device === a.modern));
  } finally {
    machine.close();
  }
});
