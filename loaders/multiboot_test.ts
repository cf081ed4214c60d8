import assert from "node:assert/strict";
import { GuestMemory } from "../core/guest_memory.ts";
import { type E820Entry, memoryLayout, MiB } from "../core/layout.ts";
import { LoaderError, type LoadOptions } from "./common.ts";
import { findMultibootHeader, loadMultiboot } from "./multiboot.ts";
import { buildWithNasm, HAVE_LD, HAVE_NASM, skipNote } from "./test_helpers.ts";

if (!HAVE_NASM) skipNote("nasm", "the Multiboot tests that assemble kernels");
if (!HAVE_LD) skipNote("ld", "the Multiboot ELF tests");

const MEMORY = 32 * MiB;

function setup(extra: Partial<LoadOptions> = {}): LoadOptions & { e820: E820Entry[] } {
  const { ram, e820 } = memoryLayout(MEMORY);
  const memory = GuestMemory.anonymous(ram);
  // Poison RAM so zeroed bss and untouched bytes can be told apart.
  for (const r of memory.regions) r.bytes.fill(0xcc);
  return { memory, e820, cmdline: "console=ttyS0 hello=world", ...extra };
}

/** a.out-kludge kernel: 0x40 bytes of padding, the header, code, marker, trailer. */
const AOUT_SOURCE = `
bits 32
%ifndef LOAD_END_ZERO
%define LOAD_END_ZERO 0
%endif
org 0x100000
load_start:
  times 0x40 db 0x90
header:
  dd 0x1BADB002
  dd FLAGS
  dd -(0x1BADB002 + FLAGS)
  dd header
  dd load_start
%if LOAD_END_ZERO
  dd 0
  dd 0
%else
  dd load_end
  dd bss_end
%endif
  dd entry
%if FLAGS & 4
  dd 0, 1024, 768, 32
%endif
  align 16
entry:
  mov dx, 0x3f8
  mov al, 'A'
  out dx, al
  hlt
  jmp entry
marker: db "MB-AOUT-DATA"
  align 4
load_end:
trailer: db "TRAILER-NOT-LOADED"
bss_end equ load_end + 0x3000
`;

function aout(flags: number, loadEndZero = false): Uint8Array {
  return buildWithNasm(AOUT_SOURCE, "bin", {
    defines: { FLAGS: flags, LOAD_END_ZERO: loadEndZero ? 1 : 0 },
  });
}

function indexOf(hay: Uint8Array, needle: string): number {
  const n = new TextEncoder().encode(needle);
  outer: for (let i = 0; i + n.length <= hay.length; i++) {
    for (let j = 0; j < n.length; j++) if (hay[i + j] !== n[j]) continue outer;
    return i;
  }
  return -1;
}

function assertMbi(opts: LoadOptions & { e820: E820Entry[] }, initrd?: Uint8Array) {
  const mem = opts.memory;
  const mbi = 0x6000;
  assert.equal(mem.readU32(mbi), 0x24d, "flags: mem, cmdline, mods, mmap, loader name");
  assert.equal(mem.readU32(mbi + 4), 639, "mem_lower KiB");
  assert.equal(mem.readU32(mbi + 8), (MEMORY - MiB) / 1024, "mem_upper KiB");
  assert.equal(mem.readCString(mem.readU32(mbi + 16), 4096), opts.cmdline);
  assert.equal(mem.readCString(mem.readU32(mbi + 64), 64), "vmmctl");
  // mmap: size-prefixed entries, one per e820 entry.
  const mmapLength = mem.readU32(mbi + 44);
  const mmapAddr = mem.readU32(mbi + 48);
  assert.equal(mmapLength, opts.e820.length * 24);
  for (let at = mmapAddr, i = 0; at < mmapAddr + mmapLength; at += mem.readU32(at) + 4, i++) {
    assert.equal(mem.readU32(at), 20);
    assert.equal(mem.readU64(at + 4), BigInt(opts.e820[i].gpa));
    assert.equal(mem.readU64(at + 12), BigInt(opts.e820[i].size));
    assert.equal(mem.readU32(at + 20), opts.e820[i].type);
  }
  assert.deepEqual(
    [...mem.read(mmapAddr, 24)],
    [20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfc, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0],
    "first mmap entry byte by byte: [0, 0x9fc00) RAM",
  );
  const count = mem.readU32(mbi + 20);
  if (!initrd) {
    assert.equal(count, 0);
    return undefined;
  }
  assert.equal(count, 1);
  const mod = mem.readU32(mbi + 24);
  const start = mem.readU32(mod);
  const end = mem.readU32(mod + 4);
  assert.equal(start % 4096, 0, "module page aligned");
  assert.equal(end - start, initrd.length);
  assert.deepEqual(mem.read(start, initrd.length), initrd);
  assert.equal(mem.readCString(mem.readU32(mod + 8), 256), opts.initrdName ?? "initrd");
  assert.equal(mem.readU32(mod + 12), 0, "reserved");
  return start;
}

