import assert from "node:assert/strict";
import { ApicBus, ApicRegisterFile, DeliveryMode, R } from "./apic.ts";
import {
  ESR,
  LAPIC_MIN_PERIOD_NS,
  LAPIC_VERSION,
  LocalApic,
  LVT_MASKED,
  timerDivisor,
} from "./apic.ts";
import { FakeClock, inN, outN } from "./fakes.ts";

/** `n` local APICs on one bus; the bus records which vCPUs it notified. */
function cpus(n = 1) {
  const clock = new FakeClock();
  const files = Array.from({ length: n }, () => new ApicRegisterFile());
  const notified: number[] = [];
  const eois: number[] = [];
  const bus = new ApicBus(files, (i) => notified.push(i));
  const apics = files.map((regs, id) =>
    new LocalApic({ id, regs, clock, bus, eoiBroadcast: (v) => eois.push(v) })
  );
  return { clock, apics, notified, eois };
}

const rd = (a: LocalApic, off: number) => inN(a, off, 4);
const wr = (a: LocalApic, off: number, v: number) => outN(a, off, 4, v >>> 0);
const enable = (a: LocalApic, svr = 0xff) => wr(a, 0xf0, 0x100 | svr);
/** Sends an IPI: destination in ICR high, then ICR low. */
const ipi = (a: LocalApic, low: number, dest = 0) => {
  wr(a, 0x310, dest << 24);
  wr(a, 0x300, low);
};

Deno.test("lapic: reset values of ID, version, DFR, SVR and the LVTs", () => {
  const { apics: [bsp, ap] } = cpus(2);
  assert.equal(rd(ap, 0x20), 1 << 24);
  assert.equal(rd(bsp, 0x30), LAPIC_VERSION);
  assert.equal((rd(bsp, 0x30) >> 16) & 0xff, 5, "max LVT entry: six LVTs");
  assert.equal(rd(bsp, 0xe0), 0xffffffff);
  assert.equal(rd(bsp, 0xf0), 0xff);
  for (const off of [0x320, 0x330, 0x340, 0x370]) assert.equal(rd(bsp, off), LVT_MASKED);
  // The BSP starts in virtual-wire mode (LINT0 ExtINT, LINT1 NMI); an AP has both masked.
  assert.equal(rd(bsp, 0x350), DeliveryMode.EXTINT << 8);
  assert.equal(rd(bsp, 0x360), DeliveryMode.NMI << 8);
  assert.ok(bsp.acceptsPicInterrupts);
  assert.equal(rd(ap, 0x350), LVT_MASKED);
  assert.ok(!ap.acceptsPicInterrupts);
});

Deno.test("lapic: registers keep only their writable bits; read-only ones ignore writes", () => {
  const { apics: [a] } = cpus();
  enable(a);
  wr(a, 0x20, 0xffffffff);
  assert.equal(rd(a, 0x20), 0xff000000);
  wr(a, 0x80, 0xffffffff);
  assert.equal(rd(a, 0x80), 0xff);
  wr(a, 0xd0, 0xffffffff);
  assert.equal(rd(a, 0xd0), 0xff000000);
  wr(a, 0xe0, 0);
  assert.equal(rd(a, 0xe0), 0x0fffffff, "cluster model; low bits read 1");
  wr(a, 0x30, 0);
  assert.equal(rd(a, 0x30), LAPIC_VERSION);
  wr(a, 0x350, 0xffffffff);
  assert.equal(rd(a, 0x350), 0x1a7ff, "remote IRR and delivery status are read only");
  wr(a, 0x320, 0xffffffff);
  assert.equal(rd(a, 0x320), 0x300ff, "TSC-deadline (bit 18) is not offered");
  wr(a, 0x370, 0xffffffff);
  assert.equal(rd(a, 0x370), 0x100ff);
  wr(a, 0x330, 0xffffffff);
  assert.equal(rd(a, 0x330), 0x107ff);
  wr(a, 0x3e0, 0xffffffff);
  assert.equal(rd(a, 0x3e0), 0xb, "divide: only bits 3, 1, 0");
  wr(a, 0x390, 1234);
  assert.equal(rd(a, 0x390), 0, "current count is read only");
});

