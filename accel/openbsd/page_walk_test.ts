import assert from "node:assert/strict";
import { GuestMemory } from "../../core/guest_memory.ts";
import {
  fetchInstruction,
  type PagingMode,
  translate,
  type TranslateResult,
  X86_CR0_PG,
  X86_CR0_WP,
  X86_CR4_LA57,
  X86_CR4_PAE,
  X86_CR4_PSE,
  X86_EFER_LMA,
  X86_EFER_NXE,
} from "./page_walk.ts";

const P = 1n;
const RW = 2n;
const US = 4n;
const PS = 0x80n;
const NX = 1n << 63n;
const CR0_PE = 1n;
const MIB = 0x100000;

/** 4 MiB of RAM at 0, plus 64 KiB high up (to place frames above 4 GiB). */
function ram(): GuestMemory {
  return GuestMemory.anonymous([{ gpa: 0, size: 4 * MIB }, { gpa: 0x1_0000_0000, size: 0x10000 }]);
}

function gpaOf(r: TranslateResult): number {
  if ("fault" in r) assert.fail(`unexpected fault: ${r.fault}`);
  return r.gpa;
}

function faultOf(r: TranslateResult): string {
  assert.ok("fault" in r, `expected a fault, got gpa 0x${"gpa" in r ? r.gpa.toString(16) : ""}`);
  return r.fault;
}

const mode32 = (cr4 = 0n, cr0 = 0n): PagingMode => ({
  cr0: CR0_PE | X86_CR0_PG | cr0,
  cr3: 0x1000n,
  cr4,
  efer: 0n,
});

Deno.test("paging off: identity in real and protected mode, 32-bit wrap", () => {
  const mem = ram();
  const real: PagingMode = { cr0: 0n, cr3: 0x1234n, cr4: 0n, efer: 0n };
  assert.equal(gpaOf(translate(mem, real, 0xffff0n)), 0xffff0);
  const prot: PagingMode = { cr0: CR0_PE, cr3: 0n, cr4: X86_CR4_PAE, efer: 0n };
  assert.equal(gpaOf(translate(mem, prot, 0xfee00020n)), 0xfee00020);
  assert.equal(gpaOf(translate(mem, prot, 0x1_0000_0010n)), 0x10);
});

Deno.test("32-bit paging: 4 KiB pages, not-present PDE and PTE", () => {
  const mem = ram();
  mem.writeU32(0x1000 + 1 * 4, 0x2000 | 0x7); // PDE[1] -> PT at 0x2000
  mem.writeU32(0x2000 + 5 * 4, 0x9000 | 0x3); // PTE[5] -> frame 0x9000
  mem.writeU32(0x2000 + 6 * 4, 0x9000 | 0x2); // PTE[6] not present
  assert.equal(gpaOf(translate(mem, mode32(), 0x405abcn)), 0x9abc);
  assert.match(faultOf(translate(mem, mode32(), 0x406000n)), /page table entry .* not present/);
  assert.match(faultOf(translate(mem, mode32(), 0x800000n)), /page directory entry .* not present/);
  // The upper 32 bits of a linear address do not exist in 32-bit paging.
  assert.equal(gpaOf(translate(mem, mode32(), 0xffff_ffff_0040_5abcn)), 0x9abc);
});

Deno.test("32-bit paging: 4 MiB pages only with CR4.PSE, PSE-36 high bits", () => {
  const mem = ram();
  mem.writeU32(0x1000 + 2 * 4, 0x00c00000 | 0x83); // PDE[2]: 4 MiB page at 12 MiB
  // PSE-36: PDE bits 13..20 carry physical bits 32..39.
  mem.writeU32(0x1000 + 3 * 4, (0x00400000 | (0x5 << 13) | 0x83) >>> 0);
  assert.equal(gpaOf(translate(mem, mode32(X86_CR4_PSE), 0x812345n)), 0xc12345);
  assert.equal(gpaOf(translate(mem, mode32(X86_CR4_PSE), 0xc00010n)), 0x5_0040_0010);
  // Without PSE the PS bit is ignored: 0xc00000 is read as a page table, outside RAM.
  assert.match(faultOf(translate(mem, mode32(), 0x812345n)), /outside guest RAM/);
});

Deno.test("PAE paging: 4 KiB and 2 MiB pages, PDPT at a 32-byte aligned CR3, frames above 4 GiB", () => {
  const mem = ram();
  const mode: PagingMode = { cr0: CR0_PE | X86_CR0_PG, cr3: 0x3020n, cr4: X86_CR4_PAE, efer: 0n };
  mem.writeU64(0x3020 + 1 * 8, 0x4000n | P); // PDPTE[1] -> PD at 0x4000 (1 GiB..2 GiB)
  mem.writeU64(0x4000 + 0 * 8, 0x5000n | P | RW); // PDE[0] -> PT at 0x5000
  mem.writeU64(0x5000 + 3 * 8, 0x7000n | P); // PTE[3] -> 0x7000
  mem.writeU64(0x5000 + 4 * 8, 0x1_0000_2000n | P); // PTE[4] -> above 4 GiB
  mem.writeU64(0x4000 + 1 * 8, 0x00a00000n | P | PS); // PDE[1]: 2 MiB page at 10 MiB
  assert.equal(gpaOf(translate(mem, mode, 0x40003123n)), 0x7123);
  assert.equal(gpaOf(translate(mem, mode, 0x40004008n)), 0x1_0000_2008);
  assert.equal(gpaOf(translate(mem, mode, 0x40201234n)), 0xa01234);
  assert.match(
    faultOf(translate(mem, mode, 0x00001000n)),
    /page directory pointer entry .* not present/,
  );
  assert.match(faultOf(translate(mem, mode, 0x40400000n)), /page directory entry .* not present/);
  assert.match(faultOf(translate(mem, mode, 0x40005000n)), /page table entry .* not present/);
});

