import assert from "node:assert/strict";
import { inb, inN, outb, outN } from "./fakes.ts";
import { I8042 } from "./i8042.ts";

function setup() {
  let resets = 0;
  const kbc = new I8042(() => resets++);
  const cmd = (v: number) => outb(kbc.command, 0, v);
  const status = () => inb(kbc.command, 0);
  const data = () => inb(kbc.data, 0);
  return { kbc, cmd, status, data, resets: () => resets };
}

Deno.test("i8042: idle status and empty data port", () => {
  const { status, data } = setup();
  assert.equal(status(), 0x14, "no OBF, SYS set, keyboard not inhibited");
  assert.equal(data(), 0);
});

Deno.test("i8042: self test answers 0x55 through OBF", () => {
  const { cmd, status, data } = setup();
  cmd(0xaa);
  assert.equal(status() & 0x01, 0x01);
  assert.equal(status() & 0x08, 0x08, "last write was a command");
  assert.equal(data(), 0x55);
  assert.equal(status() & 0x01, 0);
  assert.equal(data(), 0, "nothing queued reads 0");
});

Deno.test("i8042: keyboard interface test answers 0x00", () => {
  const { cmd, data, status } = setup();
  cmd(0xab);
  assert.equal(status() & 0x01, 0x01);
  assert.equal(data(), 0x00);
});

Deno.test("i8042: command byte read and write, enable/disable bits", () => {
  const { kbc, cmd, data, status } = setup();
  cmd(0x20);
  assert.equal(data(), 0x45);
  cmd(0x60);
  outb(kbc.data, 0, 0x00);
  assert.equal(status() & 0x08, 0, "last write was data");
  assert.equal(status() & 0x04, 0, "SYS follows the command byte");
  cmd(0x20);
  assert.equal(data(), 0x00);
  cmd(0xad);
  cmd(0xa7);
  cmd(0x20);
  assert.equal(data(), 0x30);
  cmd(0xae);
  cmd(0xa8);
  cmd(0x20);
  assert.equal(data(), 0x00);
  cmd(0xaa);
  cmd(0x20);
  data();
  assert.equal(data(), 0x04, "self test sets the system flag");
});

Deno.test("i8042: replies queue in order", () => {
  const { cmd, data } = setup();
  cmd(0xaa);
  cmd(0xab);
  cmd(0x20);
  assert.deepEqual([data(), data(), data(), data()], [0x55, 0x00, 0x45, 0x00]);
});

Deno.test("i8042: a guest that never reads cannot grow the queue", () => {
  const { cmd, data } = setup();
  for (let i = 0; i < 1000; i++) cmd(0xaa);
  let n = 0;
  while (data() === 0x55) n++;
  assert.ok(n > 0 && n <= 16, `queued ${n}`);
});

Deno.test("i8042: 0xFE and other pulse commands with bit 0 clear reset", () => {
  const { cmd, resets } = setup();
  cmd(0xfe);
  assert.equal(resets(), 1);
  cmd(0xff); // pulses nothing
  assert.equal(resets(), 1);
  cmd(0xf0);
  assert.equal(resets(), 2);
});

Deno.test("i8042: output port write with bit 0 clear resets; A20 tracked", () => {
  const { kbc, cmd, data, resets } = setup();
  cmd(0xd0);
  assert.equal(data(), 0x03);
  cmd(0xd1);
  outb(kbc.data, 0, 0x01); // A20 off, no reset
  assert.equal(resets(), 0);
  assert.equal(kbc.a20, false);
  cmd(0xd1);
  outb(kbc.data, 0, 0x02);
  assert.equal(resets(), 1);
  assert.equal(kbc.a20, true);
});

Deno.test("i8042: data without a pending command goes to the keyboard", () => {
  const { kbc, cmd, data, status, resets } = setup();
  outb(kbc.data, 0, 0xff); // keyboard reset: acknowledge, then self-test passed
  assert.equal(status() & 0x21, 0x01, "OBF from the keyboard, not the mouse");
  assert.deepEqual([data(), data()], [0xfa, 0xaa]);
  assert.equal(status() & 0x01, 0);
  cmd(0x60);
  cmd(0x20); // a new command cancels the pending parameter
  outb(kbc.data, 0, 0x00);
  assert.equal(data(), 0x45, "command byte unchanged");
  assert.equal(resets(), 0);
});

Deno.test("i8042: unknown commands are ignored", () => {
  const { cmd, status } = setup();
  cmd(0xd3);
  cmd(0x12);
  assert.equal(status() & 0x01, 0);
});

Deno.test("i8042: wide accesses use the low byte", () => {
  const { kbc, resets } = setup();
  assert.equal(inN(kbc.command, 0, 2), 0x14);
  outN(kbc.command, 0, 4, 0x123456fe);
  assert.equal(resets(), 1);
  outN(kbc.command, 0, 2, 0xaa);
  assert.equal(inN(kbc.data, 0, 4), 0x55);
});

