import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { GuestMemory } from "../core/guest_memory.ts";
import { E820_RAM, memoryLayout } from "../core/layout.ts";
import { detectKernelFormat, LoaderError, loadKernel } from "./detect.ts";
import {
  isOpenbsdKernel,
  loadOpenbsd,
  makeBootdev,
  OPENBSD_BOOTDEV,
  openbsdMemoryMap,
  PT_OPENBSD_RANDOMIZE,
} from "./openbsd.ts";
import { HAVE_LD, HAVE_NASM, skipNote, writeElf } from "./test_helpers.ts";
import { buildFakeBsd } from "./openbsd_test_kernel.ts";

const MiB = 1024 * 1024;

let cached: Uint8Array | undefined;
function bsd(): Uint8Array {
  cached ??= buildFakeBsd();
  return cached;
}

function setup(memoryBytes = 64 * MiB) {
  const { ram, e820 } = memoryLayout(memoryBytes);
  return { memory: GuestMemory.anonymous(ram), e820, cmdline: "" };
}

interface Shdr {
  name: string;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
}

/** Section headers of an ELF64 file (test-side parser). */
function shdrs(file: Uint8Array, shoff: number, count: number, strings: Uint8Array): Shdr[] {
  const v = new DataView(file.buffer, file.byteOffset);
  return Array.from({ length: count }, (_, i) => {
    const at = shoff + i * 64;
    const nameAt = v.getUint32(at, true);
    const end = strings.indexOf(0, nameAt);
    return {
      name: new TextDecoder().decode(strings.subarray(nameAt, end)),
      type: v.getUint32(at + 4, true),
      flags: v.getBigUint64(at + 8, true),
      offset: Number(v.getBigUint64(at + 24, true)),
      size: Number(v.getBigUint64(at + 32, true)),
    };
  });
}

const skip = !HAVE_NASM || !HAVE_LD;
if (skip) skipNote("nasm/ld", "the OpenBSD loader tests with a linked fake bsd");

Deno.test({
  name: "openbsd: detection by the OpenBSD note, gzipped or not; others are not OpenBSD",
  ignore: skip,
  fn() {
    const file = bsd();
    assert.equal(detectKernelFormat(file), "openbsd");
    assert.equal(detectKernelFormat(new Uint8Array(gzipSync(file))), "openbsd");
    const plain = writeElf({
      elfClass: 64,
      entry: 0x100000n,
      segments: [{ vaddr: 0x100000n, paddr: 0x100000n, data: new Uint8Array(16) }],
    });
    assert.equal(isOpenbsdKernel(plain), false);
    assert.equal(detectKernelFormat(plain), "elf64");
    assert.equal(isOpenbsdKernel(new Uint8Array(gzipSync(plain))), false);
    assert.equal(detectKernelFormat(new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3])), undefined);
    const other = writeElf({
      elfClass: 64,
      entry: 0x100000n,
      segments: [{ vaddr: 0x100000n, paddr: 0x100000n, data: new Uint8Array(16) }],
      notes: [{ name: "NetBSD", type: 1, desc: new Uint8Array(4) }],
    });
    assert.equal(isOpenbsdKernel(other), false);
  },
});

