import assert from "node:assert/strict";
import { FakeClock, inb, inN, outb, outN, RecordingIrqLine } from "./fakes.ts";
import { Pic8259Pair } from "./pic8259.ts";
import { Pit8254, PIT_FREQUENCY_HZ, PIT_MIN_IRQ_INTERVAL_NS, Port61 } from "./pit8254.ts";

/** The time `ticks` PIT input clocks take, rounded up to a whole nanosecond. */
const ticksNs = (ticks: number) => Math.ceil((ticks * 1e9) / PIT_FREQUENCY_HZ);

function setup() {
  const clock = new FakeClock(1_000_000_000);
  const irq = new RecordingIrqLine();
  const pit = new Pit8254(clock, irq);
  const port61 = new Port61(pit);
  const start = clock.timeNs;
  /** Moves to `ticks` PIT clocks after the start. */
  const at = (ticks: number) => (clock.timeNs = start + ticksNs(ticks));
  /** Moves `ticks` PIT clocks on from now (exact relative to the last state change). */
  const adv = (ticks: number) => clock.advanceNs(ticksNs(ticks));
  return { clock, irq, pit, port61, at, adv };
}

/** Programs `channel` with a control word and a 16-bit count (LSB then MSB). */
function program(pit: Pit8254, channel: number, mode: number, count: number, bcd = false) {
  outb(pit, 3, (channel << 6) | 0x30 | (mode << 1) | (bcd ? 1 : 0));
  outb(pit, channel, count & 0xff);
  outb(pit, channel, count >> 8);
}

function readCount(pit: Pit8254, channel: number): number {
  outb(pit, 3, channel << 6); // counter latch
  return inb(pit, channel) | (inb(pit, channel) << 8);
}

Deno.test("pit: mode 2 counts down from N and wraps each period", () => {
  const { pit, at } = setup();
  program(pit, 0, 2, 1000);
  assert.equal(readCount(pit, 0), 1000);
  at(100);
  assert.equal(readCount(pit, 0), 900);
  at(999);
  assert.equal(readCount(pit, 0), 1);
  at(1000);
  assert.equal(readCount(pit, 0), 1000);
  at(2250);
  assert.equal(readCount(pit, 0), 750);
});

Deno.test("pit: access modes LSB only, MSB only, LSB then MSB", () => {
  const { pit, at } = setup();
  outb(pit, 3, 0x94); // channel 2, LSB only, mode 2
  outb(pit, 2, 0x80);
  assert.equal(inb(pit, 2), 0x80);
  outb(pit, 3, 0xa4); // channel 2, MSB only, mode 2
  outb(pit, 2, 0x02);
  outb(pit, 3, 0x80); // channel 2 latch (count 0x0200 with gate low: stopped)
  assert.equal(inb(pit, 2), 0x02, "MSB-only access reads the high byte");
  program(pit, 1, 2, 0x1234);
  at(0x34);
  assert.equal(inb(pit, 1), 0x00, "live LSB of 0x1200");
  assert.equal(inb(pit, 1), 0x12, "then live MSB");
});

Deno.test("pit: counter latch freezes the count until both bytes are read", () => {
  const { pit, at } = setup();
  program(pit, 0, 2, 50000);
  at(1000);
  outb(pit, 3, 0x00);
  at(5000);
  outb(pit, 3, 0x00); // a second latch is ignored until the first is read
  assert.equal(inb(pit, 0) | (inb(pit, 0) << 8), 49000);
  assert.equal(readCount(pit, 0), 45000);
});

Deno.test("pit: count 0 means 65536 in binary and 10000 in BCD", () => {
  const { pit, adv } = setup();
  program(pit, 0, 2, 0);
  adv(1);
  assert.equal(readCount(pit, 0), 65535);
  adv(65535);
  assert.equal(readCount(pit, 0), 0, "reload shows as 0");
  program(pit, 0, 2, 0x0000, true);
  adv(1);
  assert.equal(readCount(pit, 0), 0x9999);
  adv(10002);
  assert.equal(readCount(pit, 0), 0x9997);
});

