import assert from "node:assert/strict";
import { GuestMemory } from "../core/guest_memory.ts";
import { type E820Entry, memoryLayout, MiB } from "../core/layout.ts";
import { LoaderError, type LoadOptions } from "./common.ts";
import { elfNotes, loadElf, loadElfSegments, parseElf, pvhEntry } from "./elf.ts";
import { loadKernel } from "./detect.ts";
import {
  buildWithNasm,
  HAVE_LD,
  HAVE_NASM,
  le32,
  le64,
  skipNote,
  writeElf,
} from "./test_helpers.ts";

if (!HAVE_NASM || !HAVE_LD) skipNote("nasm or ld", "the PVH test that builds a kernel");

const MEMORY = 64 * MiB;

function setup(extra: Partial<LoadOptions> = {}): LoadOptions & { e820: E820Entry[] } {
  const { ram, e820 } = memoryLayout(MEMORY);
  const memory = GuestMemory.anonymous(ram);
  for (const r of memory.regions) r.bytes.fill(0xcc);
  return { memory, e820, cmdline: "console=ttyS0 root=/dev/vda", ...extra };
}

const PVH_SOURCE = `
section .note.Xen note alloc noexec nowrite align=4
  dd 4, 4, 18
  db "Xen", 0
  dd pvh_start
section .text align=16
bits 32
pvh_start:
  mov esp, stack_top
  hlt
bits 64
global start64
start64:
  hlt
section .data
marker: db "PVH-DATA"
section .bss
  resb 0x1000
stack_top:
`;

const PVH_SCRIPT = `
ENTRY(start64)
PHDRS { text PT_LOAD; data PT_LOAD; note PT_NOTE; }
SECTIONS {
  . = 0x1000000;
  .text : { *(.text) } :text
  .note.Xen : { *(.note.Xen) } :text :note
  . = ALIGN(0x1000);
  .data : { *(.data) } :data
  .bss : { *(.bss) } :data
}
`;