/** Long-mode tables: PML4 0x10000, PDPT 0x11000, PD 0x12000, PT 0x13000. */
function longModeTables(mem: GuestMemory): PagingMode {
  mem.writeU64(0x10000 + 0 * 8, 0x11000n | P | RW | US);
  mem.writeU64(0x11000 + 0 * 8, 0x12000n | P | RW | US);
  mem.writeU64(0x12000 + 0 * 8, 0x13000n | P | RW | US);
  mem.writeU64(0x13000 + 1 * 8, 0x20000n | P | RW | US); // 0x1000 -> 0x20000
  mem.writeU64(0x13000 + 2 * 8, 0x21000n | P | US); // read-only
  mem.writeU64(0x13000 + 3 * 8, 0x22000n | P | RW); // supervisor
  mem.writeU64(0x13000 + 4 * 8, 0x23000n | P | RW | US | NX);
  mem.writeU64(0x12000 + 1 * 8, 0x200000n | P | RW | PS); // 2 MiB page at 2 MiB
  mem.writeU64(0x11000 + 1 * 8, 0xc0000000n | P | RW | PS); // 1 GiB page at 3 GiB
  // Higher half: PML4[256] -> PDPT 0x14000, PDPT[0]: 1 GiB page at 0.
  mem.writeU64(0x10000 + 256 * 8, 0x14000n | P | RW);
  mem.writeU64(0x14000 + 0 * 8, 0n | P | RW | PS);
  return {
    cr0: CR0_PE | X86_CR0_PG,
    cr3: 0x10000n,
    cr4: X86_CR4_PAE,
    efer: X86_EFER_LMA | (1n << 8n),
  };
}

Deno.test("4-level paging: 4 KiB, 2 MiB and 1 GiB pages, higher half, canonical check", () => {
  const mem = ram();
  const mode = longModeTables(mem);
  assert.equal(gpaOf(translate(mem, mode, 0x1abcn)), 0x20abc);
  assert.equal(gpaOf(translate(mem, mode, 0x212345n)), 0x212345);
  assert.equal(gpaOf(translate(mem, mode, 0x40123456n)), 0xc0123456);
  assert.equal(gpaOf(translate(mem, mode, 0xffff_8000_0012_3456n)), 0x123456);
  assert.match(faultOf(translate(mem, mode, 0x0000_8000_0000_0000n)), /not canonical/);
  assert.match(faultOf(translate(mem, mode, 0x5000n)), /page table entry .* not present/);
  assert.match(faultOf(translate(mem, mode, 0x0000_0080_0000_0000n)), /PML4 entry .* not present/);
  assert.match(
    faultOf(translate(mem, mode, 0x8000_0000n)),
    /page directory pointer .* not present/,
  );
  const la57 = { ...mode, cr4: mode.cr4 | X86_CR4_LA57 };
  assert.match(faultOf(translate(mem, la57, 0x1000n)), /5-level/);
});

Deno.test("4-level paging: user, write and no-execute checks", () => {
  const mem = ram();
  const mode = longModeTables(mem);
  const wp = { ...mode, cr0: mode.cr0 | X86_CR0_WP };
  const nxe = { ...mode, efer: mode.efer | X86_EFER_NXE };
  assert.equal(gpaOf(translate(mem, mode, 0x1000n, { write: true, user: true })), 0x20000);
  assert.match(faultOf(translate(mem, mode, 0x2000n, { write: true, user: true })), /read-only/);
  // Supervisor writes ignore R/W unless CR0.WP.
  assert.equal(gpaOf(translate(mem, mode, 0x2000n, { write: true })), 0x21000);
  assert.match(faultOf(translate(mem, wp, 0x2000n, { write: true })), /read-only/);
  assert.match(faultOf(translate(mem, mode, 0x3000n, { user: true })), /supervisor/);
  assert.equal(gpaOf(translate(mem, mode, 0x3000n)), 0x22000);
  // The 2 MiB page's PDE lacks U/S even though the upper levels allow it.
  assert.match(faultOf(translate(mem, mode, 0x200000n, { user: true })), /supervisor/);
  // NX counts only with EFER.NXE, and only for fetches.
  assert.equal(gpaOf(translate(mem, mode, 0x4000n, { fetch: true })), 0x23000);
  assert.match(faultOf(translate(mem, nxe, 0x4000n, { fetch: true })), /no-execute/);
  assert.equal(gpaOf(translate(mem, nxe, 0x4000n)), 0x23000);
});

