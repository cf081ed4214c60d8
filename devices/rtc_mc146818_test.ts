import assert from "node:assert/strict";
import { FakeClock, inb, inN, outb, outN, RecordingIrqLine } from "./fakes.ts";
import { RtcMc146818 } from "./rtc_mc146818.ts";

const GIB = 2 ** 30;
const MIB = 2 ** 20;

/** An RTC whose wall clock is `startIso` plus however far the fake clock moved. */
function setup(startIso = "2024-05-06T17:08:09.250Z", memory = { below: 512 * MIB, above: 0 }) {
  const clock = new FakeClock(0);
  const irq = new RecordingIrqLine();
  const base = Date.parse(startIso);
  let hostStepMs = 0;
  const rtc = new RtcMc146818({
    clock,
    irq,
    memoryBelow4gBytes: memory.below,
    memoryAbove4gBytes: memory.above,
    now: () => new Date(base + hostStepMs + Math.floor(clock.nowNs() / 1e6)),
  });
  const reg = (index: number) => (outb(rtc, 0, index), inb(rtc, 1));
  const set = (index: number, value: number) => (outb(rtc, 0, index), outb(rtc, 1, value));
  const stepHostClock = (ms: number) => (hostStepMs += ms);
  return { rtc, clock, irq, reg, set, stepHostClock };
}

Deno.test("rtc: time and date in BCD, 24-hour by default", () => {
  const { reg } = setup();
  assert.equal(reg(0x00), 0x09);
  assert.equal(reg(0x02), 0x08);
  assert.equal(reg(0x04), 0x17);
  assert.equal(reg(0x06), 0x02, "Monday is day 2");
  assert.equal(reg(0x07), 0x06);
  assert.equal(reg(0x08), 0x05);
  assert.equal(reg(0x09), 0x24);
  assert.equal(reg(0x32), 0x20);
  assert.equal(reg(0x0a), 0x26);
  assert.equal(reg(0x0b), 0x02);
  assert.equal(reg(0x0d), 0x80);
});

Deno.test("rtc: binary mode and 12-hour mode", () => {
  const { reg, set } = setup();
  set(0x0b, 0x06); // binary, 24 h
  assert.equal(reg(0x04), 17);
  assert.equal(reg(0x09), 24);
  assert.equal(reg(0x32), 20);
  set(0x0b, 0x04); // binary, 12 h
  assert.equal(reg(0x04), 0x80 | 5, "5 PM");
  set(0x0b, 0x00); // BCD, 12 h
  assert.equal(reg(0x04), 0x85);
});

Deno.test("rtc: 12-hour midnight and noon", () => {
  const midnight = setup("2024-01-01T00:30:00Z");
  midnight.set(0x0b, 0x00);
  assert.equal(midnight.reg(0x04), 0x12, "12 AM");
  const noon = setup("2024-01-01T12:30:00Z");
  noon.set(0x0b, 0x00);
  assert.equal(noon.reg(0x04), 0x92, "12 PM");
  noon.set(0x04, 0x01); // 1 AM
  noon.set(0x0b, 0x02);
  assert.equal(noon.reg(0x04), 0x01);
});

Deno.test("rtc: the clock advances with the host wall clock", () => {
  const { reg, clock } = setup();
  clock.advanceNs(2_000_000_000);
  assert.equal(reg(0x00), 0x11);
});

Deno.test("rtc: SET halts the clock; the written time runs after clearing it", () => {
  const { rtc, reg, set, clock } = setup();
  set(0x0b, 0x82); // SET
  clock.advanceNs(5_000_000_000);
  assert.equal(reg(0x00), 0x09, "halted while SET");
  set(0x00, 0x30);
  set(0x02, 0x45);
  set(0x04, 0x23);
  set(0x07, 0x31);
  set(0x08, 0x12);
  set(0x09, 0x99);
  set(0x32, 0x19);
  set(0x0b, 0x02);
  assert.equal(rtc.guestTime().toISOString(), "1999-12-31T23:45:30.000Z");
  clock.advanceNs(31_000_000_000);
  assert.equal(rtc.guestTime().toISOString(), "1999-12-31T23:46:01.000Z");
  assert.equal(reg(0x06), 0x06, "Friday");
});

Deno.test("rtc: a time write without SET moves the clock at once", () => {
  const { rtc, set, reg } = setup();
  set(0x09, 0x30);
  assert.equal(reg(0x09), 0x30);
  assert.equal(rtc.guestTime().getUTCFullYear(), 2030);
  set(0x06, 0x05); // any weekday sticks
  assert.equal(reg(0x06), 0x05);
});

