import assert from "node:assert/strict";
import { GuestMemory } from "../core/guest_memory.ts";
import { memoryLayout, MiB } from "../core/layout.ts";
import { detectKernelFormat, LoaderError, loadKernel, type LoadOptions } from "./detect.ts";
import { le32, writeElf } from "./test_helpers.ts";

function options(extra: Partial<LoadOptions> = {}): LoadOptions {
  const { ram, e820 } = memoryLayout(32 * MiB);
  return { memory: GuestMemory.anonymous(ram), e820, cmdline: "", ...extra };
}

const SEGMENT = { vaddr: 0x200000n, paddr: 0x200000n, data: new Uint8Array(0x40).fill(0xf4) };

function elf(cls: 32 | 64, notes = false): Uint8Array {
  return writeElf({
    elfClass: cls,
    entry: 0x200000n,
    segments: [SEGMENT],
    notes: notes ? [{ name: "Xen", type: 18, desc: le32(0x200000) }] : undefined,
  });
}

/** Puts a valid Multiboot header (flags 0x3) at `offset` of a copy of `data`. */
function withMultiboot(data: Uint8Array, offset: number): Uint8Array {
  const out = new Uint8Array(Math.max(data.length, offset + 12));
  out.set(data);
  const v = new DataView(out.buffer);
  v.setUint32(offset, 0x1badb002, true);
  v.setUint32(offset + 4, 3, true);
  v.setUint32(offset + 8, -(0x1badb002 + 3) >>> 0, true);
  return out;
}

function bzImage(): Uint8Array {
  const f = new Uint8Array(5 * 512 + 0x100);
  const v = new DataView(f.buffer);
  v.setUint16(0x1fe, 0xaa55, true);
  f[0x201] = 0x6a;
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, 0x020f, true);
  f[0x211] = 1;
  v.setUint32(0x22c, 0x7fffffff, true);
  v.setUint32(0x238, 2047, true);
  return f;
}

Deno.test("detectKernelFormat: each format, and the order bzImage > Multiboot > PVH > ELF", () => {
  assert.equal(detectKernelFormat(bzImage()), "bzimage");
  assert.equal(detectKernelFormat(elf(64)), "elf64");
  assert.equal(detectKernelFormat(elf(32)), "elf32");
  assert.equal(detectKernelFormat(elf(64, true)), "pvh");
  assert.equal(detectKernelFormat(elf(32, true)), "pvh");
  // Multiboot wins over ELF (and over a PVH note), as in GRUB and QEMU.
  assert.equal(detectKernelFormat(withMultiboot(elf(32), 0x100)), "multiboot");
  assert.equal(detectKernelFormat(withMultiboot(elf(64, true), 0x100)), "multiboot");
  assert.equal(detectKernelFormat(withMultiboot(new Uint8Array(64), 0)), "multiboot");
  // ... but only within the first 8192 bytes.
  assert.equal(detectKernelFormat(withMultiboot(elf(64), 8192)), "elf64");
  // bzImage signature needs both "HdrS" and the boot flag.
  const noFlag = bzImage();
  noFlag[0x1fe] = 0;
  assert.equal(detectKernelFormat(noFlag), undefined);
  assert.equal(detectKernelFormat(new Uint8Array(0)), undefined);
  assert.equal(detectKernelFormat(new TextEncoder().encode("#!/bin/sh\necho hi\n")), undefined);
  const elf16 = elf(64);
  elf16[4] = 3; // neither class 32 nor 64
  assert.equal(detectKernelFormat(elf16), undefined);
});

Deno.test("loadKernel dispatches and keeps entry = RIP", () => {
  for (const [data, format] of [[elf(64), "elf64"], [elf(64, true), "pvh"]] as const) {
    const r = loadKernel(data, options());
    assert.equal(r.format, format);
    assert.equal(r.entry, 0x200000);
    assert.equal(r.state.regs.rip, BigInt(r.entry));
  }
  const mb = loadKernel(withMultiboot(elf(32), 0x100), options());
  assert.equal(mb.format, "multiboot");
  assert.equal(mb.state.regs.rax, 0x2badb002n);
  const bz = loadKernel(bzImage(), options({ cmdline: "quiet" }));
  assert.equal(bz.format, "bzimage");
  assert.equal(bz.entry, 0x100000, "no XLF_KERNEL_64: 32-bit entry");
});

Deno.test("loadKernel errors name the kernel and say what is wrong", () => {
  const fails = (data: Uint8Array, re: RegExp, extra: Partial<LoadOptions> = { name: "/x/y" }) =>
    assert.throws(
      () => loadKernel(data, options(extra)),
      (e) => e instanceof LoaderError && re.test(e.message),
    );
  fails(
    new Uint8Array([0x4d, 0x5a, 0x90, 0, 3, 0, 0, 0, 4, 0]),
    /^kernel "\/x\/y": not a bzImage, ELF or Multiboot v1 image \(first bytes: 4d 5a 90 00 03 00 00 00 \.\.\.\)$/,
  );
  fails(new Uint8Array([0x7f, 0x45]), /^kernel "\/x\/y": not a bzImage, .*first bytes: 7f 45\)$/);
  fails(new Uint8Array(0), /^kernel: not a bzImage, ELF or Multiboot v1 image \(empty file\)$/, {});
  fails(elf(32), /^kernel "\/x\/y": 32-bit ELF kernel without a Multiboot header or PVH note/);
  const high = writeElf({
    elfClass: 64,
    entry: 0x10000000n,
    segments: [{ vaddr: 0x10000000n, paddr: 0x10000000n, data: new Uint8Array(16) }],
  });
  fails(
    high,
    /^kernel "\/x\/y": segment at 0x10000000 of 0x10 bytes does not fit in guest RAM \(32M\)$/,
  );
  fails(
    bzImage(),
    /^kernel "\/x\/y": command line of 3000 bytes is longer than the kernel's cmdline_size \(2047 bytes\)$/,
    { name: "/x/y", cmdline: "a".repeat(3000) },
  );
  fails(
    elf(64),
    /^kernel "\/x\/y": command line of 70000 bytes is longer than the command line area/,
    {
      name: "/x/y",
      cmdline: "a".repeat(70000),
    },
  );
});
