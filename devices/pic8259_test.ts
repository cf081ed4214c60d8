import assert from "node:assert/strict";
import { inb, inN, outb, outN } from "./fakes.ts";
import { Pic8259Pair } from "./pic8259.ts";

/** The ICW sequence Linux and OpenBSD use: edge, cascade, 8086 mode. */
function init(pic: Pic8259Pair, masterBase = 0x20, slaveBase = 0x28, icw4 = 0x01) {
  outb(pic.master, 0, 0x11);
  outb(pic.master, 1, masterBase);
  outb(pic.master, 1, 0x04);
  outb(pic.master, 1, icw4);
  outb(pic.slave, 0, 0x11);
  outb(pic.slave, 1, slaveBase);
  outb(pic.slave, 1, 0x02);
  outb(pic.slave, 1, icw4);
}

function setup(icw4 = 0x01) {
  const pic = new Pic8259Pair();
  let changes = 0;
  pic.onChange = () => changes++;
  init(pic, 0x20, 0x28, icw4);
  return { pic, changes: () => changes };
}

const readIrr = (dev: Pic8259Pair["master"]) => (outb(dev, 0, 0x0a), inb(dev, 0));
const readIsr = (dev: Pic8259Pair["master"]) => (outb(dev, 0, 0x0b), inb(dev, 0));
const pulse = (pic: Pic8259Pair, irq: number) => {
  pic.line(irq).setLevel(true);
  pic.line(irq).setLevel(false);
};

Deno.test("pic: edge IRQ delivers base+irq, sets ISR, and EOI clears it", () => {
  const { pic, changes } = setup();
  assert.equal(pic.hasInterrupt(), false);
  pulse(pic, 1);
  assert.equal(pic.hasInterrupt(), true, "a pulse is latched");
  assert.equal(changes(), 1);
  assert.equal(readIrr(pic.master), 0x02);
  assert.equal(pic.acknowledge(), 0x21);
  assert.equal(pic.hasInterrupt(), false);
  assert.equal(changes(), 2);
  assert.equal(readIrr(pic.master), 0x00);
  assert.equal(readIsr(pic.master), 0x02);
  outb(pic.master, 0, 0x20); // non-specific EOI
  assert.equal(readIsr(pic.master), 0x00);
});

Deno.test("pic: an edge input held high fires once", () => {
  const { pic } = setup();
  pic.line(3).setLevel(true);
  assert.equal(pic.acknowledge(), 0x23);
  outb(pic.master, 0, 0x20);
  pic.line(3).setLevel(true);
  assert.equal(pic.hasInterrupt(), false);
});

Deno.test("pic: OCW1 masks and unmasks; IMR reads back", () => {
  const { pic } = setup();
  outb(pic.master, 1, 0xff);
  assert.equal(inb(pic.master, 1), 0xff);
  pulse(pic, 4);
  assert.equal(pic.hasInterrupt(), false);
  assert.equal(readIrr(pic.master), 0x10, "masked requests still latch in IRR");
  outb(pic.master, 1, 0xef);
  assert.equal(pic.hasInterrupt(), true);
  assert.equal(pic.acknowledge(), 0x24);
});

Deno.test("pic: fixed priority: lower IRQ number wins and nests", () => {
  const { pic } = setup();
  pulse(pic, 5);
  pulse(pic, 3);
  assert.equal(pic.acknowledge(), 0x23);
  assert.equal(pic.hasInterrupt(), false, "IRQ5 waits behind IRQ3 in service");
  pulse(pic, 1);
  assert.equal(pic.acknowledge(), 0x21, "a higher priority nests");
  assert.equal(readIsr(pic.master), 0x0a);
  outb(pic.master, 0, 0x20); // clears the highest in service: IRQ1
  assert.equal(readIsr(pic.master), 0x08);
  outb(pic.master, 0, 0x20);
  assert.equal(pic.acknowledge(), 0x25);
});