Deno.test({
  name: "PVH ELF64 (nasm + ld): hvm_start_info, memmap, module, 32-bit entry",
  ignore: !HAVE_NASM || !HAVE_LD,
  fn() {
    const file = buildWithNasm(PVH_SOURCE, "elf64", { linkerScript: PVH_SCRIPT });
    assert.equal(pvhEntry(file), 0x1000000);
    const initrd = new Uint8Array(3 * 4096 + 5).map((_, i) => i & 0xff);
    const opts = setup({ initrd, initrdName: "rootfs.cpio" });
    const r = loadElf(file, opts);
    const mem = opts.memory;
    assert.equal(r.format, "pvh");
    assert.equal(r.entry, 0x1000000);
    const s = r.state;
    assert.equal(s.regs.rip, 0x1000000n);
    assert.equal(s.regs.rbx, 0x5000n);
    assert.equal(s.sregs.cr0, 0x11n, "PE|ET, paging off");
    assert.equal(s.sregs.cr4, 0n);
    assert.equal(s.sregs.efer, 0n);
    assert.equal(s.sregs.cs.db, true);
    assert.equal(s.sregs.tr.type, 11);
    assert.equal(s.sregs.tr.limit, 0x67);
    assert.equal(s.regs.rflags & 0x20300n, 0n, "VM, IF, TF clear");
    // The code and data segments.
    assert.equal(mem.readU8(0x1000000), 0xbc, "mov esp, imm32");
    assert.deepEqual(mem.read(0x1001000, 8), new TextEncoder().encode("PVH-DATA"));
    assert.ok(mem.read(0x1001008, 0x1000).every((b) => b === 0), "bss zeroed");
    // hvm_start_info, field by field.
    const si = 0x5000;
    assert.equal(mem.readU32(si), 0x336ec578);
    assert.equal(mem.readU32(si + 4), 1);
    assert.equal(mem.readU32(si + 8), 0);
    assert.equal(mem.readU32(si + 12), 1, "nr_modules");
    assert.equal(mem.readCString(Number(mem.readU64(si + 24)), 4096), opts.cmdline);
    assert.equal(mem.readU64(si + 32), 0n, "rsdp");
    assert.equal(mem.readU32(si + 48), opts.e820.length);
    assert.equal(mem.readU32(si + 52), 0);
    const memmap = Number(mem.readU64(si + 40));
    opts.e820.forEach((e, i) => {
      const at = memmap + i * 24;
      assert.equal(mem.readU64(at), BigInt(e.gpa));
      assert.equal(mem.readU64(at + 8), BigInt(e.size));
      assert.equal(mem.readU32(at + 16), e.type);
      assert.equal(mem.readU32(at + 20), 0);
    });
    assert.deepEqual(
      [...mem.read(memmap + 3 * 24, 24)],
      [0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0xf0, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
      "[1 MiB, 64 MiB) RAM, byte by byte",
    );
    const mod = Number(mem.readU64(si + 16));
    const modGpa = Number(mem.readU64(mod));
    assert.equal(mem.readU64(mod + 8), BigInt(initrd.length));
    assert.equal(mem.readCString(Number(mem.readU64(mod + 16)), 64), "rootfs.cpio");
    assert.equal(mem.readU64(mod + 24), 0n);
    assert.equal(modGpa % 4096, 0);
    assert.ok(
      modGpa + initrd.length <= MEMORY && modGpa + initrd.length > MEMORY - 4096,
      "as high as possible",
    );
    assert.deepEqual(mem.read(modGpa, initrd.length), initrd);
    assert.match(r.summary, /^PVH ELF64, 32-bit entry at 0x1000000/);
  },
});

/** A vmlinux look-alike: text at virtual 0xffffffff81000000 / physical 16 MiB, a percpu-like segment at virtual 0. */
function fakeVmlinux(entry = 0x1000000n): Uint8Array {
  const text = new Uint8Array(0x3000).map((_, i) => (i * 13 + 1) & 0xff);
  const percpu = new TextEncoder().encode("PERCPU-SEGMENT");
  return writeElf({
    elfClass: 64,
    entry,
    segments: [
      { vaddr: 0xffffffff81000000n, paddr: 0x1000000n, data: text, memSize: 0x5000 },
      { vaddr: 0n, paddr: 0x1005000n, data: percpu, memSize: 0x1000 },
    ],
    notes: [{ name: "GNU", type: 3, desc: new Uint8Array(20).fill(0xab) }],
  });
}

Deno.test("ELF64 vmlinux: 64-bit Linux boot protocol with zero page and page tables", () => {
  const file = fakeVmlinux();
  assert.equal(pvhEntry(file), undefined);
  assert.equal(elfNotes(file)[0].name, "GNU");
  const initrd = new Uint8Array(0x10000).fill(0x5a);
  const opts = setup({ initrd });
  const r = loadElf(file, opts);
  const mem = opts.memory;
  assert.equal(r.format, "elf64");
  assert.equal(r.entry, 0x1000000);
  const s = r.state;
  assert.equal(s.regs.rip, 0x1000000n);
  assert.equal(s.regs.rsi, 0x7000n);
  assert.equal(s.sregs.cr0, 0x80000011n);
  assert.equal(s.sregs.cr4, 0x20n);
  assert.equal(s.sregs.efer, 0x500n);
  assert.equal(s.sregs.cr3, 0x9000n);
  assert.equal(s.sregs.cs.l, true);
  assert.equal(mem.readU64(0x9000), 0xa003n, "PML4[0] -> PDPT");
  assert.equal(mem.readU64(0xb000 + 8 * 8), 0x1000083n, "PD maps 16 MiB");
  assert.equal(mem.readU64(0x500 + 0x10), 0x00af9b000000ffffn, "64-bit code in the GDT");
  // Segments at p_paddr with bss zeroed.
  const text = new Uint8Array(0x3000).map((_, i) => (i * 13 + 1) & 0xff);
  assert.deepEqual(mem.read(0x1000000, 0x3000), text);
  assert.ok(mem.read(0x1003000, 0x2000).every((b) => b === 0));
  assert.deepEqual(mem.read(0x1005000, 14), new TextEncoder().encode("PERCPU-SEGMENT"));
  assert.equal(mem.readU8(0x1006000), 0xcc);
  // Zero page.
  const zp = 0x7000;
  assert.equal(mem.readU16(zp + 0x1fe), 0xaa55);
  assert.equal(mem.readU32(zp + 0x202), 0x53726448);
  assert.equal(mem.readU8(zp + 0x210), 0xff, "type_of_loader");
  assert.equal(mem.readU8(zp + 0x211), 0x81, "LOADED_HIGH | CAN_USE_HEAP");
  assert.equal(mem.readU32(zp + 0x228), 0x20000);
  assert.equal(mem.readCString(0x20000, 4096), opts.cmdline);
  assert.equal(mem.readU8(0x20000 + opts.cmdline.length), 0);
  const ramdisk = mem.readU32(zp + 0x218);
  assert.equal(mem.readU32(zp + 0x21c), initrd.length);
  assert.equal(ramdisk, MEMORY - initrd.length, "initrd at the top of RAM");
  assert.deepEqual(mem.read(ramdisk, initrd.length), initrd);
  assert.equal(mem.readU8(zp + 0x1e8), 4);
  assert.deepEqual(
    [...mem.read(zp + 0x2d0, 40)],
    [
      ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfc, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0],
      ...[0, 0xfc, 9, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0],
    ],
  );
  assert.equal(mem.readU64(zp + 0x2d0 + 3 * 20 + 8), BigInt(MEMORY - MiB));
  assert.equal(mem.readU8(zp + 0x1ef), 0, "sentinel");
  // The ranges the loader used do not overlap and include the fixed areas.
  const names = r.used.map((u) => u.what);
  for (const n of ["boot GDT", "zero page", "page tables", "command line", "segment", "initrd"]) {
    assert.ok(names.includes(n), n);
  }
});