Deno.test("lapic: software disable masks every LVT and keeps them masked", () => {
  const { apics: [a] } = cpus();
  enable(a);
  wr(a, 0x320, 0x40);
  assert.equal(rd(a, 0x320), 0x40);
  wr(a, 0xf0, 0xff); // disable
  assert.equal(rd(a, 0x320) & LVT_MASKED, LVT_MASKED);
  wr(a, 0x320, 0x40);
  assert.equal(rd(a, 0x320) & LVT_MASKED, LVT_MASKED, "cannot unmask while disabled");
  a.regs.acceptVector(0x50, false);
  assert.ok(!a.hasInterrupt(), "a disabled APIC gives the CPU nothing");
  enable(a);
  assert.equal(a.acknowledge(), 0x50, "the request was held in IRR");
});

Deno.test("lapic: IRR -> ISR by priority, TPR and PPR gate delivery, EOI ends the highest", () => {
  const { apics: [a] } = cpus();
  enable(a);
  a.regs.acceptVector(0x41, false);
  a.regs.acceptVector(0x92, false);
  assert.equal(a.acknowledge(), 0x92);
  assert.equal(rd(a, 0xa0), 0x90, "PPR follows the in-service class");
  assert.equal(rd(a, 0x100 + 0x10 * (0x92 >> 5)), 1 << (0x92 & 31), "ISR bit");
  assert.equal(a.pendingVector(), -1);
  a.regs.acceptVector(0x95, false);
  assert.equal(a.pendingVector(), -1, "same class as in service: waits");
  wr(a, 0xb0, 0);
  assert.equal(rd(a, 0xa0), 0, "PPR back to TPR");
  assert.equal(a.acknowledge(), 0x95);
  wr(a, 0xb0, 0);
  wr(a, 0x80, 0x50);
  assert.equal(rd(a, 0xa0), 0x50);
  assert.equal(a.pendingVector(), -1, "0x41 is masked by TPR 0x50");
  wr(a, 0x80, 0x30);
  assert.equal(a.acknowledge(), 0x41);
  assert.equal(a.acknowledge(), 0xff, "nothing left: the spurious vector");
  wr(a, 0xb0, 0);
  wr(a, 0xb0, 0); // EOI with nothing in service is harmless
  assert.equal(rd(a, 0xa0), 0x30);
});

Deno.test("lapic: two requests of one vector coalesce in IRR", () => {
  const { apics: [a] } = cpus();
  enable(a);
  a.regs.acceptVector(0x60, false);
  a.regs.acceptVector(0x60, false);
  assert.equal(a.acknowledge(), 0x60);
  wr(a, 0xb0, 0);
  assert.equal(a.pendingVector(), -1);
});

Deno.test("lapic: EOI of a level-triggered vector is broadcast; an edge one is not", () => {
  const { apics: [a], eois } = cpus();
  enable(a);
  a.regs.acceptVector(0x70, true);
  assert.notEqual(rd(a, 0x180 + 0x10 * (0x70 >> 5)), 0, "TMR bit set");
  a.acknowledge();
  wr(a, 0xb0, 0);
  assert.deepEqual(eois, [0x70]);
  assert.equal(rd(a, 0x180 + 0x10 * (0x70 >> 5)), 0);
  a.regs.acceptVector(0x71, false);
  a.acknowledge();
  wr(a, 0xb0, 0);
  assert.deepEqual(eois, [0x70]);
});

