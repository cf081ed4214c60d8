import assert from "node:assert/strict";
import { zeroRegisters } from "../../loaders/cpu_state.ts";
import type { Registers, Segment, SpecialRegisters } from "../types.ts";
import {
  type CpuMode,
  cpuModeOf,
  type DecodedMmio,
  decodeMmioInstruction,
  effectiveAddress,
  type MemoryOperand,
} from "./x86_decode.ts";

function hx(text: string): Uint8Array {
  return new Uint8Array(text.trim().split(/\s+/).filter(Boolean).map((p) => parseInt(p, 16)));
}

const ZERO_REGS: Registers = { ...zeroRegisters() };

function seg(base: bigint, extra: Partial<Segment> = {}): Segment {
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
    ...extra,
  };
}

/** Segment bases that make a wrong segment choice visible. */
function sregsFor(mode: CpuMode): SpecialRegisters {
  const long = mode === "long64";
  const pe = mode !== "real";
  return {
    cs: seg(0x100000n, { type: 0xb, l: long, db: mode === "protected32" }),
    ds: seg(0x1000000n),
    es: seg(0x2000000n),
    ss: seg(0x3000000n),
    fs: seg(0x4000000n),
    gs: seg(0x5000000n),
    tr: seg(0n, { type: 0xb, s: false }),
    ldt: seg(0n, { type: 2, s: false }),
    gdt: { base: 0n, limit: 0 },
    idt: { base: 0n, limit: 0 },
    cr0: pe ? 1n : 0n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: long ? 0x500n : 0n,
  };
}

interface Row {
  mode: CpuMode;
  hex: string;
  regs?: Partial<Registers>;
  /** The expected linear address. */
  linear: bigint;
  mem?: Partial<MemoryOperand>;
}

const L = "long64" as const;
const P32 = "protected32" as const;
const P16 = "protected16" as const;
const R = "real" as const;

