import assert from "node:assert/strict";
import { GuestMemory } from "../core/guest_memory.ts";
import { LoaderError } from "../loaders/common.ts";
import { detectKernelFormat, loadKernel } from "../loaders/detect.ts";
import { memoryLayout } from "../core/layout.ts";
import {
  ABI1_NOTE_TYPE,
  BOOT_INFO,
  HVT_FEATURE_RING_IO,
  MFT1_NOTE_TYPE,
  MFT_RESERVED_FIRST,
  X86_BOOT_INFO_BASE,
  X86_CR0_INIT,
  X86_PDE_BASE,
  X86_PT0E_BASE,
} from "./abi.ts";
import { inspectUnikernel, isSolo5Unikernel, loadUnikernel, unikernelMemory } from "./loader.ts";
import { encodeManifest, parseManifest } from "./manifest.ts";

const GUESTS = new URL("./tests/guests/", import.meta.url);
const probe = Deno.readFileSync(new URL("probe.hvt", GUESTS));
const blk = Deno.readFileSync(new URL("blk.hvt", GUESTS));

/** Offset of the Solo5 note of `type` (its header) in `data`. */
function noteAt(data: Uint8Array, type: number): number {
  const v = new DataView(data.buffer, data.byteOffset);
  for (let i = 0; i + 20 <= data.length; i += 4) {
    if (
      v.getUint32(i, true) === 6 && v.getUint32(i + 8, true) === type &&
      new TextDecoder().decode(data.subarray(i + 12, i + 18)) === "Solo5\0"
    ) return i;
  }
  throw new Error(`no note ${type.toString(16)}`);
}

/** A copy of `data` after `edit`. */
function patched(data: Uint8Array, edit: (v: DataView) => void): Uint8Array {
  const copy = data.slice();
  edit(new DataView(copy.buffer));
  return copy;
}

/** File offset of program header `i` (ELF64: e_phoff at 32, 56-byte entries). */
function ph(v: DataView, i: number): number {
  return Number(v.getBigUint64(32, true)) + i * 56;
}

function load(data: Uint8Array, memoryBytes = 8 << 20, cmdline = "a b") {
  const image = inspectUnikernel(data, "t.hvt");
  const layout = unikernelMemory(memoryBytes, false);
  const memory = GuestMemory.anonymous([{ gpa: 0, size: layout.allocBytes }]);
  const result = loadUnikernel(data, image, {
    memory,
    layout,
    cmdline,
    manifest: encodeManifest(image.manifest),
    tscHz: 2_000_000_000,
    name: "t.hvt",
  });
  return { image, layout, memory, result };
}

Deno.test("loader: the test unikernels carry hvt ABI 2 and their manifests", () => {
  assert.equal(isSolo5Unikernel(probe), true);
  assert.equal(detectKernelFormat(probe), "solo5-hvt");
  const image = inspectUnikernel(blk);
  assert.deepEqual(image.abi, { target: 1, version: 2 });
  assert.deepEqual(image.manifest.entries.map((e) => [e.name, e.type]), [
    ["", MFT_RESERVED_FIRST],
    ["storage", 1],
  ]);
  // The PC machine refuses it with a pointer to the right machine.
  const { ram, e820 } = memoryLayout(64 << 20);
  assert.throws(
    () => loadKernel(probe, { memory: GuestMemory.anonymous(ram), e820, cmdline: "" }),
    /Solo5 hvt unikernel runs on the tender machine/,
  );
});

Deno.test("loader: boot info, manifest, command line, page tables and CPU state follow the ABI", () => {
  const { memory, result, layout } = load(probe, 8 << 20, "hello world");
  const bi = X86_BOOT_INFO_BASE;
  assert.equal(memory.readU64(bi + BOOT_INFO.MEM_SIZE), 8n << 20n);
  assert.equal(memory.readU64(bi + BOOT_INFO.KERNEL_END), BigInt(result.kernelEnd));
  assert.equal(memory.readU64(bi + BOOT_INFO.CPU_CYCLE_FREQ), 2_000_000_000n);
  assert.equal(memory.readU32(bi + BOOT_INFO.HOST_FEATURES), 0);
  const cmdline = Number(memory.readU64(bi + BOOT_INFO.CMDLINE));
  assert.equal(memory.readCString(cmdline, 100), "hello world");
  const mft = Number(memory.readU64(bi + BOOT_INFO.MFT));
  assert.equal(parseManifest(memory.read(mft, 8 + 104)).entries.length, 1);
  // The first segment's bytes are in place; the entry point and stack as promised.
  const v = new DataView(probe.buffer);
  const off = Number(v.getBigUint64(ph(v, 0) + 8, true));
  assert.deepEqual(memory.read(0x100000, 64), probe.subarray(off, off + 64));
  assert.equal(result.state.regs.rip, 0x100000n);
  assert.equal(result.state.regs.rdi, BigInt(X86_BOOT_INFO_BASE));
  assert.equal(result.state.regs.rsp, BigInt(layout.guestBytes - 8));
  assert.equal(result.state.sregs.cr0, X86_CR0_INIT);
  assert.equal(result.state.sregs.cs.l, true);
  // Page 0 and the tender's tables are not mapped, boot info read-only, the kernel writable.
  assert.equal(memory.readU64(X86_PT0E_BASE), 0n);
  assert.equal(memory.readU64(X86_PT0E_BASE + 8 * 2), 0n);
  assert.equal(memory.readU64(X86_PT0E_BASE + 8 * 0x10), 0x10001n);
  assert.equal(memory.readU64(X86_PT0E_BASE + 8 * 0x100), 0x100003n);
  // 2 MiB pages up to the end of memory and no further.
  assert.equal(memory.readU64(X86_PDE_BASE + 8 * 3), 0x600083n);
  assert.equal(memory.readU64(X86_PDE_BASE + 8 * 4), 0n);
});