Deno.test("lapic: fixed IPI by physical ID, logical flat and cluster, shorthands", () => {
  const { apics, notified } = cpus(4);
  for (const a of apics) enable(a);
  // physical
  ipi(apics[0], 0x40, 2);
  assert.equal(apics[2].acknowledge(), 0x40);
  wr(apics[2], 0xb0, 0);
  assert.deepEqual(notified, [2]);
  // physical broadcast 0xFF
  ipi(apics[0], 0x41, 0xff);
  for (const a of apics) {
    assert.equal(a.acknowledge(), 0x41);
    wr(a, 0xb0, 0);
  }
  // logical flat: LDR bit per CPU
  apics.forEach((a, i) => wr(a, 0xd0, (1 << i) << 24));
  ipi(apics[0], 0x800 | 0x42, 0b1010);
  assert.deepEqual(apics.map((a) => a.pendingVector()), [-1, 0x42, -1, 0x42]);
  apics.forEach((a) => {
    a.acknowledge();
    wr(a, 0xb0, 0);
  });
  // logical cluster: cluster 1 members 1 and 2
  apics.forEach((a, i) => {
    wr(a, 0xe0, 0);
    wr(a, 0xd0, ((i < 2 ? 0x10 : 0x20) | (1 << (i & 1))) << 24);
  });
  ipi(apics[0], 0x800 | 0x43, 0x22);
  assert.deepEqual(apics.map((a) => a.pendingVector()), [-1, -1, -1, 0x43]);
  apics[3].acknowledge();
  wr(apics[3], 0xb0, 0);
  // shorthands: self, all, all but self
  notified.length = 0;
  wr(apics[1], 0x300, (1 << 18) | 0x44);
  assert.deepEqual(apics.map((a) => a.pendingVector()), [-1, 0x44, -1, -1]);
  apics[1].acknowledge();
  wr(apics[1], 0xb0, 0);
  wr(apics[1], 0x300, (2 << 18) | 0x45);
  assert.deepEqual(apics.map((a) => a.pendingVector()), [0x45, 0x45, 0x45, 0x45]);
  apics.forEach((a) => {
    a.acknowledge();
    wr(a, 0xb0, 0);
  });
  wr(apics[1], 0x300, (3 << 18) | 0x46);
  assert.deepEqual(apics.map((a) => a.pendingVector()), [0x46, -1, 0x46, 0x46]);
  assert.deepEqual(notified, [1, 0, 1, 2, 3, 0, 2, 3]);
  assert.equal(rd(apics[1], 0x300) & (1 << 12), 0, "delivery status: idle");
});

Deno.test("lapic: lowest priority goes to the lowest PPR, ties to the lowest ID", () => {
  const { apics } = cpus(3);
  apics.forEach((a, i) => {
    enable(a);
    wr(a, 0xd0, (1 << i) << 24);
  });
  wr(apics[0], 0x80, 0x40);
  wr(apics[1], 0x80, 0x20);
  wr(apics[2], 0x80, 0x20);
  ipi(apics[0], 0x800 | (DeliveryMode.LOWEST << 8) | 0x80, 0b111);
  assert.deepEqual(apics.map((a) => a.pendingVector()), [-1, 0x80, -1]);
});

Deno.test("lapic: INIT, start-up, NMI and the INIT de-assert arrive as events", () => {
  const { apics: [bsp, ap] } = cpus(2);
  assert.equal(ap.takeEvents(), undefined);
  ipi(bsp, (DeliveryMode.INIT << 8) | (1 << 14), 1); // INIT assert
  ipi(bsp, (DeliveryMode.INIT << 8) | (1 << 15), 1); // INIT level de-assert: no event
  assert.deepEqual(ap.takeEvents(), { init: true, startup: -1, nmi: false, extint: false });
  ipi(bsp, (DeliveryMode.STARTUP << 8) | 0x08, 1);
  assert.deepEqual(ap.takeEvents(), { init: false, startup: 0x08, nmi: false, extint: false });
  ipi(bsp, DeliveryMode.NMI << 8, 1);
  assert.deepEqual(ap.takeEvents(), { init: false, startup: -1, nmi: true, extint: false });
  assert.equal(ap.takeEvents(), undefined);
  assert.equal(bsp.takeEvents(), undefined, "nothing went to the sender");
});