Deno.test({
  name: "Multiboot a.out kludge: image, bss, MBI, module and entry state",
  ignore: !HAVE_NASM,
  fn() {
    const file = aout(0x00010003);
    const initrd = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
    const opts = setup({ initrd, initrdName: "initrd.img root=x" });
    const r = loadMultiboot(file, opts);
    const mem = opts.memory;
    assert.equal(r.format, "multiboot");
    assert.equal(r.entry, 0x100060);
    const loadEnd = indexOf(file, "TRAILER-NOT-LOADED");
    assert.ok(loadEnd > 0);
    assert.deepEqual(mem.read(0x100000, loadEnd), file.subarray(0, loadEnd));
    // bss: zeroed from load_end to bss_end, nothing past it.
    assert.ok(mem.read(0x100000 + loadEnd, 0x3000).every((b) => b === 0));
    assert.equal(mem.readU8(0x100000 + loadEnd + 0x3000), 0xcc);
    const modStart = assertMbi(opts, initrd);
    assert.equal(modStart, Math.ceil((0x100000 + loadEnd + 0x3000) / 4096) * 4096);
    const s = r.state;
    assert.equal(s.regs.rax, 0x2badb002n);
    assert.equal(s.regs.rbx, 0x6000n);
    assert.equal(s.regs.rip, 0x100060n);
    assert.equal(s.regs.rflags & (1n << 9n), 0n, "IF clear");
    assert.equal(s.sregs.cr0 & 1n, 1n, "PE");
    assert.equal(s.sregs.cr0 >> 31n, 0n, "paging off");
    assert.equal(s.sregs.cs.db, true);
    assert.equal(s.sregs.cs.limit, 0xffffffff);
    assert.equal(s.sregs.ds.base, 0n);
    assert.equal(s.sregs.ss.limit, 0xffffffff);
    // The GDT the selectors point at was written.
    assert.equal(mem.readU64(0x500 + 0x10), 0x00cf9b000000ffffn);
    assert.match(r.summary, /a\.out kludge/);
    assert.ok(r.used.some((u) => u.what === "module" && u.gpa === modStart));
  },
});

Deno.test({
  name: "Multiboot a.out kludge: load_end_addr 0 loads to end of file, bss_end_addr 0 = no bss",
  ignore: !HAVE_NASM,
  fn() {
    const file = aout(0x00010003, true);
    const opts = setup();
    const r = loadMultiboot(file, opts);
    assert.deepEqual(opts.memory.read(0x100000, file.length), file);
    assert.equal(opts.memory.readU8(0x100000 + file.length), 0xcc, "no bss");
    assert.equal(r.entry, 0x100060);
    assertMbi(opts);
    assert.equal(opts.memory.readU32(0x6000 + 20), 0, "no module");
  },
});

Deno.test({
  name: "Multiboot video flag is ignored with a warning; unknown required flags are refused",
  ignore: !HAVE_NASM,
  fn() {
    const r = loadMultiboot(aout(0x00010007), setup());
    assert.match(r.summary, /warning: video mode request \(mode 0, 1024x768x32\) ignored/);
    assert.throws(
      () => loadMultiboot(aout(0x00010003 | 0x10), setup()),
      (e) => e instanceof LoaderError && /requires features .*flags 0x10/.test(e.message),
    );
  },
});

Deno.test({
  name: "Multiboot a.out kludge: bad address fields are refused",
  ignore: !HAVE_NASM,
  fn() {
    const file = aout(0x00010003);
    const h = findMultibootHeader(file)!;
    assert.equal(h.offset, 0x40);
    const patch = (field: number, value: number) => {
      const copy = file.slice();
      new DataView(copy.buffer).setUint32(h.offset + field, value, true);
      return copy;
    };
    assert.throws(
      () => loadMultiboot(patch(28, 0x200000), setup()),
      /entry_addr 0x200000 is outside/,
    );
    assert.throws(() => loadMultiboot(patch(20, 0x180000), setup()), /past the end of the file/);
    assert.throws(
      () => loadMultiboot(patch(16, 0x0f0000), setup()),
      /before the start of the file/,
    );
    assert.throws(() => loadMultiboot(patch(24, 0x100010), setup()), /bss_end_addr .* is below/);
    // Moving the whole image onto the Multiboot info area must not silently overwrite it.
    const low = file.slice();
    const v = new DataView(low.buffer);
    for (const [field, value] of [[12, 0x6040], [16, 0x6000], [20, 0], [24, 0], [28, 0x6060]]) {
      v.setUint32(h.offset + field, value, true);
    }
    assert.throws(
      () => loadMultiboot(low, setup()),
      /kernel at 0x6000 .* overlaps the Multiboot info/,
    );
    // A module that does not fit in RAM.
    assert.throws(
      () => loadMultiboot(file, setup({ initrd: new Uint8Array(MEMORY) })),
      /module at 0x[0-9a-f]+ of 0x2000000 bytes does not fit in guest RAM \(32M\)/,
    );
  },
});