Deno.test({
  name: "openbsd: boot arguments, stack, GDT and page tables byte for byte as vmd writes them",
  ignore: skip,
  fn() {
    const opts = setup();
    const r = loadKernel(new Uint8Array(gzipSync(bsd())), opts);
    const mem = opts.memory;
    assert.equal(r.format, "openbsd");

    // Boot arguments at 0x2000 (biosvar.h): BOOTARG_MEMMAP, BOOTARG_CONSDEV, BOOTARG_END.
    // The memory map: each e820 range (RAM = 1, reserved = 2), the PCI hole reserved, a zero entry.
    const map: [number, number, number][] = [
      ...opts.e820.map((
        e,
      ): [number, number, number] => [e.gpa, e.size, e.type === E820_RAM ? 1 : 2]),
      [0xc0000000, 0x40000000, 2],
      [0, 0, 0],
    ];
    const expected: number[] = [];
    const u32 = (x: number) =>
      expected.push(x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff);
    const u64 = (x: number) => (u32(x % 2 ** 32), u32(Math.floor(x / 2 ** 32)));
    const memmapSize = 12 + map.length * 20;
    u32(0), u32(memmapSize), u32(memmapSize);
    for (const [addr, size, type] of map) u64(addr), u64(size), u32(type);
    u32(5), u32(44), u32(44); // BOOTARG_CONSDEV, 3 ints + sizeof(bios_consdev_t) = 32
    u32(0x800); // consdev: makedev(8, 0), com0
    u32(115200); // conspeed
    u64(0x3f8); // consaddr
    u32(0), u32(0), u32(0), u32(0); // consfreq, flags, reg_width, reg_shift
    u32(0xffffffff); // BOOTARG_END
    const block = mem.read(0x2000, 4096);
    assert.deepEqual([...block.subarray(0, expected.length)], expected);
    assert.ok(
      block.subarray(expected.length).every((b) => b === 0),
      "the rest of the page is zero",
    );
    assert.deepEqual(openbsdMemoryMap(opts.e820).map((m) => [m.addr, m.size, m.type]), map);

    // The stack at 0xF000: /boot's arguments to the kernel's 32-bit entry.
    const rsp = Number(r.state.regs.rsp);
    assert.equal(rsp, 0xffdc);
    const end = mem.readU32(rsp + 16);
    const words = Array.from({ length: 9 }, (_, i) => mem.readU32(rsp + 4 * i));
    assert.deepEqual(words, [0, 0, 0xa0000004, 0x0e, end, 0, 0, expected.length, 0x2000]);
    assert.equal(OPENBSD_BOOTDEV, makeBootdev(4, 0, 0, 0, 0));
    assert.ok(mem.read(0xf000, rsp - 0xf000).every((b) => b === 0));

    // GDT at 0x10000: null, 0x08 compat code, 0x10 data, 0x18 long-mode code.
    const gdt = new DataView(mem.read(0x10000, 32).buffer);
    assert.deepEqual(
      [0, 8, 16, 24].map((o) => gdt.getBigUint64(o, true)),
      [0n, 0x00cf9b000000ffffn, 0x00cf93000000ffffn, 0x00af9b000000ffffn],
    );
    // Page tables: PML4[0] -> 0x12000 (present), PDPT[0] -> 0x13000, 512 x 2 MiB identity.
    assert.equal(mem.readU64(0x11000), 0x12001n);
    assert.equal(mem.readU64(0x11008), 0n);
    assert.equal(mem.readU64(0x12000), 0x13007n);
    for (const i of [0, 1, 8, 511]) {
      assert.equal(mem.readU64(0x13000 + 8 * i), 0x87n | (BigInt(i) << 21n));
    }

    // Registers: vmd's flat64 set.
    const s = r.state.sregs;
    assert.equal(r.state.regs.rip, 0x1001000n, "e_entry through vmd's 28-bit LOADADDR");
    assert.equal(r.entry, 0x1001000);
    assert.equal(r.state.regs.rflags, 2n);
    assert.deepEqual([s.cr0, s.cr3, s.cr4, s.efer], [0x80000011n, 0x11000n, 0x30n, 0x500n]);
    assert.deepEqual([s.cs.selector, s.cs.type, s.cs.l, s.cs.db, s.cs.g, s.cs.present], [
      8,
      0xf,
      false,
      true,
      true,
      true,
    ]);
    for (const d of [s.ds, s.es, s.fs, s.gs, s.ss]) {
      assert.deepEqual([d.selector, d.type, d.db, d.g], [0x10, 3, true, true]);
    }
    assert.deepEqual(s.gdt, { base: 0x10000n, limit: 0xffff });
    assert.deepEqual([s.ldt.type, s.ldt.limit, s.ldt.s, s.tr.type, s.tr.limit, s.tr.s], [
      2,
      0xffff,
      false,
      0xb,
      0xffff,
      false,
    ]);
  },
});