Deno.test("ELF64 virtual e_entry is translated through its segment", () => {
  const r = loadElf(fakeVmlinux(0xffffffff81000040n), setup());
  assert.equal(r.entry, 0x1000040);
  assert.throws(
    () => loadElf(fakeVmlinux(0xffffffff90000000n), setup()),
    /entry point .* not inside/,
  );
});

Deno.test("ELF32 needs Multiboot or PVH; with a PVH note it loads", () => {
  const seg = { vaddr: 0x200000n, paddr: 0x200000n, data: new Uint8Array(64).fill(0xf4) };
  const plain = writeElf({ elfClass: 32, entry: 0x200000n, segments: [seg] });
  assert.throws(
    () => loadElf(plain, setup()),
    (e) =>
      e instanceof LoaderError &&
      /32-bit ELF kernel without a Multiboot header or PVH note/.test(e.message),
  );
  const pvh = writeElf({
    elfClass: 32,
    entry: 0x200000n,
    segments: [seg],
    notes: [{ name: "Xen", type: 18, desc: le32(0x200010) }],
  });
  const r = loadElf(pvh, setup());
  assert.equal(r.format, "pvh");
  assert.equal(r.entry, 0x200010);
  // A 64-bit note value is accepted too (Linux uses .quad), a 2-byte one is not.
  const pvh64 = writeElf({
    elfClass: 64,
    entry: 0x200000n,
    segments: [seg],
    notes: [{ name: "Xen", type: 18, desc: le64(0x200020n) }],
  });
  assert.equal(pvhEntry(pvh64), 0x200020);
  const bad = writeElf({
    elfClass: 64,
    entry: 0x200000n,
    segments: [seg],
    notes: [{ name: "Xen", type: 18, desc: new Uint8Array(2) }],
  });
  assert.throws(() => pvhEntry(bad), /2-byte value/);
  const outside = writeElf({
    elfClass: 64,
    entry: 0x200000n,
    segments: [seg],
    notes: [{ name: "Xen", type: 18, desc: le32(0x300000) }],
  });
  assert.throws(() => loadElf(outside, setup()), /PVH entry point 0x300000 is not inside/);
});

