/**
 * Block I/O through virtio-blk: guests/bench_blk.asm runs four phases of
 * one-at-a-time requests (4 KiB random reads, 4 KiB random writes, 128 KiB
 * sequential reads, 128 KiB sequential writes) on a 64 MiB raw image, under
 * vmmctl (in-process, the real run loop and virtio device; phases timed by
 * the POST codes the guest writes between them) and under QEMU `-machine pc`
 * with virtio-blk-pci (legacy interface, like the guest uses with vmmctl).
 *
 * QEMU's phases are timed by the guest itself: it prints each phase's TSC
 * cycles, converted with the TSC rate measured in vmmctl's run (cycles over
 * POST-code wall time), so both VMMs are timed by the same guest clock.
 *
 * @module
 */

import { createAccel } from "../accel/select.ts";
import type { Accel } from "../accel/types.ts";
import { openLibc } from "../ffi/libc.ts";
import { guestPath } from "../guests/images.ts";
import { VcpuControl } from "../machine/vcpu_channel.ts";
import { Machine } from "../machine/machine.ts";
import { runLoop } from "../machine/run_loop.ts";
import { BOOT_MEMORY_MIB, checkRun } from "./boot.ts";
import { timeChild } from "./child.ts";
import { benchConfig } from "./exits.ts";
import { QEMU, qemuBenchArgs, qemuLabel } from "./qemu_ref.ts";
import { measuredRow, type Row, skippedRow } from "./report.ts";
import { median, summarize } from "./stats.ts";

/** The guest's phases, in order. */
export const BLK_PHASES = [
  { name: "4 KiB random read", bytes: 4096 },
  { name: "4 KiB random write", bytes: 4096 },
  { name: "128 KiB sequential read", bytes: 128 * 1024 },
  { name: "128 KiB sequential write", bytes: 128 * 1024 },
] as const;

/** bench_blk's exit value and the POST code before phase 1. */
const BLK_EXIT_VALUE = 0x18;
const POST_PHASE_BASE = 0xb0;
/** Size of the benchmark disk image. */
export const BLK_DISK_BYTES = 64 * 1024 * 1024;

/** Parses bench_blk's "phase K cycles=HEX" lines: cycles per phase, in order. */
export function parsePhaseCycles(serial: string): number[] {
  const out: number[] = [];
  for (const m of serial.matchAll(/^phase (\d) cycles=([0-9a-f]{16})\r?$/gm)) {
    if (Number(m[1]) !== out.length + 1) throw new Error(`bench_blk: phase ${m[1]} out of order`);
    out.push(parseInt(m[2], 16));
  }
  if (out.length !== BLK_PHASES.length) {
    throw new Error(`bench_blk printed ${out.length} phases, not ${BLK_PHASES.length}: ${serial}`);
  }
  return out;
}

/** Wall ms of each phase from the POST entries (0xB0..0xB4). */
export function phaseWallMs(post: readonly { code: number; atNs: number }[]): number[] {
  const at = (code: number) => {
    const e = post.find((p) => p.code === code);
    if (!e) throw new Error(`bench_blk: no POST code 0x${code.toString(16)}`);
    return e.atNs / 1e6;
  };
  return BLK_PHASES.map((_, k) => at(POST_PHASE_BASE + k + 1) - at(POST_PHASE_BASE + k));
}

/** Writes a raw image of pseudo-random bytes (no sparse holes to read). */
export async function makeDiskImage(path: string, bytes = BLK_DISK_BYTES): Promise<void> {
  const chunk = new Uint8Array(1 << 20);
  let x = 0x9e3779b9;
  const words = new Uint32Array(chunk.buffer);
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (let done = 0; done < bytes; done += chunk.length) await f.write(chunk);
  } finally {
    f.close();
  }
}

/** One vmmctl run: wall ms and TSC cycles per phase. */
export function runOursBlk(
  accel: Accel,
  disk: string,
  n: number,
): { ms: number[]; cycles: number[] } {
  const config = benchConfig(guestPath("bench_blk"), `n=${n}`);
  config.disks = [{ path: disk, format: "raw", readonly: false }];
  let serial = "";
  const decoder = new TextDecoder();
  const m = new Machine({ config, accel, serialOut: (b) => serial += decoder.decode(b) });
  try {
    const o = runLoop(m, new VcpuControl());
    if (o.kind !== "exit-port" || o.status !== ((BLK_EXIT_VALUE << 1) | 1)) {
      throw new Error(`bench_blk under vmmctl ended with ${JSON.stringify(o)}: ${serial}`);
    }
    return { ms: phaseWallMs(m.post.entries()), cycles: parsePhaseCycles(serial) };
  } finally {
    m.close();
  }
}