const ELF_SOURCE = `
section .multiboot
align 4
  dd 0x1BADB002
  dd 0x00000003
  dd -(0x1BADB002 + 3)
section .text align=4
bits 32
global _start
_start:
  mov esp, stack_top
  mov dword [counter], 1
  hlt
section .data
marker: db "MB-ELF-DATA"
section .bss
counter: resd 1
  resb 0x2000
stack_top:
`;

const LOW_SCRIPT = `
ENTRY(_start)
PHDRS { text PT_LOAD; data PT_LOAD; }
SECTIONS {
  . = 0x100000;
  .text : { *(.multiboot) *(.text) } :text
  . = ALIGN(0x1000);
  .data : { *(.data) } :data
  .bss : { *(.bss) } :data
}
`;

const HIGH_HALF_SCRIPT = `
ENTRY(_start)
PHDRS { text PT_LOAD; data PT_LOAD; }
SECTIONS {
  . = 0xC0100000;
  .text : AT(0x100000) { *(.multiboot) *(.text) } :text
  . = ALIGN(0x1000);
  .data : AT(ADDR(.data) - 0xC0000000) { *(.data) } :data
  .bss : AT(ADDR(.bss) - 0xC0000000) { *(.bss) } :data
}
`;

function checkElfKernel(file: Uint8Array, kind: string) {
  const initrd = new TextEncoder().encode("module-bytes");
  const opts = setup({ initrd });
  const r = loadMultiboot(file, opts);
  const mem = opts.memory;
  assert.equal(r.entry, 0x10000c, "entry just after the 12-byte header, physical");
  assert.equal(r.state.regs.rip, 0x10000cn);
  assert.equal(r.state.regs.rax, 0x2badb002n);
  assert.equal(r.state.sregs.cs.l, false);
  const headerAt = findMultibootHeader(file)!.offset;
  assert.deepEqual(mem.read(0x100000, 12), file.subarray(headerAt, headerAt + 12));
  const marker = new TextEncoder().encode("MB-ELF-DATA");
  assert.deepEqual(mem.read(0x101000, marker.length), marker, ".data at its physical address");
  // .bss (counter + 0x2000) right after .data, zeroed; poison beyond.
  assert.ok(mem.read(0x10100c, 0x2004).every((b) => b === 0));
  assert.equal(mem.readU8(0x10100c + 0x2004), 0xcc);
  const modStart = assertMbi(opts, initrd);
  assert.equal(modStart, 0x104000, "module page aligned after the bss");
  assert.match(r.summary, new RegExp(kind));
}

Deno.test({
  name: "Multiboot ELF32 kernel (nasm + ld): segments at p_paddr, bss zeroed",
  ignore: !HAVE_NASM || !HAVE_LD,
  fn() {
    checkElfKernel(buildWithNasm(ELF_SOURCE, "elf32", { linkerScript: LOW_SCRIPT }), "ELF32");
  },
});

Deno.test({
  name: "Multiboot ELF32 higher-half kernel: virtual entry translated to physical",
  ignore: !HAVE_NASM || !HAVE_LD,
  fn() {
    const file = buildWithNasm(ELF_SOURCE, "elf32", { linkerScript: HIGH_HALF_SCRIPT });
    assert.equal(new DataView(file.buffer).getUint32(24, true), 0xc010000c, "e_entry is virtual");
    checkElfKernel(file, "ELF32");
  },
});

Deno.test({
  name: "Multiboot ELF64 kernel with a 32-bit entry",
  ignore: !HAVE_NASM || !HAVE_LD,
  fn() {
    checkElfKernel(buildWithNasm(ELF_SOURCE, "elf64", { linkerScript: LOW_SCRIPT }), "ELF64");
  },
});

Deno.test("Multiboot header search: alignment, checksum, 8192-byte window", () => {
  const at = (offset: number, flags = 3, checksumDelta = 0, length = 8192) => {
    const f = new Uint8Array(length);
    const v = new DataView(f.buffer);
    v.setUint32(offset, 0x1badb002, true);
    v.setUint32(offset + 4, flags, true);
    v.setUint32(offset + 8, (-(0x1badb002 + flags) + checksumDelta) >>> 0, true);
    return f;
  };
  assert.equal(findMultibootHeader(at(0))?.offset, 0);
  assert.equal(findMultibootHeader(at(8180))?.offset, 8180, "last place it fits");
  assert.equal(findMultibootHeader(at(8184, 3, 0, 9000)), undefined, "crosses 8192");
  assert.equal(findMultibootHeader(at(0x102)), undefined, "not 4-byte aligned");
  assert.equal(findMultibootHeader(at(0x100, 3, 1)), undefined, "bad checksum");
  const h = findMultibootHeader(at(0x20, 0x10004, 0, 0x100));
  assert.equal(h?.flags, 0x10004);
  assert.ok(h?.address && h.video, "address and video fields read");
  assert.throws(() => loadMultiboot(at(0x20), setup()), /not ELF and its header has no address/);
});