Deno.test("malformed or misplaced ELF images give clear errors", () => {
  const seg = { vaddr: 0x200000n, paddr: 0x200000n, data: new Uint8Array(64) };
  const good = writeElf({ elfClass: 64, entry: 0x200000n, segments: [seg] });
  assert.equal(parseElf(good).programHeaders.length, 1);
  assert.throws(() => parseElf(good.subarray(0, 100)), /program header table .* runs past the end/);
  const shortFile = good.subarray(0, good.length - 10);
  assert.throws(() => loadElf(shortFile, setup()), /ELF segment at 0x200000 .* runs past the end/);
  const arm = writeElf({ elfClass: 64, entry: 0x200000n, segments: [seg], machine: 183 });
  assert.throws(() => parseElf(arm), /ELF machine "183" is not x86/);
  const bigFile = good.slice();
  new DataView(bigFile.buffer).setBigUint64(64 + 40, 8n, true); // memsz < filesz
  assert.throws(() => loadElf(bigFile, setup()), /file size 0x40 larger than its memory size 0x8/);
  const beyond = writeElf({
    elfClass: 64,
    entry: 0x4000000n,
    segments: [{ vaddr: 0x4000000n, paddr: 0x3fff000n, data: new Uint8Array(0x2000) }],
  });
  assert.throws(
    () => loadElf(beyond, setup()),
    /segment at 0x3fff000 of 0x2000 bytes does not fit in guest RAM \(64M\)/,
  );
  const onZeroPage = writeElf({
    elfClass: 64,
    entry: 0x7000n,
    segments: [{ vaddr: 0x7000n, paddr: 0x7000n, data: new Uint8Array(16) }],
  });
  assert.throws(() => loadElf(onZeroPage, setup()), /segment at 0x7000 .* overlaps the zero page/);
  const noLoad = writeElf({ elfClass: 64, entry: 0n, segments: [] });
  assert.throws(() => loadElf(noLoad, setup()), /no loadable segment/);
  assert.throws(
    () => loadElf(fakeVmlinux(), setup({ initrd: new Uint8Array(MEMORY) })),
    /initrd of 64M does not fit/,
  );
});

Deno.test("loadElfSegments reports entry and extent for a later OpenBSD loader", () => {
  const mem = GuestMemory.anonymous(memoryLayout(MEMORY).ram);
  const r = loadElfSegments(mem, fakeVmlinux());
  assert.equal(r.entry, 0x1000000);
  assert.equal(r.lowest, 0x1000000);
  assert.equal(r.highest, 0x1006000);
  assert.deepEqual(r.segments.map((s) => s.gpa), [0x1000000, 0x1005000]);
  assert.equal(r.elf.elfClass, 64);
});

Deno.test("ELF: relocatable objects and core dumps are refused by every ELF loader", () => {
  for (
    const [type, what] of [[1, "ET_REL"], [4, "ET_CORE"], [0, "ET_NONE"], [
      0xfe00,
      "unknown",
    ]] as const
  ) {
    const image = fakeVmlinux();
    new DataView(image.buffer).setUint16(16, type, true);
    assert.throws(
      () => loadKernel(image, { ...setup(), name: "obj.o" }),
      (e) =>
        e instanceof LoaderError &&
        e.message.startsWith(`kernel "obj.o": ELF type ${type} (${what}`) &&
        e.message.endsWith("is not an executable (ET_EXEC or ET_DYN)"),
      `type ${type}`,
    );
  }
  const pie = fakeVmlinux();
  new DataView(pie.buffer).setUint16(16, 3, true);
  assert.equal(loadKernel(pie, setup()).format, "elf64");
});