Deno.test("pic: specific EOI clears the named level only", () => {
  const { pic } = setup();
  pulse(pic, 6);
  pic.acknowledge();
  pulse(pic, 0);
  pic.acknowledge();
  outb(pic.master, 0, 0x66); // specific EOI for IRQ6
  assert.equal(readIsr(pic.master), 0x01);
});

Deno.test("pic: rotate on non-specific EOI makes the served level lowest", () => {
  const { pic } = setup();
  pulse(pic, 2 + 1); // IRQ3
  assert.equal(pic.acknowledge(), 0x23);
  outb(pic.master, 0, 0xa0); // rotate on non-specific EOI: IRQ3 lowest, IRQ4 highest
  pulse(pic, 3);
  pulse(pic, 5);
  pulse(pic, 1);
  assert.equal(pic.acknowledge(), 0x25);
  outb(pic.master, 0, 0x20);
  assert.equal(pic.acknowledge(), 0x21);
  outb(pic.master, 0, 0x20);
  assert.equal(pic.acknowledge(), 0x23);
});

Deno.test("pic: set-priority and rotate-on-specific-EOI commands", () => {
  const { pic } = setup();
  outb(pic.master, 0, 0xc4); // IRQ4 lowest, so IRQ5 highest
  pulse(pic, 0);
  pulse(pic, 6);
  assert.equal(pic.acknowledge(), 0x26);
  outb(pic.master, 0, 0xe6); // specific EOI 6 + rotate: IRQ6 lowest, IRQ7 highest
  assert.equal(readIsr(pic.master), 0);
  pulse(pic, 7);
  assert.equal(pic.acknowledge(), 0x27);
  outb(pic.master, 0, 0x67);
  assert.equal(pic.acknowledge(), 0x20);
  outb(pic.master, 0, 0x40); // no-op command
  assert.equal(readIsr(pic.master), 0x01);
});

Deno.test("pic: auto-EOI leaves ISR clear; rotate-in-AEOI rotates", () => {
  const { pic } = setup(0x03);
  pulse(pic, 4);
  assert.equal(pic.acknowledge(), 0x24);
  assert.equal(readIsr(pic.master), 0);
  outb(pic.master, 0, 0x80); // set rotate in AEOI
  pulse(pic, 1);
  assert.equal(pic.acknowledge(), 0x21); // IRQ1 becomes lowest
  pulse(pic, 1);
  pulse(pic, 6);
  assert.equal(pic.acknowledge(), 0x26);
  outb(pic.master, 0, 0x00); // clear rotate in AEOI
  assert.equal(pic.acknowledge(), 0x21);
});

Deno.test("pic: cascade delivers slave vectors with ISR set on both chips", () => {
  const { pic } = setup();
  pulse(pic, 12);
  assert.equal(pic.hasInterrupt(), true);
  assert.equal(readIrr(pic.slave), 0x10);
  assert.equal(pic.acknowledge(), 0x2c);
  assert.equal(readIsr(pic.slave), 0x10);
  assert.equal(readIsr(pic.master), 0x04);
  pulse(pic, 9);
  assert.equal(pic.hasInterrupt(), false, "IR2 in service blocks the slave");
  outb(pic.slave, 0, 0x20);
  outb(pic.master, 0, 0x20);
  assert.equal(pic.acknowledge(), 0x29);
});

Deno.test("pic: a second slave request is not lost when INT stays high", () => {
  const { pic } = setup(0x03); // auto-EOI on both
  pulse(pic, 10);
  pulse(pic, 11);
  assert.equal(pic.acknowledge(), 0x2a);
  assert.equal(pic.hasInterrupt(), true);
  assert.equal(pic.acknowledge(), 0x2b);
});

Deno.test("pic: special fully nested mode lets a higher slave request nest", () => {
  const { pic } = setup(0x11);
  pulse(pic, 12);
  assert.equal(pic.acknowledge(), 0x2c);
  pulse(pic, 9);
  assert.equal(pic.hasInterrupt(), true);
  assert.equal(pic.acknowledge(), 0x29);
});

