import { debianKernel, LINUX_TESTS_ENABLED } from "../tests/debian_kernel.ts";
import assert from "node:assert/strict";
import { GuestMemory } from "../core/guest_memory.ts";
import { type E820Entry, memoryLayout, MiB } from "../core/layout.ts";
import { kernelRuntimeArea, loadBzImage, parseBzImage, XLF_KERNEL_64 } from "./bzimage.ts";
import { LoaderError, type LoadOptions } from "./common.ts";
import { detectKernelFormat, loadKernel } from "./detect.ts";

const MEMORY = 64 * MiB;

function setup(extra: Partial<LoadOptions> = {}, memoryBytes = MEMORY) {
  const { ram, e820 } = memoryLayout(memoryBytes);
  const memory = GuestMemory.anonymous(ram);
  for (const r of memory.regions) r.bytes.fill(0xcc);
  return { memory, e820, cmdline: "console=ttyS0 quiet", ...extra } as LoadOptions & {
    e820: E820Entry[];
  };
}

interface BzSpec {
  version?: number;
  /** The header's setup_sects byte (0 means 4). */
  setupSects?: number;
  xloadflags?: number;
  loadflags?: number;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  initSize?: number;
  kernelBytes?: number;
  relocatable?: boolean;
  prefAddress?: bigint;
}

/** A synthetic bzImage: boot sector with setup header, setup sectors of 0xEE, patterned kernel. */
function makeBzImage(spec: BzSpec = {}): Uint8Array {
  const sectsByte = spec.setupSects ?? 4;
  const sects = sectsByte === 0 ? 4 : sectsByte;
  const kernelBytes = spec.kernelBytes ?? 0x2400;
  const f = new Uint8Array((sects + 1) * 512 + kernelBytes);
  const v = new DataView(f.buffer);
  f.fill(0xee, 0x26c, (sects + 1) * 512);
  for (let i = 0; i < kernelBytes; i++) f[(sects + 1) * 512 + i] = (i * 7 + 3) & 0xff;
  f[0x1f1] = sectsByte;
  v.setUint16(0x1f2, 1, true); // root_flags
  v.setUint32(0x1f4, kernelBytes / 16, true); // syssize
  v.setUint16(0x1fa, 0xffff, true); // vid_mode
  v.setUint16(0x1fe, 0xaa55, true);
  f[0x200] = 0xeb;
  f[0x201] = 0x6a; // header ends at 0x26c
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, spec.version ?? 0x020f, true);
  v.setUint16(0x20e, 0x1234, true); // kernel_version
  f[0x211] = spec.loadflags ?? 0x01;
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, spec.initrdAddrMax ?? 0x7fffffff, true);
  v.setUint32(0x230, 0x200000, true);
  f[0x234] = spec.relocatable === false ? 0 : 1;
  f[0x235] = 21;
  v.setUint16(0x236, spec.xloadflags ?? 0x7f, true);
  v.setUint32(0x238, spec.cmdlineSize ?? 255, true);
  v.setBigUint64(0x258, spec.prefAddress ?? 0x1000000n, true);
  v.setUint32(0x260, spec.initSize ?? 0x400000, true);
  return f;
}

/** Zero-page offsets the loader writes; everything else of the header is the image's. */
const LOADER_FIELDS = new Set<number>();
for (const [off, len] of [[0x210, 2], [0x214, 4], [0x218, 8], [0x224, 2], [0x228, 4]]) {
  for (let i = 0; i < len; i++) LOADER_FIELDS.add(off + i);
}

