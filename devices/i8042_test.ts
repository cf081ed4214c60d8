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

Deno.test("i8042: data without a pending command goes to the absent keyboard", () => {
  const { kbc, cmd, data, status, resets } = setup();
  outb(kbc.data, 0, 0xff); // keyboard reset command: nobody answers
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
