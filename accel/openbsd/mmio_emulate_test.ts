import assert from "node:assert/strict";
import type { Registers } from "../types.ts";
import { GuestMemory } from "../../core/guest_memory.ts";
import { emulateMmio, GPR_FIELDS, type MmioEmulateInput, X86_RFLAGS_DF } from "./mmio_emulate.ts";
import { fetchInstruction, X86_CR0_PG, X86_CR4_PAE, X86_EFER_LMA } from "./page_walk.ts";
import type { CpuMode } from "./x86_decode.ts";

/** Registers with a distinct, all-bytes-nonzero value in each GPR so merges are visible. */
function regs(over: Partial<Registers> = {}): Registers {
  const r = { rip: 0x1000n, rflags: 0x2n } as Registers;
  GPR_FIELDS.forEach((f, i) => {
    const b = BigInt(0x11 * ((i % 15) + 1));
    r[f] = 0x0101010101010101n * b; // e.g. rcx = 0x2222222222222222
  });
  return { ...r, ...over };
}

function hx(text: string): Uint8Array {
  return new Uint8Array(text.split(" ").filter((p) => p).map((p) => parseInt(p, 16)));
}

interface Access {
  kind: "read" | "write";
  gpa: number;
  data: number[];
}

/** Runs one emulation against a recording device that answers reads with `device`. */
function run(
  cpuMode: CpuMode,
  bytes: string,
  start: Registers,
  device: number[] = [],
  extra: Partial<MmioEmulateInput> = {},
) {
  const log: Access[] = [];
  const result = emulateMmio({
    bytes: hx(bytes),
    cpuMode,
    regs: start,
    gpa: 0xfeb00010,
    mmioRead(gpa, data) {
      data.set(device.slice(0, data.length));
      log.push({ kind: "read", gpa, data: [...data] });
    },
    mmioWrite(gpa, data) {
      log.push({ kind: "write", gpa, data: [...data] });
    },
    ...extra,
  });
  return { result, log };
}

function okRegs(r: ReturnType<typeof run>["result"]): Registers {
  if ("error" in r) assert.fail(r.error);
  return r.regs;
}

// deno-fmt-ignore
const LOADS: { mode: CpuMode; hex: string; device: number[]; field: (typeof GPR_FIELDS)[number]; want: bigint }[] = [
  // 32-bit destination: upper half cleared.
  { mode: "long64", hex: "8b 03", device: [0x78, 0x56, 0x34, 0x12], field: "rax", want: 0x12345678n },
  { mode: "long64", hex: "48 8b 03", device: [1, 2, 3, 4, 5, 6, 7, 0x88], field: "rax", want: 0x8807060504030201n },
  // 16- and 8-bit destinations merge.
  { mode: "long64", hex: "66 8b 03", device: [0x34, 0x12], field: "rax", want: 0x1111111111111234n },
  { mode: "long64", hex: "8a 0b", device: [0xab], field: "rcx", want: 0x22222222222222abn },
  { mode: "long64", hex: "8a 20", device: [0xab], field: "rax", want: 0x111111111111ab11n }, // AH
  { mode: "long64", hex: "8a 38", device: [0xab], field: "rbx", want: 0x444444444444ab44n }, // BH
  { mode: "long64", hex: "40 8a 20", device: [0xab], field: "rsp", want: 0x55555555555555abn }, // SPL
  { mode: "long64", hex: "44 8a 38", device: [0xab], field: "r15", want: 0x11111111111111abn }, // R15B
  { mode: "long64", hex: "45 8b 65 00", device: [0xef, 0xbe, 0xad, 0xde], field: "r12", want: 0xdeadbeefn },
  { mode: "long64", hex: "a0 10 00 00 00 00 00 00 00", device: [0x5a], field: "rax", want: 0x111111111111115an },
  // MOVZX / MOVSX.
  { mode: "long64", hex: "0f b6 06", device: [0x80], field: "rax", want: 0x80n },
  { mode: "long64", hex: "0f be 06", device: [0x80], field: "rax", want: 0xffffff80n },
  { mode: "long64", hex: "48 0f be 06", device: [0x80], field: "rax", want: 0xffffffffffffff80n },
  { mode: "long64", hex: "48 0f be 06", device: [0x7f], field: "rax", want: 0x7fn },
  { mode: "long64", hex: "48 0f bf 47 08", device: [0x00, 0x80], field: "rax", want: 0xffffffffffff8000n },
  { mode: "long64", hex: "48 0f b7 06", device: [0x00, 0x80], field: "rax", want: 0x8000n },
  { mode: "long64", hex: "66 0f be 07", device: [0x80], field: "rax", want: 0x111111111111ff80n },
  { mode: "long64", hex: "66 0f b6 07", device: [0x80], field: "rax", want: 0x1111111111110080n },
  { mode: "long64", hex: "4c 0f bf 14 4b", device: [0xfe, 0xff], field: "r10", want: 0xfffffffffffffffen },
  // 16- and 32-bit code.
  { mode: "real", hex: "8b 00", device: [0x34, 0x12], field: "rax", want: 0x1111111111111234n },
  { mode: "real", hex: "66 8b 00", device: [0x78, 0x56, 0x34, 0x12], field: "rax", want: 0x12345678n },
  { mode: "protected16", hex: "66 0f be 07", device: [0xff], field: "rax", want: 0xffffffffn },
  { mode: "protected32", hex: "8a 63 04", device: [0x99], field: "rax", want: 0x1111111111119911n },
  { mode: "protected32", hex: "0f bf 4b 02", device: [0x01, 0x90], field: "rcx", want: 0xffff9001n },
];