Deno.test("pit: BCD counts read and write as BCD", () => {
  const { pit, at } = setup();
  program(pit, 0, 0, 0x1234, true);
  at(34);
  assert.equal(readCount(pit, 0), 0x1200);
  program(pit, 0, 0, 0x00ab, true); // invalid digits: logged, no throw
  assert.equal(typeof readCount(pit, 0), "number");
});

Deno.test("pit: read-back latches status and count of several channels", () => {
  const { pit, at } = setup();
  program(pit, 0, 2, 3000);
  program(pit, 1, 3, 0x4000, true);
  at(500);
  outb(pit, 3, 0xc0 | 0x06); // read-back count+status, channels 0 and 1
  at(900);
  assert.equal(inb(pit, 0), 0x80 | 0x30 | (2 << 1), "status: OUT high, word, mode 2");
  assert.equal(inb(pit, 0) | (inb(pit, 0) << 8), 2500);
  assert.equal(inb(pit, 1), 0x80 | 0x30 | (3 << 1) | 1, "status: BCD mode 3");
  assert.equal(inb(pit, 1) | (inb(pit, 1) << 8), 0x3000, "4000 - 2*500 in BCD");
});

Deno.test("pit: read-back status only, count only, and null count", () => {
  const { pit, at } = setup();
  outb(pit, 3, 0x30); // channel 0 mode 0, no count yet
  outb(pit, 3, 0xe2); // status only
  assert.equal(inb(pit, 0), 0x40 | 0x30, "OUT low, null count");
  outb(pit, 0, 100);
  outb(pit, 0, 0);
  outb(pit, 3, 0xd2); // count only
  at(10);
  assert.equal(inb(pit, 0) | (inb(pit, 0) << 8), 100);
  at(100);
  outb(pit, 3, 0xe2);
  assert.equal(inb(pit, 0), 0x80 | 0x30, "terminal count: OUT high, count loaded");
  outb(pit, 3, 0xc2); // count and status: status reads first
  outb(pit, 3, 0xe2); // a repeated status latch is ignored
  assert.equal(inb(pit, 0) & 0x80, 0x80);
  assert.equal(inb(pit, 0) | (inb(pit, 0) << 8), 0);
});

Deno.test("pit: mode 0 raises OUT at terminal count and keeps counting", () => {
  const { pit, irq, at, clock } = setup();
  program(pit, 0, 0, 500);
  pit.poll(clock.nowNs());
  assert.equal(irq.level, false);
  assert.equal(pit.nextDeadlineNs(), 1_000_000_000 + ticksNs(500));
  at(499);
  pit.poll(clock.nowNs());
  assert.equal(irq.level, false);
  at(500);
  pit.poll(clock.nowNs());
  assert.equal(irq.level, true);
  assert.equal(pit.nextDeadlineNs(), Infinity);
  at(510);
  assert.equal(readCount(pit, 0), 65526, "wraps through 0xffff");
  outb(pit, 3, 0x30);
  assert.equal(irq.level, false, "a new control word drops OUT");
});

Deno.test("pit: mode 0 first byte of a word count stops counting", () => {
  const { pit, at } = setup();
  program(pit, 0, 0, 1000);
  at(100);
  outb(pit, 0, 0x10);
  at(300);
  assert.equal(pit.out(0), false);
  outb(pit, 0, 0x00); // count 0x0010 starts now
  at(310);
  assert.equal(readCount(pit, 0), 6);
});

Deno.test("pit: mode 2 pulses IRQ0 once per period; missed periods give one", () => {
  const { pit, irq, clock } = setup();
  const t0 = clock.nowNs();
  program(pit, 0, 2, 11932); // ~10 ms
  const period = ticksNs(11932);
  assert.equal(pit.nextDeadlineNs(), t0 + period);
  clock.timeNs = t0 + period;
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 1);
  assert.equal(irq.level, false, "pulse ends low for the next edge");
  assert.equal(pit.nextDeadlineNs(), t0 + ticksNs(2 * 11932));
  clock.timeNs = t0 + ticksNs(5 * 11932) + 10;
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 2, "four missed periods, one interrupt");
  assert.equal(pit.nextDeadlineNs(), t0 + ticksNs(6 * 11932));
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 2, "nothing new due");
});

