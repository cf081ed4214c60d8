import assert from "node:assert/strict";
import { inb, outb } from "./fakes.ts";
import { I440FX_PAM0, I440FX_SMRAM, PciHost } from "./pci.ts";
import { Piix3IsaBridge, PirqRouter, SystemControlA } from "./piix.ts";
import { RecordingIrqLine } from "./fakes.ts";

/** Reads `width` bytes of config register `reg` of slot `slot` through ports 0xCF8/0xCFC. */
function cfgRead(host: PciHost, slot: number, reg: number, width: number): number {
  const addr = (0x80000000 | (slot << 11) | (reg & 0xfc)) >>> 0;
  host.addressPort.write(0, Uint8Array.of(addr & 0xff, addr >> 8, addr >> 16, addr >>> 24));
  const data = new Uint8Array(width);
  host.dataPort.read(reg & 3, data);
  return data.reduceRight((v, b) => v * 256 + b, 0);
}

function cfgWrite(host: PciHost, slot: number, reg: number, bytes: number[]): void {
  const addr = (0x80000000 | (slot << 11) | (reg & 0xfc)) >>> 0;
  host.addressPort.write(0, Uint8Array.of(addr & 0xff, addr >> 8, addr >> 16, addr >>> 24));
  host.dataPort.write(reg & 3, Uint8Array.from(bytes));
}

Deno.test("i440FX: QEMU's IDs, PAM registers keep only their RE/WE bits, SMRAM", () => {
  const host = new PciHost();
  assert.equal(cfgRead(host, 0, 0, 4), 0x12378086);
  assert.equal(cfgRead(host, 0, 0x2c, 4), 0x11001af4);
  for (let i = 0; i < 7; i++) assert.equal(cfgRead(host, 0, I440FX_PAM0 + i, 1), 0);
  // SeaBIOS's make_bios_writable: dword writes over 0x58-0x5F.
  cfgWrite(host, 0, 0x58, [0xff, 0xff, 0x33, 0x33]);
  cfgWrite(host, 0, 0x5c, [0x33, 0x33, 0x33, 0x33]);
  assert.equal(cfgRead(host, 0, 0x58, 1), 0, "0x58 is not a PAM register");
  assert.equal(host.bridge.pam(0), 0x30);
  for (let i = 1; i < 7; i++) assert.equal(host.bridge.pam(i), 0x33);
  cfgWrite(host, 0, I440FX_PAM0, [0x10]);
  assert.equal(host.bridge.pam(0), 0x10);
  assert.equal(cfgRead(host, 0, I440FX_SMRAM, 1), 0x02);
  cfgWrite(host, 0, I440FX_SMRAM, [0xff]);
  assert.equal(cfgRead(host, 0, I440FX_SMRAM, 1), 0x7a);
});

Deno.test("PIIX3: IDs, multi-function, PIRQ routes start disabled and accept IRQ numbers", () => {
  const host = new PciHost();
  const isa = new Piix3IsaBridge();
  host.addDevice(1, isa);
  assert.equal(cfgRead(host, 1, 0, 4), 0x70008086);
  assert.equal(cfgRead(host, 1, 0x08, 4) >>> 8, 0x060100);
  assert.equal(cfgRead(host, 1, 0x0e, 1) & 0x80, 0x80);
  assert.equal(cfgRead(host, 1, 0x60, 4), 0x80808080);
  for (let i = 0; i < 4; i++) assert.equal(isa.pirqRoute(i), undefined);
  // SeaBIOS: 10, 10, 11, 11 with byte writes.
  [10, 10, 11, 11].forEach((irq, i) => cfgWrite(host, 1, 0x60 + i, [irq]));
  assert.deepEqual([0, 1, 2, 3].map((i) => isa.pirqRoute(i)), [10, 10, 11, 11]);
  cfgWrite(host, 1, 0x60, [0x7a]); // reserved bits 6-4 are not stored
  assert.equal(cfgRead(host, 1, 0x60, 1), 0x0a);
  cfgWrite(host, 1, 0x61, [0x02]); // a reserved IRQ routes nowhere
  assert.equal(isa.pirqRoute(1), undefined);
  cfgWrite(host, 1, 0x62, [0x8b]);
  assert.equal(isa.pirqRoute(2), undefined);
  // Vendor and device IDs are read-only.
  cfgWrite(host, 1, 0, [0, 0, 0, 0]);
  assert.equal(cfgRead(host, 1, 0, 4), 0x70008086);
});

Deno.test("port 0x92: A20 starts on and reads back; bit 0 resets and reads 0", () => {
  let resets = 0;
  const p = new SystemControlA(() => resets++);
  assert.equal(p.a20, true);
  assert.equal(inb(p, 0), 0x02);
  outb(p, 0, 0x00);
  assert.equal(p.a20, false);
  assert.equal(inb(p, 0), 0x00);
  outb(p, 0, 0xfe);
  assert.equal(inb(p, 0), 0x02);
  assert.equal(resets, 0);
  outb(p, 0, 0x03);
  assert.equal(resets, 1);
  assert.equal(inb(p, 0), 0x02);
  p.write(0, new Uint8Array());
  assert.equal(resets, 1);
});

Deno.test("PIRQ router: INTA# of slot s follows PIRQ[(s-1) mod 4], ORed per IRQ", () => {
  const isa = new Piix3IsaBridge();
  const lines = new Map<number, RecordingIrqLine>();
  const line = (irq: number) => {
    if (!lines.has(irq)) lines.set(irq, new RecordingIrqLine());
    return lines.get(irq)!;
  };
  const router = new PirqRouter(isa, line);
  assert.deepEqual([1, 2, 3, 4, 5].map(PirqRouter.link), [0, 1, 2, 3, 0]);
  const slot2 = router.lineFor(2);
  const slot3 = router.lineFor(3);
  slot2.setLevel(true); // routing still disabled: goes nowhere
  assert.equal(lines.size, 0);
  slot2.setLevel(false);
  [10, 10, 11, 11].forEach((irq, i) => isa.config.write(0x60 + i, Uint8Array.of(irq)));
  slot2.setLevel(true); // PIRQB -> 10
  slot3.setLevel(true); // PIRQC -> 11
  assert.equal(line(10).level, true);
  assert.equal(line(11).level, true);
  const slot6 = router.lineFor(6); // PIRQB as well: shares IRQ 10
  slot6.setLevel(true);
  slot2.setLevel(false);
  assert.equal(line(10).level, true, "slot 6 still holds IRQ 10");
  slot6.setLevel(false);
  assert.equal(line(10).level, false);
  // Rerouting while asserted moves the level.
  isa.config.write(0x62, Uint8Array.of(5));
  slot3.setLevel(true);
  assert.equal(line(11).level, false);
  assert.equal(line(5).level, true);
});