Deno.test("lapic: INIT reset keeps the ID and clears the rest", () => {
  const { apics: [, ap] } = cpus(2);
  enable(ap);
  wr(ap, 0x80, 0x20);
  wr(ap, 0xd0, 0x04000000);
  ap.regs.acceptVector(0x50, false);
  ap.reset();
  assert.equal(rd(ap, 0x20), 1 << 24);
  assert.equal(rd(ap, 0x80), 0);
  assert.equal(rd(ap, 0xd0), 0);
  assert.equal(rd(ap, 0xf0), 0xff);
  assert.equal(rd(ap, 0x200 + 0x10 * 2), 0, "IRR cleared");
});

Deno.test("lapic: hostile ICR writes are logged and ignored, illegal vectors set ESR", () => {
  const { apics: [a, b], notified } = cpus(2);
  enable(a);
  enable(b);
  wr(a, 0x370, 0xfe); // error LVT unmasked, vector 0xFE
  ipi(a, 3 << 8 | 0x40, 1); // reserved mode 3
  ipi(a, 7 << 8 | 0x40, 1); // ExtINT is not an ICR mode
  ipi(a, 0x40, 9); // absent CPU
  ipi(a, 0x800 | 0x40, 0x80); // logical: nobody has that bit (LDR 0)
  assert.deepEqual(notified, []);
  assert.equal(rd(a, 0x280), 0, "ESR shows nothing until written");
  ipi(a, 0x05, 1); // vector below 16
  assert.deepEqual(notified, [], "an illegal vector is not sent");
  wr(a, 0x280, 0);
  assert.equal(rd(a, 0x280), ESR.SEND_ILLEGAL_VECTOR);
  assert.equal(a.acknowledge(), 0xfe, "the error LVT fired");
  wr(a, 0xb0, 0);
  wr(a, 0x280, 0);
  assert.equal(rd(a, 0x280), 0, "a second write clears the latched errors");
  // A reserved register and odd-sized accesses.
  wr(a, 0x2f0, 1);
  assert.equal(rd(a, 0x400), 0);
  wr(a, 0x280, 0);
  assert.equal(rd(a, 0x280), ESR.ILLEGAL_REGISTER);
  outN(a, 0x80, 1, 0x77);
  outN(a, 0x84, 4, 0x77);
  assert.equal(rd(a, 0x80), 0);
  assert.equal(inN(a, 0x20, 2), 0);
  // A timer vector below 16 is a receive error, not an interrupt.
  wr(a, 0x320, 0x03);
  wr(a, 0x380, 10);
  a.poll(1e9);
  wr(a, 0x280, 0);
  assert.equal(rd(a, 0x280), ESR.RECEIVE_ILLEGAL_VECTOR);
});

Deno.test("lapic: divide configuration decodes to 1..128", () => {
  assert.deepEqual(
    [0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xa, 0xb].map(timerDivisor),
    [2, 4, 8, 16, 32, 64, 128, 1],
  );
});

Deno.test("lapic: one-shot timer counts down at the divided clock and fires once", () => {
  const { apics: [a], clock } = cpus();
  enable(a);
  wr(a, 0x3e0, 0x0); // divide by 2: 2 ns per tick at 1 GHz
  wr(a, 0x320, 0x30);
  wr(a, 0x380, 1000);
  assert.equal(rd(a, 0x390), 1000);
  assert.equal(a.nextDeadlineNs(), 2000);
  clock.advanceNs(500);
  assert.equal(rd(a, 0x390), 750);
  a.poll(clock.nowNs());
  assert.equal(a.pendingVector(), -1);
  clock.advanceNs(1500);
  a.poll(clock.nowNs());
  assert.equal(a.acknowledge(), 0x30);
  wr(a, 0xb0, 0);
  assert.equal(rd(a, 0x390), 0);
  assert.equal(a.nextDeadlineNs(), Infinity);
  clock.advanceNs(1e6);
  a.poll(clock.nowNs());
  assert.equal(a.timerFired, 1);
  // A masked timer still counts but raises nothing.
  wr(a, 0x320, LVT_MASKED | 0x30);
  wr(a, 0x380, 10);
  clock.advanceNs(100);
  a.poll(clock.nowNs());
  assert.equal(a.timerFired, 2);
  assert.equal(a.pendingVector(), -1);
});