Deno.test("loads: the destination gets the device value at its width and extension", () => {
  for (const { mode, hex, device, field, want } of LOADS) {
    const start = regs();
    const { result, log } = run(mode, hex, start, device);
    const out = okRegs(result);
    const label = `${mode} ${hex}`;
    assert.equal(out[field].toString(16), want.toString(16), `${label}: ${field}`);
    // Exactly one read of the access width at the exit's address, nothing else changed.
    assert.equal(log.length, 1, label);
    assert.equal(log[0].kind, "read");
    assert.equal(log[0].gpa, 0xfeb00010);
    for (const f of GPR_FIELDS) if (f !== field) assert.equal(out[f], start[f], `${label}: ${f}`);
    assert.equal(out.rip, start.rip + BigInt(hx(hex).length), `${label}: rip`);
    assert.equal(out.rflags, start.rflags);
  }
});

// deno-fmt-ignore
const STORES: { mode: CpuMode; hex: string; over?: Partial<Registers>; data: number[] }[] = [
  { mode: "long64", hex: "89 03", over: { rax: 0xaabbccdd11223344n }, data: [0x44, 0x33, 0x22, 0x11] },
  { mode: "long64", hex: "48 89 03", over: { rax: 0x0807060504030201n }, data: [1, 2, 3, 4, 5, 6, 7, 8] },
  { mode: "long64", hex: "66 89 03", over: { rax: 0xbeefn }, data: [0xef, 0xbe] },
  { mode: "long64", hex: "88 3b", over: { rbx: 0x1234n }, data: [0x12] }, // BH
  { mode: "long64", hex: "40 88 3b", over: { rdi: 0x1234n }, data: [0x34] }, // DIL
  { mode: "long64", hex: "4c 89 43 08", over: { r8: 0xfedcba9876543210n }, data: [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe] },
  { mode: "long64", hex: "67 a2 10 00 00 00", over: { rax: 0x77n }, data: [0x77] },
  { mode: "long64", hex: "c6 00 05", data: [5] },
  { mode: "long64", hex: "66 c7 00 34 12", data: [0x34, 0x12] },
  { mode: "long64", hex: "c7 00 78 56 34 12", data: [0x78, 0x56, 0x34, 0x12] },
  { mode: "long64", hex: "48 c7 00 ff ff ff ff", data: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] },
  { mode: "long64", hex: "48 c7 00 00 00 00 80", data: [0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff] },
  { mode: "long64", hex: "48 c7 00 ff ff ff 7f", data: [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0] },
  { mode: "real", hex: "89 85 00 01", over: { rax: 0x9876n }, data: [0x76, 0x98] },
  { mode: "protected16", hex: "26 88 27", over: { rax: 0xab00n }, data: [0xab] }, // AH
  { mode: "protected32", hex: "c7 05 00 10 00 00 78 56 34 12", data: [0x78, 0x56, 0x34, 0x12] },
];