Deno.test("pic: IRQ2 is wired to IRQ9 like the AT bus", () => {
  const { pic } = setup();
  pulse(pic, 2);
  assert.equal(pic.acknowledge(), 0x29);
});

Deno.test("pic: spurious IRQ7 when the request vanished before INTA", () => {
  const { pic } = setup();
  outb(pic.elcr, 0, 0x20); // IRQ5 level-triggered
  pic.line(5).setLevel(true);
  assert.equal(pic.hasInterrupt(), true);
  pic.line(5).setLevel(false);
  assert.equal(pic.acknowledge(), 0x27);
  assert.equal(readIsr(pic.master), 0, "spurious: ISR untouched");
});

Deno.test("pic: a slave request withdrawn before INTA gives spurious IRQ7", () => {
  // IR2 follows the slave's INT in the same step, so the master sees the
  // withdrawal too: the cycle is the master's spurious IRQ7, no ISR changes.
  const { pic } = setup();
  outb(pic.elcr, 1, 0x08); // IRQ11 level
  pic.line(11).setLevel(true);
  assert.equal(pic.hasInterrupt(), true);
  pic.line(11).setLevel(false);
  assert.equal(pic.hasInterrupt(), false);
  assert.equal(pic.acknowledge(), 0x27);
  assert.equal(readIsr(pic.master), 0);
  assert.equal(readIsr(pic.slave), 0);
});

Deno.test("pic: masking a pending request before INTA gives spurious IRQ7", () => {
  const { pic } = setup();
  pulse(pic, 3);
  outb(pic.master, 1, 0x08);
  assert.equal(pic.acknowledge(), 0x27);
  assert.equal(readIsr(pic.master), 0);
  outb(pic.master, 1, 0x00);
  assert.equal(pic.acknowledge(), 0x23, "the latched request survives the mask");
});

Deno.test("pic: level inputs re-fire after EOI while still high; ELCR masks", () => {
  const { pic } = setup();
  outN(pic.elcr, 0, 2, 0xffff);
  assert.equal(inb(pic.elcr, 0), 0xf8, "IRQ 0-2 are always edge");
  assert.equal(inb(pic.elcr, 1), 0xde, "IRQ 8 and 13 are always edge");
  assert.equal(inN(pic.elcr, 0, 2), 0xdef8, "a 16-bit ELCR access reaches both");
  pic.line(10).setLevel(true);
  assert.equal(pic.acknowledge(), 0x2a);
  outb(pic.slave, 0, 0x20);
  outb(pic.master, 0, 0x20);
  assert.equal(pic.hasInterrupt(), true, "still high: pending again");
  pic.line(10).setLevel(false);
  assert.equal(pic.hasInterrupt(), false);
});

Deno.test("pic: ICW1 LTIM makes every input level-triggered", () => {
  const pic = new Pic8259Pair();
  outb(pic.master, 0, 0x19);
  outb(pic.master, 1, 0x40);
  outb(pic.master, 1, 0x04);
  outb(pic.master, 1, 0x01);
  pic.line(1).setLevel(true);
  pic.line(1).setLevel(false);
  assert.equal(pic.hasInterrupt(), false, "a pulse is not latched in level mode");
});

Deno.test("pic: poll mode acknowledges through a port read", () => {
  const { pic } = setup();
  outb(pic.master, 0, 0x0c); // OCW3 poll
  assert.equal(inb(pic.master, 0), 0x00, "nothing pending: bit 7 clear");
  pulse(pic, 6);
  outb(pic.master, 0, 0x0c);
  assert.equal(inb(pic.master, 1), 0x86);
  assert.equal(readIsr(pic.master), 0x40);
  assert.equal(pic.hasInterrupt(), false);
  assert.equal(inb(pic.master, 1), 0x00, "poll is one-shot: IMR again");
});