Deno.test("pit: very short periods are paced to the minimum IRQ interval", () => {
  const { pit, irq, clock } = setup();
  program(pit, 0, 2, 2);
  clock.advanceNs(ticksNs(2));
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 1);
  assert.ok(pit.nextDeadlineNs() >= clock.nowNs() + PIT_MIN_IRQ_INTERVAL_NS);
});

Deno.test("pit: mode 3 square wave: OUT high half, low half", () => {
  const { pit, at, irq, clock } = setup();
  program(pit, 0, 3, 100);
  at(10);
  assert.equal(pit.out(0), true);
  assert.equal(readCount(pit, 0), 80);
  at(60);
  assert.equal(pit.out(0), false);
  assert.equal(readCount(pit, 0), 80);
  at(100);
  assert.equal(pit.out(0), true);
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 1);
});

Deno.test("pit: a new mode 2 count takes effect at the end of the period", () => {
  const { pit, adv } = setup();
  program(pit, 0, 2, 1000);
  adv(200);
  outb(pit, 0, 0xf4); // 500, no control word
  outb(pit, 0, 0x01);
  assert.equal(readCount(pit, 0), 800, "current period continues");
  outb(pit, 3, 0xe2);
  assert.equal(inb(pit, 0) & 0x40, 0x40, "null count until the reload");
  adv(900);
  assert.equal(readCount(pit, 0), 400);
  adv(400);
  assert.equal(readCount(pit, 0), 500);
  outb(pit, 3, 0xe2);
  assert.equal(inb(pit, 0) & 0x40, 0, "reloaded");
});

Deno.test("pit: mode 4 strobes OUT low for one clock at terminal count", () => {
  const { pit, at, irq, clock } = setup();
  program(pit, 0, 4, 300);
  at(299);
  assert.equal(pit.out(0), true);
  at(300);
  assert.equal(pit.out(0), false);
  at(301);
  assert.equal(pit.out(0), true);
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 1);
  at(70000);
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 1, "a strobe fires once");
  assert.equal(pit.nextDeadlineNs(), Infinity);
});

Deno.test("pit: channel 2 gate through port 61 pauses mode 0", () => {
  const { pit, port61, adv } = setup();
  outb(port61, 0, 0x01);
  program(pit, 2, 0, 1000);
  adv(300);
  outb(port61, 0, 0x00);
  adv(500);
  assert.equal(readCount(pit, 2), 700, "paused while the gate is low");
  outb(port61, 0, 0x01);
  adv(300);
  assert.equal(readCount(pit, 2), 400);
  assert.equal(inb(port61, 0) & 0x20, 0);
  adv(400);
  assert.equal(inb(port61, 0) & 0x20, 0x20, "OUT2 at terminal count");
});

Deno.test("pit: channel 2 gate restarts mode 2 and triggers modes 1 and 5", () => {
  const { pit, port61, adv } = setup();
  program(pit, 2, 2, 1000);
  adv(500);
  assert.equal(readCount(pit, 2), 1000, "gate low: not counting");
  outb(port61, 0, 0x01);
  adv(200);
  assert.equal(readCount(pit, 2), 800);
  outb(port61, 0, 0x00);
  assert.equal(pit.out(2), true, "gate low forces OUT high in mode 2");
  outb(port61, 0, 0x01); // rising edge reloads
  adv(50);
  assert.equal(readCount(pit, 2), 950);

  program(pit, 2, 1, 100); // gate is high already: waits for a new edge
  adv(150);
  assert.equal(pit.out(2), true);
  assert.equal(readCount(pit, 2), 950, "not triggered: the counter keeps its value");
  outb(port61, 0, 0x00);
  outb(port61, 0, 0x01);
  adv(50);
  assert.equal(pit.out(2), false, "one-shot running: OUT low");
  assert.equal(readCount(pit, 2), 50);
  adv(50);
  assert.equal(pit.out(2), true);
  outb(port61, 0, 0x00); // mode 1 ignores a low gate
  adv(10);
  assert.equal(readCount(pit, 2), 65526);

  program(pit, 2, 5, 100);
  outb(port61, 0, 0x01);
  adv(100);
  assert.equal(pit.out(2), false, "hardware strobe at terminal count");
  adv(1);
  assert.equal(pit.out(2), true);
});