Deno.test("stores: the device gets the register or immediate at the access width", () => {
  for (const { mode, hex, over, data } of STORES) {
    const start = regs(over);
    const { result, log } = run(mode, hex, start);
    const out = okRegs(result);
    assert.deepEqual(log, [{ kind: "write", gpa: 0xfeb00010, data }], `${mode} ${hex}`);
    assert.deepEqual({ ...out, rip: 0n }, { ...start, rip: 0n }, `${mode} ${hex}: registers`);
    assert.equal(out.rip, start.rip + BigInt(hx(hex).length));
  }
});

// deno-fmt-ignore
const STOS: { mode: CpuMode; hex: string; df: boolean; rdi: bigint; wantRdi: bigint; data: number[] }[] = [
  { mode: "long64", hex: "48 ab", df: false, rdi: 0x1000n, wantRdi: 0x1008n, data: [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11] },
  { mode: "long64", hex: "48 ab", df: true, rdi: 0x1000n, wantRdi: 0xff8n, data: [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11] },
  { mode: "long64", hex: "aa", df: true, rdi: 0n, wantRdi: 0xffffffffffffffffn, data: [0x11] },
  { mode: "long64", hex: "ab", df: false, rdi: 0x2000n, wantRdi: 0x2004n, data: [0x11, 0x11, 0x11, 0x11] },
  // 32-bit address size: EDI wraps and RDI's upper half is cleared.
  { mode: "long64", hex: "67 aa", df: false, rdi: 0x1ffffffffn, wantRdi: 0n, data: [0x11] },
  { mode: "long64", hex: "67 66 ab", df: true, rdi: 0x500000010n, wantRdi: 0xen, data: [0x11, 0x11] },
  { mode: "protected32", hex: "ab", df: true, rdi: 0x3000n, wantRdi: 0x2ffcn, data: [0x11, 0x11, 0x11, 0x11] },
  // 16-bit address size: DI wraps, the rest of RDI is kept.
  { mode: "protected32", hex: "67 aa", df: false, rdi: 0x1234ffffn, wantRdi: 0x12340000n, data: [0x11] },
  { mode: "real", hex: "aa", df: true, rdi: 0x12340000n, wantRdi: 0x1234ffffn, data: [0x11] },
  { mode: "real", hex: "66 ab", df: false, rdi: 0x10n, wantRdi: 0x14n, data: [0x11, 0x11, 0x11, 0x11] },
  { mode: "real", hex: "66 67 ab", df: false, rdi: 0xfffffffen, wantRdi: 0x2n, data: [0x11, 0x11, 0x11, 0x11] },
];

Deno.test("STOS: stores AL/AX/EAX/RAX and steps RDI by DF at the address size", () => {
  for (const { mode, hex, df, rdi, wantRdi, data } of STOS) {
    const rflags = df ? 0x2n | X86_RFLAGS_DF : 0x2n;
    const start = regs({ rdi, rflags });
    const { result, log } = run(mode, hex, start);
    const out = okRegs(result);
    const label = `${mode} ${hex} DF=${Number(df)}`;
    assert.deepEqual(log, [{ kind: "write", gpa: 0xfeb00010, data }], label);
    assert.equal(out.rdi.toString(16), wantRdi.toString(16), `${label}: rdi`);
    assert.equal(out.rflags, rflags);
    assert.equal(out.rax, start.rax);
  }
});

Deno.test("RIP wraps at the code size", () => {
  const r16 = okRegs(run("real", "8b 0e 34 12", regs({ rip: 0xfffen }), [1, 2]).result);
  assert.equal(r16.rip, 0x2n);
  const r32 = okRegs(run("protected32", "8b 03", regs({ rip: 0xffffffffn }), [1, 2, 3, 4]).result);
  assert.equal(r32.rip, 0x1n);
  const r64 = okRegs(
    run("long64", "8b 03", regs({ rip: 0xffffffff_fffffff0n }), [0, 0, 0, 0]).result,
  );
  assert.equal(r64.rip, 0xffffffff_fffffff2n);
});

