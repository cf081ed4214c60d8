import assert from "node:assert/strict";
import type { CpuState, Segment } from "../accel/types.ts";
import { GuestMemory } from "../core/guest_memory.ts";
import { memoryLayout, MiB } from "../core/layout.ts";
import {
  BOOT_CS,
  BOOT_DS,
  BOOT_GDT_LIMIT,
  BOOT_TR,
  encodeSegmentDescriptor,
  longModeState,
  protectedModeState,
  realModeState,
  resetState,
  writeBootGdt,
  writeIdentityPageTables,
} from "./cpu_state.ts";

/** Decodes a GDT descriptor independently of the encoder. */
function decode(bytes: Uint8Array) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const lo = v.getUint32(0, true);
  const hi = v.getUint32(4, true);
  const g = ((hi >>> 23) & 1) === 1;
  const rawLimit = (lo & 0xffff) | (hi & 0xf0000);
  let base = BigInt((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) & 0xffffffffn;
  if (bytes.length === 16) base |= BigInt(v.getUint32(8, true)) << 32n;
  return {
    base,
    limit: g ? ((rawLimit << 12) | 0xfff) >>> 0 : rawLimit,
    type: (hi >>> 8) & 0xf,
    s: ((hi >>> 12) & 1) === 1,
    dpl: (hi >>> 13) & 3,
    present: ((hi >>> 15) & 1) === 1,
    avl: ((hi >>> 20) & 1) === 1,
    l: ((hi >>> 21) & 1) === 1,
    db: ((hi >>> 22) & 1) === 1,
    g,
  };
}

function cacheFields(s: Segment) {
  const { base, limit, type, s: sBit, dpl, present, avl, l, db, g } = s;
  return { base, limit, type, s: sBit, dpl, present, avl, l, db, g };
}

/** The VMX guest-state checks on segments (SDM vol. 3 26.3.1.2) our states must pass. */
function vmxSegmentProblems(state: CpuState): string[] {
  const p: string[] = [];
  const s = state.sregs;
  const longMode = (s.efer & (1n << 10n)) !== 0n;
  const protectedMode = (s.cr0 & 1n) !== 0n;
  const limitOk = (seg: Segment) =>
    ((seg.limit & 0xfff) === 0xfff || !seg.g) && ((seg.limit >>> 20) === 0 || seg.g);
  for (const name of ["cs", "ds", "es", "fs", "gs", "ss"] as const) {
    const seg = s[name];
    if (seg.unusable) continue;
    if ((seg.type & 1) === 0) p.push(`${name} not accessed`);
    if (!seg.s) p.push(`${name} S=0`);
    if (!seg.present) p.push(`${name} not present`);
    if (!limitOk(seg)) p.push(`${name} limit/G mismatch`);
    if (!protectedMode && seg.base !== BigInt(seg.selector) << 4n && name !== "cs") {
      p.push(`${name} real-mode base`);
    }
  }
  if (protectedMode) {
    if (![9, 11, 13, 15].includes(s.cs.type)) p.push("cs type");
    if (![3, 7].includes(s.ss.type)) p.push("ss type");
    if (s.cs.dpl !== s.ss.dpl) p.push("cs/ss DPL");
    if ((s.ss.selector & 3) !== (s.cs.selector & 3)) p.push("ss RPL");
  } else if (![3, 11].includes(s.cs.type)) p.push("real-mode cs type");
  if (longMode && s.cs.l && s.cs.db) p.push("cs L and D both set");
  if (!longMode && s.cs.l) p.push("cs L outside long mode");
  // TR: usable, busy TSS, S=0, present, selector TI=0.
  if (s.tr.unusable) p.push("tr unusable");
  if (longMode ? s.tr.type !== 11 : ![3, 11].includes(s.tr.type)) p.push("tr type");
  if (s.tr.s || !s.tr.present || !limitOk(s.tr) || (s.tr.selector & 4) !== 0) p.push("tr bits");
  if (!s.ldt.unusable && (s.ldt.type !== 2 || s.ldt.s || !s.ldt.present)) p.push("ldt");
  if (s.gdt.limit > 0xffff || s.idt.limit > 0xffff) p.push("descriptor table limit");
  if ((state.regs.rflags & 2n) === 0n) p.push("rflags bit 1");
  if ((state.regs.rflags & (1n << 9n)) !== 0n) p.push("IF set");
  if (longMode && ((s.cr0 >> 31n) & 1n) === 0n) p.push("LMA without paging");
  if (longMode && (s.cr4 & 0x20n) === 0n) p.push("LMA without PAE");
  return p;
}