Deno.test("bzImage, 64-bit entry: kernel at 1 MiB, zero page, e820, initrd, long mode", () => {
  const file = makeBzImage();
  const initrd = new Uint8Array(0x12345).map((_, i) => (i >> 4) & 0xff);
  const opts = setup({ initrd });
  const r = loadBzImage(file, opts);
  const mem = opts.memory;
  assert.equal(r.format, "bzimage");
  assert.equal(r.entry, 0x100200);
  // The protected-mode kernel, and nothing of the setup code, at 1 MiB.
  assert.deepEqual(mem.read(0x100000, 0x2400), file.subarray(5 * 512));
  assert.equal(mem.readU8(0x100000), 3);
  const zp = 0x7000;
  for (let off = 0x1f1; off < 0x26c; off++) {
    if (!LOADER_FIELDS.has(off)) assert.equal(mem.readU8(zp + off), file[off], `hdr byte ${off}`);
  }
  assert.equal(mem.readU16(zp + 0x20e), 0x1234);
  assert.equal(mem.readU8(zp + 0x210), 0xff, "type_of_loader");
  assert.equal(mem.readU8(zp + 0x211), 0x81, "LOADED_HIGH | CAN_USE_HEAP");
  assert.equal(mem.readU16(zp + 0x224), 0xfe00, "heap_end_ptr");
  assert.equal(mem.readU32(zp + 0x214), 0x100000, "code32_start");
  assert.equal(mem.readU32(zp + 0x228), 0x20000, "cmd_line_ptr");
  assert.equal(mem.readCString(0x20000, 256), "console=ttyS0 quiet");
  assert.ok(mem.read(zp + 0x26c, 0x2d0 - 0x26c).every((b) => b === 0), "no setup code copied");
  assert.equal(mem.readU8(zp + 0x1ef), 0, "sentinel");
  const ramdisk = mem.readU32(zp + 0x218);
  assert.equal(mem.readU32(zp + 0x21c), 0x12345);
  assert.equal(ramdisk, Math.floor((MEMORY - 0x12345) / 4096) * 4096);
  assert.deepEqual(mem.read(ramdisk, initrd.length), initrd);
  assert.equal(mem.readU8(zp + 0x1e8), opts.e820.length);
  opts.e820.forEach((e, i) => {
    const at = zp + 0x2d0 + i * 20;
    assert.equal(mem.readU64(at), BigInt(e.gpa));
    assert.equal(mem.readU64(at + 8), BigInt(e.size));
    assert.equal(mem.readU32(at + 16), e.type);
  });
  assert.deepEqual(
    [...mem.read(zp + 0x2d0 + 2 * 20, 20)],
    [0, 0, 0x0f, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0],
    "BIOS area entry byte by byte",
  );
  const s = r.state;
  assert.equal(s.regs.rip, 0x100200n);
  assert.equal(s.regs.rsi, 0x7000n);
  assert.equal(s.regs.rbx | s.regs.rbp | s.regs.rdi, 0n);
  assert.equal(s.sregs.cr0, 0x80000011n);
  assert.equal(s.sregs.efer, 0x500n);
  assert.equal(s.sregs.cs.selector, 0x10);
  assert.equal(s.sregs.cs.l, true);
  assert.equal(s.sregs.ds.selector, 0x18);
  assert.equal(mem.readU64(0x9000), 0xa003n);
  assert.match(
    r.summary,
    /^bzImage protocol 2\.15, 64-bit entry at 0x100200, kernel 0x100000-0x1400000/,
  );
  // The file at 1 MiB; the runtime area: init_size from align_up(pref_address, 2 MiB).
  assert.deepEqual(r.used.find((u) => u.what === "kernel"), {
    gpa: 0x100000,
    size: 0x2400,
    what: "kernel",
  });
  assert.deepEqual(r.used.find((u) => u.what === "kernel runtime area"), {
    gpa: 0x1000000,
    size: 0x400000,
    what: "kernel runtime area",
  });
});

Deno.test("bzImage, 32-bit entry: protected mode at code32_start with ESI = zero page", () => {
  const r = loadBzImage(makeBzImage({ xloadflags: 0 }), setup());
  assert.equal(r.entry, 0x100000);
  assert.equal(r.state.regs.rip, 0x100000n);
  assert.equal(r.state.regs.rsi, 0x7000n);
  assert.equal(r.state.sregs.cr0, 0x11n);
  assert.equal(r.state.sregs.cs.db, true);
  assert.equal(r.state.sregs.cs.l, false);
  assert.equal(r.used.some((u) => u.what === "page tables"), false);
  assert.match(r.summary, /32-bit entry/);
});

Deno.test("bzImage: setup_sects 0 means 4, initrd below initrd_addr_max", () => {
  const file = makeBzImage({ setupSects: 0, initrdAddrMax: 0x7fffff });
  assert.equal(parseBzImage(file).setupSects, 4);
  assert.equal(parseBzImage(file).kernelOffset, 5 * 512);
  const initrd = new Uint8Array(0x3000).fill(9);
  const opts = setup({ initrd });
  loadBzImage(file, opts);
  assert.deepEqual(opts.memory.read(0x100000, 16), file.subarray(0xa00, 0xa10));
  assert.equal(
    opts.memory.readU32(0x7000 + 0x218),
    0x800000 - 0x3000,
    "ends at initrd_addr_max + 1",
  );
});

Deno.test("bzImage runtime area: relocation rules of boot.rst, merged when it overlaps the file", () => {
  const fixed = parseBzImage(makeBzImage({ relocatable: false, prefAddress: 0x2000000n }));
  assert.deepEqual(kernelRuntimeArea(fixed, 0x100000), { gpa: 0x2000000, size: 0x400000 });
  const low = parseBzImage(makeBzImage({ prefAddress: 0n }));
  assert.deepEqual(kernelRuntimeArea(low, 0x100000), { gpa: 0x200000, size: 0x400000 });
  // A 2 MiB file at 1 MiB overlaps the runtime area at 2 MiB: one claim covers both.
  const big = makeBzImage({ prefAddress: 0n, kernelBytes: 0x200000 });
  const r = loadBzImage(big, setup({ initrd: new Uint8Array(0x1000) }));
  assert.deepEqual(r.used.find((u) => u.what === "kernel"), {
    gpa: 0x100000,
    size: 0x500000,
    what: "kernel",
  });
  assert.equal(r.used.some((u) => u.what === "kernel runtime area"), false);
});