Deno.test("fails closed: unknown instruction, REP, length mismatch; the device is not touched", () => {
  const start = regs({ rip: 0x1234n });
  const vmrun = run("long64", "0f 01 d8", start);
  assert.deepEqual(vmrun.log, []);
  assert.ok("error" in vmrun.result);
  assert.equal(
    vmrun.result.error,
    "Unsupported MMIO instruction at RIP 0x1234: 0f 01 d8 (opcode 0f 01 is not emulated)",
  );
  const rep = run("long64", "f3 48 ab", start);
  assert.ok("error" in rep.result && /RIP 0x1234: f3 48 ab \(REP/.test(rep.result.error));
  assert.deepEqual(rep.log, []);
  const mismatch = run("long64", "8b 43 10", start, [], { insnLength: 4 });
  assert.ok("error" in mismatch.result);
  assert.match(mismatch.result.error, /"8b 43 10" at RIP 0x1234 decodes to 3 bytes/);
  assert.match(mismatch.result.error, /hypervisor reported 4/);
  assert.deepEqual(mismatch.log, []);
  // A matching length is fine.
  assert.ok("regs" in run("long64", "8b 43 10", start, [0, 0, 0, 0], { insnLength: 3 }).result);
});

Deno.test("input registers are not modified", () => {
  const start = regs();
  const copy = { ...start };
  okRegs(run("long64", "48 8b 03", start, [1, 2, 3, 4, 5, 6, 7, 8]).result);
  assert.deepEqual(start, copy);
});

Deno.test("fetch + emulate: a page-crossing instruction and a truncated fetch", () => {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }]);
  // Identity-map the first 2 MiB with one 2 MiB page, except linear 0x1000..0x2fff via a PT.
  mem.writeU64(0x10000, 0x11000n | 3n);
  mem.writeU64(0x11000, 0x12000n | 3n);
  mem.writeU64(0x12000, 0x13000n | 3n);
  mem.writeU64(0x13000 + 1 * 8, 0x40000n | 3n); // 0x1000 -> 0x40000
  mem.writeU64(0x13000 + 2 * 8, 0x80000n | 3n); // 0x2000 -> 0x80000 (not adjacent)
  const mode = { cr0: 1n | X86_CR0_PG, cr3: 0x10000n, cr4: X86_CR4_PAE, efer: X86_EFER_LMA };
  // mov qword [rax], -2 split 2 + 5 across the boundary.
  mem.write(0x40ffe, hx("48 c7"));
  mem.write(0x80000, hx("00 fe ff ff ff"));
  const fetched = fetchInstruction(mem, mode, 0n, 0x1ffen);
  assert.ok("bytes" in fetched && fetched.fault === undefined);
  const { result, log } = run("long64", "", regs({ rip: 0x1ffen }), [], { bytes: fetched.bytes });
  assert.equal(okRegs(result).rip, 0x2005n);
  assert.deepEqual(log[0].data, [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

  // Page 0x3000 is not mapped: "8b 03" fits before it, "c7 00 ..." does not.
  mem.write(0x80ffe, hx("8b 03"));
  const short = fetchInstruction(mem, mode, 0n, 0x2ffen);
  assert.ok("bytes" in short && short.fault !== undefined && short.bytes.length === 2);
  const fits = run("long64", "", regs({ rip: 0x2ffen }), [1, 0, 0, 0], {
    bytes: short.bytes,
    fetchFault: short.fault,
  });
  assert.equal(okRegs(fits.result).rax, 1n);
  mem.write(0x80ffe, hx("c7 00"));
  const cut = fetchInstruction(mem, mode, 0n, 0x2ffen);
  assert.ok("bytes" in cut && cut.fault !== undefined);
  const failed = run("long64", "", regs({ rip: 0x2ffen }), [], {
    bytes: cut.bytes,
    fetchFault: cut.fault,
  });
  assert.ok("error" in failed.result);
  assert.match(failed.result.error, /RIP 0x2ffe past "c7 00": instruction fetch at linear 0x3000/);
  assert.deepEqual(failed.log, []);
});