// deno-fmt-ignore
const ROWS: Row[] = [
  // 64-bit: segment bases of DS/ES/SS/CS are ignored, FS/GS count.
  { mode: L, hex: "8b 03", regs: { rbx: 0xfee00020n }, linear: 0xfee00020n, mem: { base: 3, segment: "ds" } },
  { mode: L, hex: "8b 43 10", regs: { rbx: 0xfee00000n }, linear: 0xfee00010n },
  { mode: L, hex: "8b 43 f0", regs: { rbx: 0xfee00010n }, linear: 0xfee00000n, mem: { disp: 0xfffffffffffffff0n } },
  { mode: L, hex: "8b 44 8b 10", regs: { rbx: 0xfee00000n, rcx: 2n }, linear: 0xfee00018n, mem: { base: 3, index: 1, scale: 4 } },
  { mode: L, hex: "8b 04 24", regs: { rsp: 0x7000n }, linear: 0x7000n, mem: { base: 4, segment: "ss" } },
  { mode: L, hex: "8b 45 08", regs: { rbp: 0x7000n }, linear: 0x7008n, mem: { base: 5, segment: "ss" } },
  { mode: L, hex: "8b 04 25 00 10 e0 fe", linear: 0xfffffffffee01000n, mem: { disp: 0xfffffffffee01000n } },
  { mode: L, hex: "8b 05 00 01 00 00", regs: { rip: 0x200000n }, linear: 0x200106n, mem: { ripRelative: true } },
  { mode: L, hex: "c7 05 f6 00 00 00 01 00 00 00", regs: { rip: 0x1000n }, linear: 0x1100n },
  { mode: L, hex: "43 8b 44 25 08", regs: { r13: 0xc0000000n, r12: 0x100n }, linear: 0xc0000108n, mem: { base: 13, index: 12 } },
  { mode: L, hex: "42 8b 04 e5 00 10 00 00", regs: { r12: 3n }, linear: 0x1018n, mem: { index: 12, scale: 8 } },
  { mode: L, hex: "41 8b 04 24", regs: { r12: 0xd0000000n }, linear: 0xd0000000n, mem: { base: 12 } },
  { mode: L, hex: "8b 04 20", regs: { rax: 0x5000n }, linear: 0x5000n, mem: { base: 0 } }, // SIB index 100 = none
  { mode: L, hex: "67 8b 03", regs: { rbx: 0x1_0000_1000n }, linear: 0x1000n }, // 32-bit addressing wraps
  { mode: L, hex: "67 8b 05 00 01 00 00", regs: { rip: 0xfffffff0n }, linear: 0xf7n }, // EIP-relative wraps
  { mode: L, hex: "64 8b 04 25 10 00 00 00", linear: 0x4000010n, mem: { segment: "fs" } },
  { mode: L, hex: "65 48 8b 03", regs: { rbx: 8n }, linear: 0x5000008n, mem: { segment: "gs" } },
  { mode: L, hex: "2e 89 03", regs: { rbx: 8n }, linear: 8n }, // CS override: base ignored in 64-bit mode
  { mode: L, hex: "a1 00 00 e0 fe 00 00 00 00", linear: 0xfee00000n, mem: { disp: 0xfee00000n } },
  { mode: L, hex: "67 a1 44 33 22 11", linear: 0x11223344n },
  { mode: L, hex: "ab", regs: { rdi: 0xfee00300n }, linear: 0xfee00300n, mem: { base: 7, segment: "es" } },
  { mode: L, hex: "67 aa", regs: { rdi: 0xffff_ffff_0000_0040n }, linear: 0x40n },
  { mode: L, hex: "0f b6 46 ff", regs: { rsi: 0x10n }, linear: 0xfn },
  // 32-bit protected mode: segment bases count, 32-bit wrap.
  { mode: P32, hex: "8b 03", regs: { rbx: 0x10n }, linear: 0x1000010n },
  { mode: P32, hex: "8b 45 fc", regs: { rbp: 0x100n }, linear: 0x30000fcn, mem: { segment: "ss" } },
  { mode: P32, hex: "8b 0d 00 00 e0 fe", linear: 0xffe00000n }, // DS base + disp32, wraps at 4 GiB
  { mode: P32, hex: "8b 44 8e fc", regs: { rsi: 0x100n, rcx: 1n }, linear: 0x1000100n },
  { mode: P32, hex: "26 8b 03", regs: { rbx: 4n }, linear: 0x2000004n, mem: { segment: "es" } },
  { mode: P32, hex: "36 8b 03", regs: { rbx: 4n }, linear: 0x3000004n, mem: { segment: "ss" } },
  { mode: P32, hex: "3e 8b 45 00", regs: { rbp: 4n }, linear: 0x1000004n, mem: { segment: "ds" } },
  { mode: P32, hex: "a3 00 00 e0 fe", linear: 0xffe00000n },
  { mode: P32, hex: "ab", regs: { rdi: 0x20n }, linear: 0x2000020n },
  { mode: P32, hex: "67 8b 07", regs: { rbx: 0x1fffen }, linear: 0x100fffen }, // [bx]: 16-bit wrap
  { mode: P32, hex: "89 03", regs: { rbx: 0x1_0000_0010n }, linear: 0x1000010n }, // upper RBX ignored
  // 16-bit addressing (real and protected16): the eight ModRM base/index pairs.
  { mode: R, hex: "8b 00", regs: { rbx: 0x10n, rsi: 0x20n }, linear: 0x1000030n, mem: { base: 3, index: 6 } },
  { mode: R, hex: "8b 01", regs: { rbx: 0x10n, rdi: 0x30n }, linear: 0x1000040n },
  { mode: R, hex: "8b 02", regs: { rbp: 0x10n, rsi: 0x20n }, linear: 0x3000030n, mem: { segment: "ss" } },
  { mode: R, hex: "8b 03", regs: { rbp: 0x10n, rdi: 0x30n }, linear: 0x3000040n, mem: { segment: "ss" } },
  { mode: R, hex: "8b 04", regs: { rsi: 0x44n }, linear: 0x1000044n },
  { mode: R, hex: "8b 05", regs: { rdi: 0x55n }, linear: 0x1000055n },
  { mode: R, hex: "8b 06 34 12", linear: 0x1001234n, mem: { disp: 0x1234n } },
  { mode: R, hex: "8b 46 02", regs: { rbp: 0x10n }, linear: 0x3000012n, mem: { base: 5, segment: "ss" } },
  { mode: R, hex: "8b 07", regs: { rbx: 0x77n }, linear: 0x1000077n },
  { mode: R, hex: "8b 47 ff", regs: { rbx: 0n }, linear: 0x100ffffn }, // disp8 -1 wraps at 64 KiB
  { mode: R, hex: "8b 87 00 80", regs: { rbx: 0x9000n }, linear: 0x1001000n },
  { mode: R, hex: "8b 00", regs: { rbx: 0xffffn, rsi: 2n }, linear: 0x1000001n },
  { mode: R, hex: "a1 00 80", linear: 0x1008000n },
  { mode: R, hex: "64 a1 00 80", linear: 0x4008000n },
  { mode: R, hex: "aa", regs: { rdi: 0x1_0010n }, linear: 0x2000010n },
  { mode: R, hex: "67 8b 03", regs: { rbx: 0x12345n }, linear: 0x1012345n }, // 32-bit addressing in real mode
  { mode: P16, hex: "8b 46 fe", regs: { rbp: 0x100n }, linear: 0x30000fen },
];