Deno.test("pic: special mask mode lets lower levels through a masked in-service one", () => {
  const { pic } = setup();
  pulse(pic, 3);
  assert.equal(pic.acknowledge(), 0x23);
  pulse(pic, 5);
  assert.equal(pic.hasInterrupt(), false);
  outb(pic.master, 1, 0x08); // mask IRQ3
  outb(pic.master, 0, 0x68); // OCW3: set special mask mode
  assert.equal(pic.hasInterrupt(), true);
  assert.equal(pic.acknowledge(), 0x25);
  outb(pic.master, 0, 0x48); // OCW3: reset special mask mode
  outb(pic.master, 0, 0x65); // specific EOI 5
  pulse(pic, 6);
  assert.equal(pic.hasInterrupt(), false, "IRQ3 in service blocks again");
});

Deno.test("pic: ICW1 resets IMR, ISR, edge latches and read select", () => {
  const { pic } = setup();
  outb(pic.master, 1, 0xfb);
  pulse(pic, 4);
  pulse(pic, 0);
  outb(pic.master, 1, 0x00);
  pic.acknowledge();
  outb(pic.master, 0, 0x0b); // read ISR
  outb(pic.master, 0, 0x11);
  assert.equal(inb(pic.master, 0), 0x00, "IRR selected and cleared");
  outb(pic.master, 1, 0x30);
  outb(pic.master, 1, 0x04);
  outb(pic.master, 1, 0x01);
  assert.equal(inb(pic.master, 1), 0x00);
  assert.equal(readIsr(pic.master), 0x00);
  pulse(pic, 7);
  assert.equal(pic.acknowledge(), 0x37, "new vector base from ICW2");
});

Deno.test("pic: an aborted init sequence restarts on ICW1", () => {
  const { pic } = setup();
  outb(pic.master, 0, 0x11);
  outb(pic.master, 1, 0x50); // ICW2, then the guest gives up
  outb(pic.master, 0, 0x11); // and starts over
  outb(pic.master, 1, 0x60);
  outb(pic.master, 1, 0x04);
  outb(pic.master, 1, 0x01);
  outb(pic.master, 1, 0xfd); // now a mask
  assert.equal(inb(pic.master, 1), 0xfd);
  pulse(pic, 1);
  assert.equal(pic.acknowledge(), 0x61);
});

Deno.test("pic: an unfinished init takes the next data writes as ICWs", () => {
  const pic = new Pic8259Pair();
  outb(pic.master, 0, 0x11);
  outb(pic.master, 1, 0x20);
  outb(pic.master, 1, 0xff); // meant as a mask, consumed as ICW3
  assert.equal(inb(pic.master, 1), 0x00);
  outb(pic.master, 1, 0x01); // ICW4
  outb(pic.master, 1, 0xff); // a real mask at last
  assert.equal(inb(pic.master, 1), 0xff);
});

Deno.test("pic: single mode without ICW4 skips ICW3 and ICW4", () => {
  const pic = new Pic8259Pair();
  outb(pic.master, 0, 0x12); // SNGL, no IC4
  outb(pic.master, 1, 0x08);
  outb(pic.master, 1, 0xfd); // OCW1 already
  assert.equal(inb(pic.master, 1), 0xfd);
  pic.line(1).setLevel(true);
  assert.equal(pic.acknowledge(), 0x09);
});

Deno.test("pic: ports tolerate odd widths and offsets", () => {
  const { pic } = setup();
  outN(pic.master, 1, 2, 0x12fb); // 16-bit write to the mask port: low byte only
  assert.equal(inb(pic.master, 1), 0xfb);
  assert.equal(inN(pic.master, 1, 4), 0xfb);
  outb(pic.master, 2, 0x11); // beyond the two ports: ignored
  assert.equal(inb(pic.master, 2), 0xff);
  assert.equal(inb(pic.master, 1), 0xfb);
  assert.throws(() => pic.line(16), RangeError);
});

Deno.test("pic: onChange fires only when INT changes", () => {
  const { pic, changes } = setup();
  pulse(pic, 3);
  pulse(pic, 4);
  assert.equal(changes(), 1);
  pic.acknowledge();
  assert.equal(changes(), 2);
  outb(pic.master, 0, 0x20);
  assert.equal(changes(), 3, "EOI lets IRQ4 raise INT");
});