Deno.test({
  name:
    "openbsd: segments, random data, the ELF header copy and the symbol tables after the kernel",
  ignore: skip,
  fn() {
    const file = bsd();
    const opts = setup();
    loadOpenbsd(file, opts);
    const mem = opts.memory;
    const v = new DataView(file.buffer, file.byteOffset);
    // Program headers of the file: the loads land at p_paddr, bss zeroed.
    const phoff = Number(v.getBigUint64(32, true));
    const phnum = v.getUint16(56, true);
    let maxp = 0;
    let random: [number, number] | undefined;
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * 56;
      const type = v.getUint32(at, true);
      const offset = Number(v.getBigUint64(at + 8, true));
      const paddr = Number(v.getBigUint64(at + 24, true));
      const filesz = Number(v.getBigUint64(at + 32, true));
      const memsz = Number(v.getBigUint64(at + 40, true));
      if (type === PT_OPENBSD_RANDOMIZE) random = [paddr, filesz];
      if (type !== 1) continue;
      assert.deepEqual(mem.read(paddr, filesz), file.subarray(offset, offset + filesz));
      assert.ok(mem.read(paddr + filesz, memsz - filesz).every((b) => b === 0));
      maxp = Math.max(maxp, paddr + memsz);
    }
    assert.ok(random && random[1] === 64, "the fake bsd has a random segment");
    assert.ok(mem.read(random[0], 64).some((b) => b !== 0), "random data filled in");

    // After the kernel: the ELF header (no program headers), the section headers, the tables.
    const elfp = Math.ceil(maxp / 8) * 8;
    const header = mem.read(elfp, 64);
    const hv = new DataView(header.buffer);
    assert.deepEqual([...header.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
    assert.equal(hv.getBigUint64(32, true), 0n, "e_phoff");
    assert.equal(hv.getBigUint64(40, true), 64n, "e_shoff");
    assert.equal(hv.getUint16(54, true), 0, "e_phentsize");
    assert.equal(hv.getUint16(56, true), 0, "e_phnum");
    assert.deepEqual(header.subarray(0, 32), file.subarray(0, 32));
    const shoff = Number(v.getBigUint64(40, true));
    const shnum = v.getUint16(60, true);
    const shstrndx = v.getUint16(62, true);
    const strAt = Number(v.getBigUint64(shoff + shstrndx * 64 + 24, true));
    const strSize = Number(v.getBigUint64(shoff + shstrndx * 64 + 32, true));
    const names = file.subarray(strAt, strAt + strSize);
    const original = shdrs(file, shoff, shnum, names);
    const copied = shdrs(mem.read(elfp, 64 + shnum * 64), 64, shnum, names);
    let next = Math.ceil((64 + shnum * 64) / 8) * 8;
    let symtabSeen = false;
    original.forEach((s, i) => {
      const c = copied[i];
      if (s.type === 2 || s.type === 3) {
        // SYMTAB and STRTAB (.strtab, .shstrtab): copied in order, 8-byte aligned.
        symtabSeen ||= s.type === 2;
        assert.equal(c.offset, next, `${s.name}: offset relative to the header copy`);
        assert.equal(c.flags, s.flags | 2n, `${s.name}: SHF_ALLOC`);
        assert.deepEqual(
          mem.read(elfp + c.offset, s.size),
          file.subarray(s.offset, s.offset + s.size),
          s.name,
        );
        next += Math.ceil(s.size / 8) * 8;
      } else {
        assert.deepEqual(c, s, `${s.name}: untouched`);
      }
    });
    assert.ok(symtabSeen, "ld wrote a symbol table");
    // `end` on the boot stack is the first byte past the tables.
    assert.equal(mem.readU32(0xffdc + 16), elfp + next);
  },
});

Deno.test("openbsd: an i386 kernel gets 4 MiB pages and no long mode; no sections means no symbols", () => {
  const opts = setup(32 * MiB);
  const file = writeElf({
    elfClass: 32,
    entry: 0xd0200000n, // LOADADDR keeps 28 bits: 0x00200000
    segments: [{
      vaddr: 0xd0200000n,
      paddr: 0x200000n,
      data: new Uint8Array([0xf4, 1, 2, 3]),
      memSize: 0x1001,
    }],
    notes: [{ name: "OpenBSD", type: 1, desc: new Uint8Array(4) }],
  });
  const r = loadKernel(file, opts);
  assert.equal(r.format, "openbsd");
  const s = r.state.sregs;
  assert.deepEqual([s.cr0, s.cr3, s.cr4, s.efer], [0x80000011n, 0x12000n, 0x10n, 0n]);
  assert.equal(r.state.regs.rip, 0x200000n);
  const mem = opts.memory;
  for (const i of [0, 1, 1023]) {
    assert.equal(mem.readU32(0x12000 + 4 * i), (0x87 + i * 0x400000) >>> 0);
  }
  // end: the 4-byte aligned end of the segment (with bss), an ELF32 header, no section headers.
  const elfp = Math.ceil((0x200000 + 0x1001) / 4) * 4;
  assert.equal(mem.readU32(0xffdc + 16), elfp + 52);
  assert.equal(mem.readU32(elfp), 0x464c457f);
});

Deno.test("openbsd: kernels that do not fit or are broken are refused with the reason", () => {
  const note = [{ name: "OpenBSD", type: 1, desc: new Uint8Array(4) }];
  const over = writeElf({
    elfClass: 64,
    entry: 0x2000n,
    segments: [{ vaddr: 0x2000n, paddr: 0x2000n, data: new Uint8Array(8) }],
    notes: note,
  });
  assert.throws(
    () => loadKernel(over, setup()),
    (e) => e instanceof LoaderError && /overlaps the boot arguments/.test(e.message),
  );
  const high = writeElf({
    elfClass: 64,
    entry: 0x8000000n,
    segments: [{ vaddr: 0x8000000n, paddr: 0x8000000n, data: new Uint8Array(8) }],
    notes: note,
  });
  assert.throws(() => loadKernel(high, setup(16 * MiB)), /does not fit in guest RAM/);
  assert.throws(
    () => loadOpenbsd(new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0]), setup()),
    /gzip data does not decompress/,
  );
  const linux = writeElf({
    elfClass: 64,
    entry: 0x100000n,
    segments: [{ vaddr: 0x100000n, paddr: 0x100000n, data: new Uint8Array(8) }],
  });
  assert.throws(() => loadOpenbsd(linux, setup()), /not an OpenBSD kernel: no "OpenBSD" ELF note/);
});