Deno.test("bzImage errors: old protocol, zImage, long cmdline, big initrd, big kernel", () => {
  const expectError = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (e) => e instanceof LoaderError && re.test(e.message));
  expectError(
    () => loadBzImage(makeBzImage({ version: 0x0205 }), setup()),
    /^Linux boot protocol 2\.05 is too old \(need 2\.06 or later\)$/,
  );
  expectError(() => loadBzImage(makeBzImage({ loadflags: 0 }), setup()), /zImage/);
  expectError(
    () => loadBzImage(makeBzImage(), setup({ cmdline: "x".repeat(256) })),
    /^command line of 256 bytes is longer than the kernel's cmdline_size \(255 bytes\)$/,
  );
  // 255 bytes is exactly the limit.
  loadBzImage(makeBzImage(), setup({ cmdline: "x".repeat(255) }));
  expectError(
    () =>
      loadBzImage(
        makeBzImage({ initrdAddrMax: 0x7fffff }),
        setup({ initrd: new Uint8Array(7 * MiB) }),
      ),
    /^initrd of 7M is too big: no room for it below 0x800000 outside the kernel 0x100000-0x1400000/,
  );
  expectError(
    () => loadBzImage(makeBzImage({ initSize: 0x10000000 }), setup({}, 32 * MiB)),
    /^kernel needs 256M at 0x1000000 .* larger than guest RAM \(32M\)$/,
  );
  const notBz = makeBzImage();
  notBz[0x202] = 0;
  expectError(() => parseBzImage(notBz), /not a bzImage/);
  assert.equal(detectKernelFormat(notBz), undefined);
  expectError(
    () => loadKernel(notBz, { ...setup(), name: "/x/y" }),
    /^kernel "\/x\/y": not a bzImage, ELF or Multiboot v1 image \(first bytes: 00 00 00 00 00 00 00 00 \.\.\.\)$/,
  );
});

// ---- Opt-in: a real Debian cloud kernel (VMMCTL_TEST_LINUX=1; downloads with apt-get) ----

Deno.test({
  name: "real Debian linux-image-*-cloud-amd64 bzImage parses and loads into 256M",
  ignore: !LINUX_TESTS_ENABLED,
  fn() {
    const path = debianKernel();
    const vmlinuz = { name: path.split("/").pop()! };
    {
      const data = Deno.readFileSync(path);
      assert.equal(detectKernelFormat(data), "bzimage");
      const hdr = parseBzImage(data);
      assert.ok(hdr.version >= 0x020f, `protocol ${hdr.version.toString(16)}`);
      assert.ok((hdr.xloadflags & XLF_KERNEL_64) !== 0, "64-bit entry");
      assert.ok(hdr.setupSects >= 4 && hdr.setupSects < 128, `setup_sects ${hdr.setupSects}`);
      assert.equal(hdr.kernelOffset, (hdr.setupSects + 1) * 512);
      assert.equal(hdr.kernelSize, data.length - hdr.kernelOffset);
      assert.ok(hdr.initSize > hdr.kernelSize, "init_size covers the decompressed kernel");
      assert.equal(hdr.relocatable, true);
      assert.ok(hdr.cmdlineSize >= 255);
      const opts = setup(
        { cmdline: "console=ttyS0 earlyprintk=serial", name: vmlinuz.name },
        256 * MiB,
      );
      const r = loadKernel(data, opts);
      assert.equal(r.format, "bzimage");
      assert.equal(r.entry, 0x100200);
      assert.deepEqual(
        opts.memory.read(0x100000, 4096),
        data.subarray(hdr.kernelOffset, hdr.kernelOffset + 4096),
      );
      assert.deepEqual(
        opts.memory.read(0x7000 + 0x1f1, 0x210 - 0x1f1),
        data.subarray(0x1f1, 0x210),
        "setup header copied",
      );
      console.log(`${vmlinuz.name}: ${r.summary}`);
    }
  },
});

Deno.test("bzImage: a kernel_alignment that is not a power of two is refused", () => {
  for (const bad of [3, 0x200001, 0xffffffff]) {
    const image = makeBzImage();
    new DataView(image.buffer).setUint32(0x230, bad, true);
    assert.throws(
      () => loadKernel(image, { ...setup(), name: "bz" }),
      (e) =>
        e instanceof LoaderError &&
        e.message === `kernel "bz": kernel_alignment 0x${bad.toString(16)} is not a power of two`,
    );
  }
  const fine = makeBzImage();
  new DataView(fine.buffer).setUint32(0x230, 0x1000, true);
  assert.equal(loadKernel(fine, setup()).format, "bzimage");
});