Deno.test("resetState is the architectural reset state", () => {
  const st = resetState();
  assert.equal(st.regs.rip, 0xfff0n);
  assert.equal(st.sregs.cs.selector, 0xf000);
  assert.equal(st.sregs.cs.base, 0xffff0000n);
  assert.equal(st.sregs.cs.base + st.regs.rip, 0xfffffff0n);
  assert.equal(st.sregs.cr0, 0x60000010n);
  assert.equal(st.regs.rflags, 2n);
  assert.equal(st.sregs.ds.base, 0n);
  assert.deepEqual(vmxSegmentProblems(st), []);
});

Deno.test("realModeState sets base = selector * 16 everywhere", () => {
  const st = realModeState(0x1020, 0x0, { dataSelector: 0x1000, sp: 0xfff0 });
  assert.equal(st.sregs.cs.base, 0x10200n);
  assert.equal(st.sregs.ss.base, 0x10000n);
  assert.equal(st.sregs.ds.selector, 0x1000);
  assert.equal(st.regs.rsp, 0xfff0n);
  assert.equal(st.sregs.cr0 & 1n, 0n);
  assert.deepEqual(vmxSegmentProblems(st), []);
  const plain = realModeState(0, 0x7c00);
  assert.equal(plain.regs.rip, 0x7c00n);
  assert.equal(plain.sregs.cs.base, 0n);
});

Deno.test("protectedModeState: flat 32-bit CS 0x10, data 0x18, paging off", () => {
  const st = protectedModeState(0x100000, { stackTop: 0x8ff0 });
  const s = st.sregs;
  assert.equal(st.regs.rip, 0x100000n);
  assert.equal(st.regs.rsp, 0x8ff0n);
  assert.equal(s.cr0, 0x11n);
  assert.equal(s.efer, 0n);
  assert.equal(s.cs.selector, 0x10);
  assert.equal(s.cs.db, true);
  assert.equal(s.cs.l, false);
  assert.equal(s.cs.limit, 0xffffffff);
  assert.equal(s.cs.g, true);
  for (const seg of [s.ds, s.es, s.fs, s.gs, s.ss]) {
    assert.equal(seg.selector, 0x18);
    assert.equal(seg.type, 3);
    assert.equal(seg.base, 0n);
  }
  assert.equal(s.tr.type, 11);
  assert.equal(s.tr.present, true);
  assert.equal(s.ldt.unusable, true);
  assert.equal(s.gdt.base, 0x500n);
  assert.deepEqual(vmxSegmentProblems(st), []);
  assert.throws(() => protectedModeState(0x100000000), /out of range/);
});

Deno.test("longModeState: PE|PG|ET, PAE, LME|LMA, CS with L=1", () => {
  const st = longModeState(0x1000200, { stackTop: 0x8ff0 });
  const s = st.sregs;
  assert.equal(s.cr0, 0x80000011n);
  assert.equal(s.cr4, 0x20n);
  assert.equal(s.efer, 0x500n);
  assert.equal(s.cr3, 0x9000n);
  assert.equal(s.cs.l, true);
  assert.equal(s.cs.db, false);
  assert.equal(st.regs.rip, 0x1000200n);
  assert.deepEqual(vmxSegmentProblems(st), []);
});