Deno.test("i8042: keys arrive translated to set 1 with IRQ 1, one byte per read", async () => {
  const { keyByCode } = await import("./ps2_keymap.ts");
  const irq1: boolean[] = [];
  const kbc = new I8042(() => {}, { keyboardIrq: { setLevel: (h) => irq1.push(h) } });
  const a = keyByCode("KeyA")!;
  const up = keyByCode("ArrowUp")!;
  kbc.keyEvent(a, true);
  kbc.keyEvent(a, false);
  kbc.keyEvent(up, false);
  assert.equal(irq1.at(-1), true);
  const got: number[] = [];
  while (inb(kbc.command, 0) & 1) got.push(inb(kbc.data, 0));
  // Set 2 "1C", "F0 1C", "E0 F0 75" become set 1 "1E", "9E", "E0 C8".
  assert.deepEqual(got, [0x1e, 0x9e, 0xe0, 0xc8]);
  assert.equal(irq1.at(-1), false, "line low once the buffer is empty");
});

Deno.test("i8042: without translation the guest sees set 2; scan code set 1 is honoured", async () => {
  const { keyByCode } = await import("./ps2_keymap.ts");
  const kbc = new I8042(() => {});
  const cmd = (v: number) => outb(kbc.command, 0, v);
  cmd(0x60), outb(kbc.data, 0, 0x01); // interrupts on, no translation
  const read = () => {
    const got: number[] = [];
    while (inb(kbc.command, 0) & 1) got.push(inb(kbc.data, 0));
    return got;
  };
  kbc.keyEvent(keyByCode("KeyA")!, false);
  assert.deepEqual(read(), [0xf0, 0x1c]);
  outb(kbc.data, 0, 0xf0), outb(kbc.data, 0, 0x00); // which set?
  assert.deepEqual(read(), [0xfa, 0xfa, 0x02]);
  outb(kbc.data, 0, 0xf0), outb(kbc.data, 0, 0x01);
  kbc.keyEvent(keyByCode("KeyA")!, false);
  assert.deepEqual(read(), [0xfa, 0xfa, 0x9e]);
  outb(kbc.data, 0, 0xf2);
  assert.deepEqual(read(), [0xfa, 0xab, 0x83]);
  outb(kbc.data, 0, 0x42);
  assert.deepEqual(read(), [0xfe], "unknown keyboard command: resend");
});

Deno.test("i8042: the mouse through 0xD4: reset, id, enable, packets with IRQ 12 and AUX_OBF", () => {
  const irq12: boolean[] = [];
  const kbc = new I8042(() => {}, { mouseIrq: { setLevel: (h) => irq12.push(h) } });
  const cmd = (v: number) => outb(kbc.command, 0, v);
  const aux = (v: number) => (cmd(0xd4), outb(kbc.data, 0, v));
  const read = () => {
    const got: number[] = [];
    while (inb(kbc.command, 0) & 1) got.push(inb(kbc.data, 0));
    return got;
  };
  cmd(0xa8);
  cmd(0x60), outb(kbc.data, 0, 0x47); // both interrupts, translation
  aux(0xff);
  assert.equal(inb(kbc.command, 0) & 0x21, 0x21);
  assert.deepEqual(read(), [0xfa, 0xaa, 0x00]);
  aux(0xf2);
  assert.deepEqual(read(), [0xfa, 0x00]);
  kbc.mouseEvent(5, 5, 1);
  assert.deepEqual(read(), [], "no packets before reporting is enabled");
  aux(0xf4);
  read();
  kbc.mouseEvent(-3, 300, 1);
  assert.equal(irq12.at(-1), true);
  // 300 up is split: 255 then 45; x -3 goes in the first packet.
  assert.deepEqual(read(), [0x09 | 0x10, 0xfd, 0xff, 0x09, 0x00, 45]);
  assert.equal(irq12.at(-1), false);
  aux(0xe9);
  assert.deepEqual(read(), [0xfa, 0x20 | 0x04, 2, 100]);
});

Deno.test("i8042: a flood of key events is bounded by the keyboard's buffer", async () => {
  const { keyByCode } = await import("./ps2_keymap.ts");
  const kbc = new I8042(() => {});
  const k = keyByCode("KeyB")!;
  let accepted = 0;
  for (let i = 0; i < 10000; i++) if (kbc.keyEvent(k, i % 2 === 0)) accepted++;
  assert.ok(accepted < 100, `accepted ${accepted}`);
});

Deno.test("i8042: every byte raises its own IRQ 1 edge, even when the next one is already queued", async () => {
  const { keyByCode } = await import("./ps2_keymap.ts");
  const levels: boolean[] = [];
  const kbc = new I8042(() => {}, { keyboardIrq: { setLevel: (h) => levels.push(h) } });
  const k = keyByCode("KeyB")!;
  kbc.keyEvent(k, true);
  kbc.keyEvent(k, false); // queued behind the make code
  let edges = 0;
  let last = false;
  const count = () => {
    for (const l of levels.splice(0)) {
      if (l && !last) edges++;
      last = l;
    }
  };
  count();
  assert.equal(edges, 1);
  assert.equal(inb(kbc.data, 0), 0x30);
  count();
  assert.equal(edges, 2, "the break code got an edge of its own");
  assert.equal(inb(kbc.data, 0), 0xb0);
  count();
  assert.equal(last, false);
});