Deno.test("loader: memory rounds down to 2 MiB pages; the ring adds 2 MiB above the guest's", () => {
  assert.deepEqual(unikernelMemory(5 << 20, false), { allocBytes: 4 << 20, guestBytes: 4 << 20 });
  assert.deepEqual(unikernelMemory(1, false), { allocBytes: 2 << 20, guestBytes: 2 << 20 });
  assert.deepEqual(unikernelMemory(4 << 20, true), {
    allocBytes: 6 << 20,
    guestBytes: 4 << 20,
    ringGpa: 4 << 20,
  });
  assert.throws(() => unikernelMemory(4 * 1024 ** 3, false), /more than the 3G/);
  const image = inspectUnikernel(probe);
  const layout = unikernelMemory(4 << 20, true);
  const memory = GuestMemory.anonymous([{ gpa: 0, size: layout.allocBytes }]);
  loadUnikernel(probe, image, {
    memory,
    layout,
    cmdline: "",
    manifest: encodeManifest(image.manifest),
    tscHz: 1,
  });
  assert.equal(memory.readU32(X86_BOOT_INFO_BASE + BOOT_INFO.HOST_FEATURES), HVT_FEATURE_RING_IO);
  assert.equal(memory.readU64(X86_BOOT_INFO_BASE + BOOT_INFO.NET_RING), BigInt(4 << 20));
  assert.equal(memory.readU64(X86_BOOT_INFO_BASE + BOOT_INFO.MEM_SIZE), BigInt(4 << 20));
});

Deno.test("loader: malformed unikernels are refused with clear errors", () => {
  const abi = noteAt(probe, ABI1_NOTE_TYPE);
  const mft = noteAt(probe, MFT1_NOTE_TYPE);
  const cases: [string, Uint8Array, RegExp][] = [
    ["ABI version", patched(probe, (v) => v.setUint32(abi + 24, 3, true)), /ABI version "3"/],
    ["ABI target", patched(probe, (v) => v.setUint32(abi + 20, 2, true)), /target "2", not hvt/],
    ["no ABI note", patched(probe, (v) => v.setUint32(abi + 8, 7, true)), /no Solo5 ABI/],
    ["no manifest", patched(probe, (v) => v.setUint32(mft + 8, 7, true)), /no Solo5 manifest/],
    ["manifest", patched(probe, (v) => v.setUint32(mft + 24, 9, true)), /manifest version "9"/],
    ["descsz", patched(probe, (v) => v.setUint32(mft + 4, 0x100000, true)), /descriptor of/],
    ["ELF32", patched(probe, (v) => v.setUint8(4, 1)), /not an x86-64 ELF64|past the end/],
    ["type", patched(probe, (v) => v.setUint16(16, 3, true)), /not an executable/],
    ["truncated", probe.subarray(0, 0x1100), /past the end of the file/],
  ];
  for (const [what, data, message] of cases) {
    assert.throws(
      () => inspectUnikernel(data, "bad.hvt"),
      (e) =>
        e instanceof LoaderError && e.message.startsWith("bad.hvt: ") && message.test(e.message),
      what,
    );
  }
  const segmentCases: [string, Uint8Array, RegExp][] = [
    [
      "below 1 MiB",
      patched(probe, (v) => v.setBigUint64(ph(v, 0) + 16, 0x8000n, true)),
      /in the tender's reserved low memory/,
    ],
    [
      "beyond memory",
      patched(probe, (v) => v.setBigUint64(ph(v, 1) + 40, 0x10000000n, true)),
      /beyond guest memory/,
    ],
    [
      "overlap",
      patched(probe, (v) => v.setBigUint64(ph(v, 1) + 16, 0x100800n, true)),
      /overlaps the previous segment/,
    ],
    [
      "file size",
      patched(probe, (v) => v.setBigUint64(ph(v, 0) + 32, 0x100000n, true)),
      /file size larger than its memory size|past the end/,
    ],
    ["entry", patched(probe, (v) => v.setBigUint64(24, 0x500000n, true)), /entry point 0x500000/],
    [
      "alignment",
      patched(probe, (v) => v.setBigUint64(ph(v, 0) + 48, 0x3000n, true)),
      /not a power of 2/,
    ],
  ];
  for (const [what, data, message] of segmentCases) {
    assert.throws(
      () => load(data),
      (e) => e instanceof LoaderError && message.test(e.message),
      what,
    );
  }
  assert.throws(() => load(probe, 8 << 20, "x".repeat(8192)), /command line of 8192 bytes/);
});
