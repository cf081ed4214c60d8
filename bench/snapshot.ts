/**
 * Machine snapshots for the C reference loop (bench/c/kvm_loop.c): vmmctl's
 * loader builds the machine, then guest RAM (its non-zero pages) and the
 * vCPU's registers exactly as KVM holds them (KVM_GET_REGS/KVM_GET_SREGS
 * bytes, laid out by accel/kvm/abi.ts) go to a file, so the C loop runs the
 * same guest bytes from the same CPU state.
 *
 * Format (little-endian): "VMMBSNAP", u32 version 1, u32 exit port, u32
 * counted port (0xffffffff: none), u64 counted MMIO address (all ones: none),
 * u32 region count, per region u64 gpa + u64 size, u32 + kvm_regs bytes,
 * u32 + kvm_sregs bytes, u32 page count, per page u64 gpa + 4096 bytes.
 *
 * @module
 */

import * as abi from "../accel/kvm/abi.ts";
import type { KvmVcpu } from "../accel/kvm/kvm.ts";
import type { Libc } from "../ffi/libc.ts";
import type { Machine } from "../machine/machine.ts";
import { memoryLayout, PAGE_SIZE } from "../core/layout.ts";

/** The snapshot file's magic bytes. */
export const SNAPSHOT_MAGIC = "VMMBSNAP";
/** "No counted port" in a snapshot. */
export const NO_PORT = 0xffff_ffff;
/** "No counted MMIO address" in a snapshot. */
export const NO_MMIO = 0xffff_ffff_ffff_ffffn;

/** What the C loop needs besides memory and registers. */
export interface SnapshotSpec {
  /** Port whose first write ends the run (the debug exit port). */
  exitPort: number;
  /** Port whose exits are timed (pioloop: 0x80). */
  countPort?: number;
  /** MMIO address whose exits are timed (bench_mmio). */
  countMmio?: number;
}

/** Everything a snapshot holds. */
export interface SnapshotParts extends SnapshotSpec {
  regions: readonly { gpa: number; size: number }[];
  regs: Uint8Array;
  sregs: Uint8Array;
  /** Non-zero guest pages. */
  pages: readonly { gpa: number; bytes: Uint8Array }[];
}

/** Encodes a snapshot (pure). */
export function encodeSnapshot(p: SnapshotParts): Uint8Array {
  const size = 8 + 4 * 4 + 8 + p.regions.length * 16 + 4 + p.regs.length + 4 + p.sregs.length +
    4 + p.pages.length * (8 + PAGE_SIZE);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let at = 0;
  out.set(new TextEncoder().encode(SNAPSHOT_MAGIC), 0);
  at = 8;
  const u32 = (x: number) => {
    v.setUint32(at, x, true);
    at += 4;
  };
  const u64 = (x: bigint) => {
    v.setBigUint64(at, x, true);
    at += 8;
  };
  const bytes = (b: Uint8Array) => {
    out.set(b, at);
    at += b.length;
  };
  u32(1);
  u32(p.exitPort);
  u32(p.countPort ?? NO_PORT);
  u64(p.countMmio === undefined ? NO_MMIO : BigInt(p.countMmio));
  u32(p.regions.length);
  for (const r of p.regions) {
    u64(BigInt(r.gpa));
    u64(BigInt(r.size));
  }
  u32(p.regs.length);
  bytes(p.regs);
  u32(p.sregs.length);
  bytes(p.sregs);
  u32(p.pages.length);
  for (const page of p.pages) {
    if (page.bytes.length !== PAGE_SIZE) throw new Error(`Snapshot page is not ${PAGE_SIZE} bytes`);
    u64(BigInt(page.gpa));
    bytes(page.bytes);
  }
  return out;
}

/** The non-zero pages of `memory` in `regions`. */
export function nonZeroPages(
  read: (gpa: number, length: number) => Uint8Array,
  regions: readonly { gpa: number; size: number }[],
): { gpa: number; bytes: Uint8Array }[] {
  const pages: { gpa: number; bytes: Uint8Array }[] = [];
  for (const r of regions) {
    for (let gpa = r.gpa; gpa < r.gpa + r.size; gpa += PAGE_SIZE) {
      const bytes = read(gpa, PAGE_SIZE);
      // Compare 8 bytes at a time: 64 MiB of RAM is 16k pages.
      const words = new BigUint64Array(bytes.buffer, bytes.byteOffset, PAGE_SIZE / 8);
      if (words.some((w) => w !== 0n)) pages.push({ gpa, bytes: bytes.slice() });
    }
  }
  return pages;
}

/**
 * The snapshot of a freshly built machine on the KVM back-end (before its
 * first run): RAM as the loader left it, registers as KVM holds them.
 */
export function snapshotMachine(m: Machine, libc: Libc, spec: SnapshotSpec): Uint8Array {
  if (m.accel.name !== "kvm") {
    throw new Error(`Cannot snapshot a machine on accel "${m.accel.name}": only "kvm"`);
  }
  const vcpu = m.vcpu as KvmVcpu;
  const regs = new Uint8Array(abi.kvm_regs.size);
  const sregs = new Uint8Array(abi.kvm_sregs.size);
  libc.ioctl(vcpu.fd, abi.KVM_GET_REGS, regs);
  libc.ioctl(vcpu.fd, abi.KVM_GET_SREGS, sregs);
  const regions = memoryLayout(m.config.vm.memoryBytes).ram;
  const pages = nonZeroPages((gpa, n) => m.vm.memory.slice(gpa, n), regions);
  return encodeSnapshot({ ...spec, regions, regs, sregs, pages });
}