/** Options of {@link benchBlockIo}. */
export interface BlockIoBenchOptions {
  reps: number;
  /** Requests per phase. */
  requests: number;
  /** Runs of QEMU pc+KVM (SeaBIOS makes each take seconds here). */
  pcKvmReps: number;
  qemuInstalled: boolean;
  tempDir: string;
  log: (line: string) => void;
}

/** The block I/O rows. */
export async function benchBlockIo(o: BlockIoBenchOptions): Promise<Row[]> {
  const disk = `${o.tempDir}/bench-disk.raw`;
  await makeDiskImage(disk);
  const accel = await createAccel("kvm", openLibc());
  const ours: { ms: number[]; cycles: number[] }[] = [];
  const flavours = o.qemuInstalled ? (["pc-kvm", "pc-tcg"] as const) : [];
  const qemu = new Map<string, number[][]>(flavours.map((f) => [f, []]));
  for (let i = 0; i < o.reps; i++) {
    ours.push(runOursBlk(accel, disk, o.requests));
    for (const f of flavours) {
      if (f === "pc-kvm" && i >= o.pcKvmReps) continue;
      const args = [
        ...qemuBenchArgs(f, {
          kernel: guestPath("bench_blk"),
          cmdline: `n=${o.requests}`,
          memoryMiB: BOOT_MEMORY_MIB,
        }),
        "-drive",
        `file=${disk},if=none,id=d0,format=raw`,
        "-device",
        "virtio-blk-pci,drive=d0,disable-modern=on",
      ];
      const r = await timeChild(QEMU, args, { timeoutMs: 120_000 });
      checkRun(`${qemuLabel(f)} bench_blk`, r, (BLK_EXIT_VALUE << 1) | 1);
      qemu.get(f)!.push(parsePhaseCycles(r.stdout));
    }
    o.log(
      `  rep ${i + 1}/${o.reps}: vmmctl ` +
        ours[i].ms.map((ms) => `${((o.requests * 1000) / ms).toFixed(0)}`).join("/") +
        " requests/s",
    );
  }
  // The guest's TSC rate, from vmmctl's runs: all cycles over all POST-timed wall time.
  const hz =
    median(ours.map((r) => r.cycles.reduce((a, b) => a + b) / r.ms.reduce((a, b) => a + b))) *
    1000;
  const rows: Row[] = [];
  BLK_PHASES.forEach((p, k) => {
    const rate = (ms: number) => (o.requests * 1000) / ms;
    const oursStat = summarize(ours.map((r) => rate(r.ms[k])));
    const mbs = (reqs: number) => ((reqs * p.bytes) / 2 ** 20).toFixed(1);
    const refs = [...qemu].filter(([, runs]) => runs.length > 0);
    if (refs.length === 0) {
      rows.push(measuredRow({
        section: "blockio",
        name: `virtio-blk ${p.name}, requests/s`,
        unit: "req/s",
        better: "higher",
        ours: oursStat,
        note: `${mbs(oursStat.median)} MiB/s; QEMU skipped: ` +
          (o.qemuInstalled ? "no runs" : "qemu-system-x86_64 is not installed"),
      }));
    }
    for (const [f, runs] of refs) {
      const ref = summarize(runs.map((c) => rate((c[k] / hz) * 1000)));
      rows.push(measuredRow({
        section: "blockio",
        name: `virtio-blk ${p.name}, requests/s vs ${qemuLabel(f as "pc-kvm")}`,
        unit: "req/s",
        better: "higher",
        ours: oursStat,
        reference: ref,
        referenceName: qemuLabel(f as "pc-kvm"),
        note: `${mbs(oursStat.median)} vs ${mbs(ref.median)} MiB/s; ${o.requests} requests, ` +
          `one in flight; QEMU timed by guest TSC at ${(hz / 1e9).toFixed(2)} GHz`,
      }));
    }
  });
  if (o.qemuInstalled && o.pcKvmReps === 0) {
    rows.push(skippedRow("blockio", "vs QEMU pc KVM", "pc KVM runs disabled"));
  }
  return rows;
}

/** The rows when block I/O cannot be measured (kept for hosts without KVM). */
export function blockIoSkipped(why: string): Row[] {
  return BLK_PHASES.map((p) => skippedRow("blockio", `virtio-blk ${p.name}`, why));
}