Deno.test("rtc: nonsense time values do not throw", () => {
  const { set, reg } = setup();
  set(0x00, 0xff);
  set(0x08, 0x00);
  set(0x07, 0xee);
  assert.equal(typeof reg(0x00), "number");
});

Deno.test("rtc: UIP is set only just before the second ticks", () => {
  const { reg, clock } = setup("2024-05-06T17:08:09.000Z");
  assert.equal(reg(0x0a) & 0x80, 0);
  clock.advanceNs(998_000_000);
  assert.equal(reg(0x0a) & 0x80, 0);
  clock.advanceNs(1_000_000);
  assert.equal(reg(0x0a) & 0x80, 0x80);
  clock.advanceNs(1_000_000);
  assert.equal(reg(0x0a) & 0x80, 0);
  assert.equal(reg(0x00), 0x10);
});

Deno.test("rtc: register A keeps UIP read-only; register B SET clears UIE", () => {
  const { reg, set } = setup();
  set(0x0a, 0xa6);
  assert.equal(reg(0x0a) & 0x7f, 0x26);
  set(0x0b, 0x92);
  assert.equal(reg(0x0b), 0x82);
  set(0x0b, 0x12);
  assert.equal(reg(0x0b), 0x12);
});

Deno.test("rtc: C and D are read-only; C clears on read", () => {
  const { reg, set, clock } = setup();
  set(0x0c, 0xff);
  set(0x0d, 0x00);
  assert.equal(reg(0x0d), 0x80);
  assert.equal(reg(0x0c), 0x00);
  clock.advanceNs(1_000_000_000);
  assert.equal(reg(0x0c), 0x40 | 0x10, "PF and UF, no IRQF without enables");
  assert.equal(reg(0x0c), 0x00);
});

Deno.test("rtc: periodic interrupt at the register-A rate, one edge per C read", () => {
  const { rtc, reg, set, clock, irq } = setup();
  const periodNs = 1e9 / 1024; // RS = 6
  reg(0x0c);
  set(0x0b, 0x42); // PIE
  assert.equal(rtc.nextDeadlineNs(), periodNs);
  clock.timeNs = periodNs;
  rtc.poll(clock.nowNs());
  assert.equal(irq.level, true);
  assert.equal(rtc.nextDeadlineNs(), Infinity, "waits for the guest to read C");
  clock.timeNs = 5 * periodNs;
  rtc.poll(clock.nowNs());
  assert.equal(irq.risingEdges, 1);
  assert.equal(reg(0x0c), 0xc0);
  assert.equal(irq.level, false);
  assert.equal(rtc.nextDeadlineNs(), 6 * periodNs);
  set(0x0a, 0x2f); // RS = 15: 500 ms
  assert.equal(rtc.nextDeadlineNs(), 500_000_000);
  set(0x0a, 0x20); // RS = 0: off
  assert.equal(rtc.nextDeadlineNs(), Infinity);
});

Deno.test("rtc: rate select 1 and 2 give 256 Hz and 128 Hz", () => {
  const { rtc, set } = setup();
  set(0x0b, 0x42);
  set(0x0a, 0x21);
  assert.equal(rtc.nextDeadlineNs(), 3_906_250);
  set(0x0a, 0x22);
  assert.equal(rtc.nextDeadlineNs(), 7_812_500);
  set(0x0a, 0x23);
  assert.equal(rtc.nextDeadlineNs(), 122_070.3125);
});

Deno.test("rtc: setting PIE with PF already set raises the IRQ", () => {
  const { set, clock, irq, reg } = setup();
  clock.advanceNs(10_000_000);
  set(0x0b, 0x42);
  assert.equal(irq.level, true);
  assert.equal(reg(0x0c) & 0xc0, 0xc0);
});

Deno.test("rtc: update-ended interrupt each second", () => {
  const { rtc, reg, set, clock, irq } = setup("2024-05-06T17:08:09.250Z");
  set(0x0a, 0x20); // no periodic flag noise
  set(0x0b, 0x12); // UIE
  assert.equal(rtc.nextDeadlineNs(), 750_000_000);
  clock.timeNs = 749_000_000;
  rtc.poll(clock.nowNs());
  assert.equal(irq.level, false);
  clock.timeNs = 750_000_000;
  rtc.poll(clock.nowNs());
  assert.equal(irq.level, true);
  assert.equal(reg(0x0c), 0x90);
  assert.equal(irq.level, false);
});