Deno.test("pit: Linux-style calibration on channel 2 with port 61", () => {
  const { pit, port61, clock } = setup();
  outb(port61, 0, (inb(port61, 0) & ~0x02) | 0x01); // gate on, speaker off
  outb(pit, 3, 0xb0); // channel 2, word, mode 0, binary
  outb(pit, 2, 0xff);
  outb(pit, 2, 0xff);
  let reads = 0;
  while ((inb(port61, 0) & 0x20) === 0) {
    clock.advanceNs(1_000_000);
    reads++;
  }
  assert.equal(reads, Math.ceil(ticksNs(0xffff) / 1_000_000));
});

Deno.test("pit: port 61 stores speaker and NMI enable bits and toggles refresh", () => {
  const { port61, pit, clock } = setup();
  outb(port61, 0, 0xff);
  const v = inb(port61, 0);
  assert.equal(v & 0x0f, 0x0f);
  assert.equal(pit.gate(2), true);
  clock.timeNs = 15_085 * 10;
  const r1 = inb(port61, 0) & 0x10;
  clock.timeNs = 15_085 * 11;
  const r2 = inb(port61, 0) & 0x10;
  assert.notEqual(r1, r2);
  assert.equal(inN(port61, 0, 2) >> 8, 0, "wide reads carry the byte only");
});

Deno.test("pit: reset state runs channel 0 at 18.2 Hz in mode 3", () => {
  const { pit, irq, clock } = setup();
  outb(pit, 3, 0xe2);
  assert.equal(inb(pit, 0), 0x80 | 0x30 | (3 << 1));
  assert.equal(pit.nextDeadlineNs(), clock.nowNs() + ticksNs(65536));
  clock.advanceNs(ticksNs(65536));
  pit.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 1);
});

Deno.test("pit: control port reads 0xff; odd widths and offsets are harmless", () => {
  const { pit } = setup();
  assert.equal(inb(pit, 3), 0xff);
  assert.equal(inb(pit, 7), 0xff);
  outb(pit, 9, 0x34);
  outN(pit, 3, 2, 0xff34); // 16-bit write to the control port: low byte only
  outN(pit, 0, 4, 0x12345678);
  outN(pit, 0, 4, 0x12345600);
  assert.equal(readCount(pit, 0), 0x0078);
  assert.equal(inN(pit, 0, 2) >> 8, 0);
});

Deno.test("pit: modes 6 and 7 behave as 2 and 3 but read back as written", () => {
  const { pit, at } = setup();
  outb(pit, 3, 0x3c); // mode 6
  outb(pit, 0, 100);
  outb(pit, 0, 0);
  at(130);
  assert.equal(readCount(pit, 0), 70);
  outb(pit, 3, 0xe2);
  assert.equal((inb(pit, 0) >> 1) & 7, 6);
});

Deno.test("pit + pic: each IRQ0 pulse latches one interrupt in an edge-triggered PIC", () => {
  const pic = new Pic8259Pair();
  outb(pic.master, 0, 0x11);
  outb(pic.master, 1, 0x20);
  outb(pic.master, 1, 0x04);
  outb(pic.master, 1, 0x01);
  const clock = new FakeClock();
  const pit = new Pit8254(clock, pic.line(0));
  program(pit, 0, 2, 1193);
  let delivered = 0;
  for (let period = 1; period <= 5; period++) {
    clock.timeNs = pit.nextDeadlineNs();
    pit.poll(clock.nowNs());
    assert.equal(pic.hasInterrupt(), true, `period ${period}`);
    assert.equal(pic.acknowledge(), 0x20);
    outb(pic.master, 0, 0x20);
    delivered++;
  }
  assert.equal(delivered, 5);
  assert.equal(pic.hasInterrupt(), false);
});
