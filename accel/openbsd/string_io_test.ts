import assert from "node:assert/strict";
import { zeroRegisters } from "../../loaders/cpu_state.ts";
import { GuestMemory } from "../../core/guest_memory.ts";
import type { Registers, Segment, SpecialRegisters } from "../types.ts";
import {
  advanceStringIo,
  decodeStringIo,
  planStringIo,
  STRING_IO_MAX_BYTES,
  stringIoRemaining,
} from "./string_io.ts";

function hx(t: string): Uint8Array {
  return new Uint8Array(t.split(" ").map((p) => parseInt(p, 16)));
}

const REGS: Registers = { ...zeroRegisters(), rip: 0x1000n };

function seg(base: bigint): Segment {
  return {
    base,
    limit: 0xffffffff,
    selector: 0x10,
    type: 3,
    present: true,
    dpl: 0,
    db: true,
    s: true,
    l: false,
    g: true,
    avl: false,
    unusable: false,
  };
}

function sregs(extra: Partial<SpecialRegisters> = {}): SpecialRegisters {
  return {
    cs: seg(0n),
    ds: seg(0n),
    es: seg(0x10000n),
    fs: seg(0x20000n),
    gs: seg(0n),
    ss: seg(0n),
    tr: seg(0n),
    ldt: seg(0n),
    gdt: { base: 0n, limit: 0 },
    idt: { base: 0n, limit: 0 },
    cr0: 1n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
    ...extra,
  };
}

Deno.test("decodeStringIo: direction, width, address size, segment, REP per mode", () => {
  assert.deepEqual(decodeStringIo(hx("f3 6e"), "protected32"), {
    length: 2,
    op: "outs",
    width: 1,
    addressSize: 4,
    segment: "ds",
    rep: true,
  });
  assert.deepEqual(decodeStringIo(hx("6d"), "real"), {
    length: 1,
    op: "ins",
    width: 2,
    addressSize: 2,
    segment: "es",
    rep: false,
  });
  const fsOuts = decodeStringIo(hx("64 66 67 f3 6f"), "protected32");
  assert.ok(!("error" in fsOuts));
  assert.deepEqual([fsOuts.length, fsOuts.width, fsOuts.addressSize, fsOuts.segment], [
    5,
    2,
    2,
    "fs",
  ]);
  const long = decodeStringIo(hx("f3 48 6f"), "long64");
  assert.ok(!("error" in long));
  assert.deepEqual([long.width, long.addressSize, long.length], [4, 8, 3]);
  // INS always writes ES, whatever the override.
  const ins = decodeStringIo(hx("2e 6c"), "protected32");
  assert.ok(!("error" in ins) && ins.segment === "es");
  const bad = decodeStringIo(hx("ee 90"), "protected32");
  assert.ok("error" in bad);
  assert.match(
    bad.error,
    /Expected an INS\/OUTS instruction for a string I\/O exit, found "ee 90"/,
  );
});

Deno.test("planStringIo: element addresses through paging, forwards and backwards, capped", () => {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x40000 }]);
  const insn = decodeStringIo(hx("f3 6e"), "protected32");
  assert.ok(!("error" in insn));
  const fwd = planStringIo(mem, insn, { ...REGS, rsi: 0x5000n, rcx: 3n }, sregs(), 3n, false);
  assert.deepEqual(fwd, { count: 3, gpas: [0x5000, 0x5001, 0x5002] });
  const back = planStringIo(
    mem,
    insn,
    { ...REGS, rsi: 0x5000n, rflags: 0x402n },
    sregs(),
    2n,
    false,
  );
  assert.deepEqual(back, { count: 2, gpas: [0x5000, 0x4fff] });
  // Word INS at ES:DI: the segment base counts, and bytes come in element order.
  const insw = decodeStringIo(hx("66 f3 6d"), "protected32");
  assert.ok(!("error" in insw));
  assert.deepEqual(planStringIo(mem, insw, { ...REGS, rdi: 0x10n }, sregs(), 2n, false), {
    count: 2,
    gpas: [0x10010, 0x10011, 0x10012, 0x10013],
  });
  // Capped at a page of bytes.
  const big = planStringIo(mem, insn, { ...REGS, rsi: 0n }, sregs(), 100000n, false);
  assert.ok(!("error" in big) && big.count === STRING_IO_MAX_BYTES);
  // Running out of RAM stops the batch; nothing at all is an error.
  const edge = planStringIo(mem, insn, { ...REGS, rsi: 0x3fffen }, sregs(), 5n, false);
  assert.deepEqual(edge, { count: 2, gpas: [0x3fffe, 0x3ffff] });
  const none = planStringIo(mem, insn, { ...REGS, rsi: 0x50000n }, sregs(), 5n, false);
  assert.ok("error" in none && /outside guest RAM/.test(none.error));
  // With 32-bit paging: linear 0x400000 maps to 0x7000 through a PTE.
  mem.writeU32(0x1000 + 1 * 4, 0x2000 | 3); // PDE 1 -> page table at 0x2000
  mem.writeU32(0x2000, 0x7000 | 3); // PTE 0 -> 0x7000
  const paged = planStringIo(
    mem,
    insn,
    { ...REGS, rsi: 0x400000n },
    sregs({ cr0: 0x80000001n, cr3: 0x1000n }),
    2n,
    false,
  );
  assert.deepEqual(paged, { count: 2, gpas: [0x7000, 0x7001] });
});

Deno.test("advanceStringIo: index and count at the address size, RIP only when done", () => {
  const insn = decodeStringIo(hx("f3 6e"), "real");
  assert.ok(!("error" in insn));
  const r = { ...REGS, rsi: 0xdead_fffen, rcx: 0xbeef_0005n, rip: 0x1000n };
  assert.equal(stringIoRemaining(insn, r), 5n);
  const mid = advanceStringIo(insn, r, 3, 0xffffn);
  // 16-bit: the upper bits of RSI/RCX stay, the low 16 wrap.
  assert.deepEqual([mid.rsi, mid.rcx, mid.rip], [0xdead_0001n, 0xbeef_0002n, 0x1000n]);
  const done = advanceStringIo(insn, mid, 2, 0xffffn);
  assert.deepEqual([done.rcx, done.rip], [0xbeef_0000n, 0x1002n]);
  const l = decodeStringIo(hx("67 6c"), "long64");
  assert.ok(!("error" in l));
  const ins = advanceStringIo(
    l,
    { ...REGS, rdi: 0xffff_ffff_ffff_fff0n, rip: 0x10n },
    1,
    (1n << 64n) - 1n,
  );
  // 32-bit address size in 64-bit mode: EDI written, upper half cleared; not REP: done.
  assert.deepEqual([ins.rdi, ins.rip], [0xffff_fff1n, 0x12n]);
});