Deno.test("the VMX checker itself catches broken states", () => {
  const st = longModeState(0x1000);
  st.sregs.cs.db = true;
  st.sregs.tr.type = 9;
  st.sregs.ds.type = 2;
  assert.deepEqual(vmxSegmentProblems(st), ["ds not accessed", "cs L and D both set", "tr type"]);
});

for (const mode of ["protected", "long"] as const) {
  Deno.test(`writeBootGdt(${mode}) matches the segment caches byte for byte`, () => {
    const mem = GuestMemory.anonymous(memoryLayout(16 * MiB).ram);
    mem.fill(0x500, 0x200, 0xcc);
    writeBootGdt(mem, mode);
    const st = mode === "long" ? longModeState(0x100000) : protectedModeState(0x100000);
    const gdt = Number(st.sregs.gdt.base);
    assert.equal(st.sregs.gdt.limit, BOOT_GDT_LIMIT);
    assert.deepEqual([...mem.read(gdt, 16)], new Array(16).fill(0));
    assert.deepEqual(decode(mem.read(gdt + BOOT_CS, 8)), cacheFields(st.sregs.cs));
    assert.deepEqual(decode(mem.read(gdt + BOOT_DS, 8)), cacheFields(st.sregs.ds));
    assert.deepEqual(decode(mem.read(gdt + BOOT_TR, 16)), cacheFields(st.sregs.tr));
    // Known encodings: 32-bit code 0x00cf9b000000ffff, 64-bit code 0x00af9b000000ffff.
    assert.equal(
      mem.readU64(gdt + BOOT_CS),
      mode === "long" ? 0x00af9b000000ffffn : 0x00cf9b000000ffffn,
    );
    assert.equal(mem.readU64(gdt + BOOT_DS), 0x00cf93000000ffffn);
    // The TSS is zeroed and has no I/O bitmap.
    const tss = Number(st.sregs.tr.base);
    assert.equal(mem.readU32(tss), 0);
    assert.equal(mem.readU16(tss + 0x66), 0x68);
    assert.equal(mem.readU8(tss + 0x68), 0xcc, "nothing written past the TSS");
  });
}

Deno.test("encodeSegmentDescriptor rejects limits G cannot express", () => {
  const seg = protectedModeState(0).sregs.cs;
  assert.throws(() => encodeSegmentDescriptor({ ...seg, limit: 0xfffff000 }), /cannot be encoded/);
  assert.throws(() => encodeSegmentDescriptor({ ...seg, g: false }), /cannot be encoded/);
});

Deno.test("writeIdentityPageTables maps 4 GiB 1:1 with 2 MiB pages", () => {
  const mem = GuestMemory.anonymous(memoryLayout(16 * MiB).ram);
  writeIdentityPageTables(mem);
  const walk = (va: number): number => {
    const pml4e = mem.readU64(0x9000 + ((va / 2 ** 39) & 511) * 8);
    assert.equal(pml4e & 1n, 1n);
    const pdpt = Number(pml4e & 0xffffffffff000n);
    const pdpte = mem.readU64(pdpt + (Math.floor(va / 2 ** 30) & 511) * 8);
    assert.equal(pdpte & 0x81n, 1n, "PDPTE present, not a 1 GiB page");
    const pd = Number(pdpte & 0xffffffffff000n);
    const pde = mem.readU64(pd + (Math.floor(va / 2 ** 21) & 511) * 8);
    assert.equal(pde & 0x83n, 0x83n, "PDE present, writable, 2 MiB");
    return Number(pde & 0xfffffffe00000n) + (va % 2 ** 21);
  };
  for (
    const va of [0, 0x7000, 0x100000, 0x1234567, 0x40000000, 0xbfffffff, 0xfee00000, 0xffffffff]
  ) {
    assert.equal(walk(va), va);
  }
  assert.equal(mem.readU64(0x9008), 0n, "only the first PML4 slot is used");
  assert.equal(mem.readU64(0xa000 + 4 * 8), 0n, "only 4 GiB are mapped");
});