function decode(row: Row): DecodedMmio {
  const d = decodeMmioInstruction(hx(row.hex), { cpuMode: row.mode });
  if ("error" in d) throw new Error(`${row.mode} ${row.hex}: ${d.error}`);
  return d;
}

Deno.test("effectiveAddress: base, index, scale, displacement, RIP-relative and segments", () => {
  assert.ok(ROWS.length >= 45);
  for (const row of ROWS) {
    const label = `${row.mode} ${row.hex}`;
    const d = decode(row);
    const regs = { ...ZERO_REGS, ...row.regs };
    const got = effectiveAddress(d, regs, sregsFor(row.mode));
    assert.equal(got.toString(16), row.linear.toString(16), label);
    for (const [key, value] of Object.entries(row.mem ?? {})) {
      assert.deepEqual(d.mem[key as keyof MemoryOperand], value, `${label}: mem.${key}`);
    }
  }
});

Deno.test("effectiveAddress: the memory operand has no stray fields", () => {
  const d = decode({ mode: L, hex: "8b 03", linear: 0n });
  assert.deepEqual(d.mem, { base: 3, scale: 1, disp: 0n, segment: "ds" });
  const abs = decode({ mode: L, hex: "8b 04 25 00 10 00 00", linear: 0n });
  assert.deepEqual(abs.mem, { scale: 1, disp: 0x1000n, segment: "ds" });
  const rip = decode({ mode: L, hex: "8b 05 10 00 00 00", linear: 0n });
  assert.deepEqual(rip.mem, { scale: 1, disp: 0x10n, ripRelative: true, segment: "ds" });
  // Outside 64-bit mode mod 00 rm 101 is an absolute disp32, not RIP-relative.
  const p32 = decode({ mode: P32, hex: "8b 05 10 00 00 00", linear: 0n });
  assert.deepEqual(p32.mem, { scale: 1, disp: 0x10n, segment: "ds" });
});

Deno.test("cpuModeOf: CR0.PE, EFER.LMA, CS.L, CS.D and virtual-8086 mode", () => {
  for (const mode of [L, P32, P16, R] as const) assert.equal(cpuModeOf(sregsFor(mode)), mode);
  // Compatibility mode (LMA set, CS.L clear) decodes as 32-bit code.
  const compat = sregsFor(L);
  compat.cs = { ...compat.cs, l: false, db: true };
  assert.equal(cpuModeOf(compat), "protected32");
  assert.equal(cpuModeOf(sregsFor(P32), 1n << 17n), "real");
});