Deno.test("lapic: periodic timer reloads, coalesces missed periods, count 0 stops it", () => {
  const { apics: [a], clock } = cpus();
  enable(a);
  wr(a, 0x3e0, 0xb); // divide by 1
  wr(a, 0x320, (1 << 17) | 0x31);
  wr(a, 0x380, 1_000_000); // 1 ms
  clock.advanceNs(1_000_000);
  a.poll(clock.nowNs());
  assert.equal(a.acknowledge(), 0x31);
  wr(a, 0xb0, 0);
  assert.equal(a.nextDeadlineNs(), 2_000_000);
  clock.advanceNs(250_000);
  assert.equal(rd(a, 0x390), 750_000);
  clock.advanceNs(3_750_000); // four periods late
  a.poll(clock.nowNs());
  assert.equal(a.timerFired, 2, "missed periods coalesce");
  assert.equal(a.nextDeadlineNs(), 6_000_000);
  wr(a, 0x380, 0);
  assert.equal(a.nextDeadlineNs(), Infinity);
  assert.equal(rd(a, 0x390), 0);
  // A tiny periodic count is clamped so the host does not spin.
  wr(a, 0x380, 1);
  assert.equal(a.nextDeadlineNs(), clock.nowNs() + LAPIC_MIN_PERIOD_NS);
});

Deno.test("lapic: changing the divider mid-count keeps the count", () => {
  const { apics: [a], clock } = cpus();
  enable(a);
  wr(a, 0x3e0, 0xb);
  wr(a, 0x320, 0x32);
  wr(a, 0x380, 1000);
  clock.advanceNs(400);
  wr(a, 0x3e0, 0x1); // divide by 4
  assert.equal(rd(a, 0x390), 600);
  clock.advanceNs(400);
  assert.equal(rd(a, 0x390), 500);
  assert.equal(a.nextDeadlineNs(), 400 + 600 * 4);
});

Deno.test("lapic: LINT pins deliver by their LVT; level mode has a remote IRR", () => {
  const { apics: [a], eois } = cpus();
  enable(a);
  assert.equal(a.localInterrupt(0), DeliveryMode.EXTINT, "the BSP's LINT0 is ExtINT");
  assert.equal(a.localInterrupt(1), DeliveryMode.NMI);
  wr(a, 0x350, (1 << 15) | 0x58); // fixed, level
  assert.equal(a.localInterrupt(0), -1);
  assert.equal(a.localInterrupt(0), -1, "remote IRR holds the second");
  assert.notEqual(rd(a, 0x350) & (1 << 14), 0);
  assert.equal(a.acknowledge(), 0x58);
  assert.equal(a.pendingVector(), -1);
  wr(a, 0xb0, 0);
  assert.equal(rd(a, 0x350) & (1 << 14), 0, "EOI clears LINT0's remote IRR");
  assert.deepEqual(eois, [0x58]);
  wr(a, 0x360, LVT_MASKED);
  assert.equal(a.localInterrupt(1), -1);
  assert.equal(a.pendingVector(), -1);
});

Deno.test("lapic: register file words are shared through a SharedArrayBuffer", () => {
  const sab = new SharedArrayBuffer(ApicRegisterFile.BYTES * 2);
  const mine = new ApicRegisterFile(sab, 0);
  const theirs = new ApicRegisterFile(sab, ApicRegisterFile.BYTES);
  const other = new ApicRegisterFile(sab, 0); // another thread's view of `mine`
  const a = new LocalApic({
    id: 0,
    regs: mine,
    clock: new FakeClock(),
    bus: new ApicBus([mine, theirs]),
  });
  enable(a);
  new ApicBus([other, theirs]).deliver({
    vector: 0x61,
    mode: DeliveryMode.FIXED,
    logical: false,
    dest: 0,
    level: false,
    assert: true,
    shorthand: 0,
    source: 1,
  });
  assert.equal(a.acknowledge(), 0x61);
  assert.equal(other.get(R.ISR + 3), 1 << 1);
});