Deno.test("tables outside RAM are faults, never throws", () => {
  const mem = ram();
  const long: PagingMode = {
    cr0: CR0_PE | X86_CR0_PG,
    cr3: 0x8000_0000n,
    cr4: X86_CR4_PAE,
    efer: X86_EFER_LMA,
  };
  assert.match(faultOf(translate(mem, long, 0x1000n)), /PML4 entry at 0x80000000 is outside/);
  // A CR3 with bits beyond 4 GiB that are not RAM.
  assert.match(faultOf(translate(mem, { ...long, cr3: 0x000f_ffff_ffff_f000n }, 0n)), /outside/);
  // An upper level pointing past the end of RAM.
  mem.writeU64(0x10000, 0x7fff_f000n | P);
  assert.match(
    faultOf(translate(mem, { ...long, cr3: 0x10000n }, 0x1000n)),
    /page directory pointer entry at 0x7ffff000 is outside guest RAM/,
  );
  assert.match(faultOf(translate(mem, { ...mode32(), cr3: 0x7000_0000n }, 0x1000n)), /outside/);
  const pae = { cr0: CR0_PE | X86_CR0_PG, cr3: 0xffff_ffe0n, cr4: X86_CR4_PAE, efer: 0n };
  assert.match(faultOf(translate(mem, pae, 0x1000n)), /outside/);
});

Deno.test("fetchInstruction: identity fetch in real mode and 32-bit linear wrap", () => {
  const mem = ram();
  mem.write(0xffff0, new Uint8Array([0xea, 0x5b, 0xe0, 0x00, 0xf0]));
  const real: PagingMode = { cr0: 0n, cr3: 0n, cr4: 0n, efer: 0n };
  const r = fetchInstruction(mem, real, 0xf0000n, 0xfff0n, 5);
  assert.ok("bytes" in r && r.fault === undefined);
  assert.deepEqual([...r.bytes], [0xea, 0x5b, 0xe0, 0x00, 0xf0]);
  mem.write(0x100, new Uint8Array([0x8b, 0x03]));
  const wrapped = fetchInstruction(mem, { ...real, cr0: CR0_PE }, 0xffff_ff00n, 0x200n, 2);
  assert.ok("bytes" in wrapped);
  assert.deepEqual([...wrapped.bytes], [0x8b, 0x03]);
});

Deno.test("fetchInstruction: an instruction across a page boundary reads both frames", () => {
  const mem = ram();
  const mode = longModeTables(mem);
  // Linear 0x1000 -> 0x20000 and 0x2000 -> 0x21000 are adjacent linear pages;
  // remap 0x2000 to a distant frame to prove each page is translated.
  mem.writeU64(0x13000 + 2 * 8, 0x30000n | P | RW);
  const insn = [0x48, 0xc7, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff];
  mem.write(0x20ffd, new Uint8Array(insn.slice(0, 3)));
  mem.write(0x30000, new Uint8Array(insn.slice(3)));
  mem.write(0x21000, new Uint8Array(12).fill(0xcc)); // what a contiguous read would see
  const r = fetchInstruction(mem, mode, 0n, 0x1ffdn);
  assert.ok("bytes" in r && r.fault === undefined);
  assert.equal(r.bytes.length, 15);
  assert.deepEqual([...r.bytes.subarray(0, 12)], insn);
});

Deno.test("fetchInstruction: a fault on the second page returns the bytes before it", () => {
  const mem = ram();
  const mode = longModeTables(mem);
  // Linear 0x4000 maps to 0x23000; 0x5000 has no PTE.
  mem.write(0x23ffe, new Uint8Array([0x8b, 0x03]));
  const partial = fetchInstruction(mem, mode, 0n, 0x4ffen);
  assert.ok("bytes" in partial);
  assert.deepEqual([...partial.bytes], [0x8b, 0x03]);
  assert.match(partial.fault ?? "", /linear 0x5000: page table entry .* not present/);
  // Nothing fetchable: the first page is missing.
  const none = fetchInstruction(mem, mode, 0n, 0x5000n);
  assert.ok(!("bytes" in none));
  assert.match(none.fault, /linear 0x5000/);
});

Deno.test("fetchInstruction: a frame that ends RAM stops the fetch at the RAM boundary", () => {
  const mem = ram();
  const mode = longModeTables(mem);
  // Page 0x6000 -> the last frame of the high region; page 0x7000 -> just past it.
  mem.writeU64(0x13000 + 6 * 8, 0x1_0000_f000n | P);
  mem.writeU64(0x13000 + 7 * 8, 0x1_0001_0000n | P);
  mem.write(0x1_0000_fffd, new Uint8Array([0x0f, 0xb6, 0x06]));
  const r = fetchInstruction(mem, mode, 0n, 0x6ffdn);
  assert.ok("bytes" in r);
  assert.deepEqual([...r.bytes], [0x0f, 0xb6, 0x06]);
  assert.match(r.fault ?? "", /guest-physical 0x100010000 is outside guest RAM/);
});