Deno.test("rtc: alarm interrupt on match, with don't-care bytes", () => {
  const { rtc, reg, set, clock, irq } = setup("2024-05-06T17:08:09.500Z");
  set(0x0a, 0x20);
  set(0x01, 0x12); // seconds alarm 12
  set(0x03, 0xc0); // any minute
  set(0x05, 0xff); // any hour
  set(0x0b, 0x22); // AIE
  reg(0x0c);
  clock.timeNs = 1_500_000_000; // 17:08:11
  rtc.poll(clock.nowNs());
  assert.equal(irq.level, false);
  clock.timeNs = 3_600_000_000; // 17:08:13: polled late, 12 was passed
  rtc.poll(clock.nowNs());
  assert.equal(irq.level, true);
  assert.equal(reg(0x0c), 0xb0);
  set(0x05, 0x18); // hour must now be 18
  clock.timeNs = 62_600_000_000; // 17:09:12
  rtc.poll(clock.nowNs());
  assert.equal(irq.level, false);
});

Deno.test("rtc: divider reset holds the time and the periodic flag", () => {
  const { reg, set, clock } = setup();
  reg(0x0c);
  set(0x0a, 0x66); // DV = 110
  clock.advanceNs(3_000_000_000);
  assert.equal(reg(0x00), 0x09);
  assert.equal(reg(0x0c), 0x00);
  set(0x0a, 0x26);
  clock.advanceNs(1_000_000_000);
  assert.equal(reg(0x00), 0x10);
});

Deno.test("rtc: a host clock stepped backwards raises no update", () => {
  const { reg, set, stepHostClock, irq } = setup();
  set(0x0a, 0x20);
  set(0x0b, 0x12);
  reg(0x0c);
  stepHostClock(-10_000);
  assert.equal(reg(0x00), 0x59);
  assert.equal(irq.level, false);
});

Deno.test("rtc: index bit 7 disables NMI and is masked off the index", () => {
  const { rtc, reg } = setup();
  outb(rtc, 0, 0x8a);
  assert.equal(rtc.nmiDisabled, true);
  assert.equal(inb(rtc, 1), 0x26, "0x8A reads register A");
  outb(rtc, 0, 0xff);
  outb(rtc, 1, 0x5a);
  assert.equal(reg(0x7f), 0x5a);
  assert.equal(rtc.nmiDisabled, false, "the reg() helper wrote index 0x7f");
});

Deno.test("rtc: CMOS RAM bytes read back", () => {
  const { reg, set } = setup();
  for (const index of [0x0e, 0x40, 0x7e]) {
    set(index, index ^ 0xa5);
    assert.equal(reg(index), index ^ 0xa5);
  }
});

Deno.test("rtc: memory-size bytes for 3 GiB below and 4 GiB above 4 GiB", () => {
  const { reg } = setup(undefined, { below: 3 * GIB, above: 4 * GIB });
  const word = (i: number) => reg(i) | (reg(i + 1) << 8);
  assert.equal(word(0x15), 640);
  assert.equal(word(0x17), 0xffff, "capped");
  assert.equal(word(0x30), 0xffff);
  assert.equal(word(0x34), (3 * GIB - 16 * MIB) / 65536);
  assert.equal(reg(0x5b) | (reg(0x5c) << 8) | (reg(0x5d) << 16), (4 * GIB) / 65536);
});

Deno.test("rtc: memory-size bytes for small guests", () => {
  const small = setup(undefined, { below: 8 * MIB, above: 0 });
  const word = (i: number) => small.reg(i) | (small.reg(i + 1) << 8);
  assert.equal(word(0x17), 7 * 1024);
  assert.equal(word(0x30), 7 * 1024);
  assert.equal(word(0x34), 0);
  const tiny = setup(undefined, { below: 512 * 1024, above: 0 });
  assert.equal(tiny.reg(0x17) | (tiny.reg(0x18) << 8), 0);
  const huge = setup(undefined, { below: 3.5 * GIB, above: 2 ** 50 });
  assert.equal(huge.reg(0x34) | (huge.reg(0x35) << 8), 0xdf00);
  assert.equal(huge.reg(0x5b) | (huge.reg(0x5c) << 8) | (huge.reg(0x5d) << 16), 0xffffff);
});

Deno.test("rtc: index port reads 0xff; odd widths and offsets are harmless", () => {
  const { rtc } = setup();
  assert.equal(inb(rtc, 0), 0xff);
  outN(rtc, 0, 2, 0x1200); // low byte: index 0
  assert.equal(inN(rtc, 1, 2), 0x09, "byte value, zero-extended");
  outb(rtc, 2, 0x00);
  assert.equal(inb(rtc, 2), 0xff);
});
