/**
 * Memory: the VMM process's resident set minus the guest RAM it holds, right
 * after boot (first serial byte) and after idling, for `vmmctl up` and QEMU
 * on the same idle guest (guests/bench_idle.asm). The guest RAM mapping is
 * found in /proc/PID/smaps as the anonymous mapping of (about) the RAM size.
 *
 * @module
 */

import { guestPath } from "../guests/images.ts";
import { BOOT_MEMORY_MIB, runQemuFlavour, runVmmctl } from "./boot.ts";
import type { ChildRun } from "./child.ts";
import { type QemuFlavour, qemuLabel } from "./qemu_ref.ts";
import { measuredRow, type Row, skippedRow } from "./report.ts";
import { summarize } from "./stats.ts";

/** One mapping of /proc/PID/smaps. */
export interface SmapsMapping {
  start: bigint;
  end: bigint;
  /** The path column ("" for anonymous memory, "[heap]" ...). */
  path: string;
  sizeKiB: number;
  rssKiB: number;
}

const HEADER = /^([0-9a-f]+)-([0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\d+\s*(.*)$/;

/** Parses /proc/PID/smaps text. */
export function parseSmaps(text: string): SmapsMapping[] {
  const out: SmapsMapping[] = [];
  let cur: SmapsMapping | undefined;
  for (const line of text.split("\n")) {
    const h = HEADER.exec(line);
    if (h) {
      cur = {
        start: BigInt("0x" + h[1]),
        end: BigInt("0x" + h[2]),
        path: h[3].trim(),
        sizeKiB: 0,
        rssKiB: 0,
      };
      out.push(cur);
      continue;
    }
    const m = /^(Size|Rss):\s+(\d+) kB$/.exec(line);
    if (m && cur) {
      if (m[1] === "Size") cur.sizeKiB = Number(m[2]);
      else cur.rssKiB = Number(m[2]);
    }
  }
  return out;
}

/** Slack for a VMM's own alignment or guard pages around its RAM block. */
const RAM_SLACK_KIB = 8 * 1024;

/**
 * Resident KiB of the guest RAM: anonymous mappings whose size is the RAM
 * size up to {@link RAM_SLACK_KIB} more (QEMU aligns its RAM block).
 */
export function guestRamRssKiB(maps: readonly SmapsMapping[], memoryKiB: number): number {
  return maps
    .filter((m) =>
      m.path === "" && m.sizeKiB >= memoryKiB && m.sizeKiB <= memoryKiB + RAM_SLACK_KIB
    )
    .reduce((n, m) => n + m.rssKiB, 0);
}

/** VmRSS in KiB from /proc/PID/status text. */
export function vmRssKiB(status: string): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!m) throw new Error("No VmRSS line in /proc/PID/status");
  return Number(m[1]);
}

/** One reading of a process. */
export interface MemorySample {
  rssKiB: number;
  guestRamKiB: number;
}

/** Reads VmRSS and the guest RAM's resident size of `pid`. */
export async function sampleMemory(pid: number, memoryKiB: number): Promise<MemorySample> {
  const [status, smaps] = await Promise.all([
    Deno.readTextFile(`/proc/${pid}/status`),
    Deno.readTextFile(`/proc/${pid}/smaps`),
  ]);
  return { rssKiB: vmRssKiB(status), guestRamKiB: guestRamRssKiB(parseSmaps(smaps), memoryKiB) };
}

/** Options of {@link benchMemory}. */
export interface MemoryBenchOptions {
  reps: number;
  /** How long the guest idles before the second reading. */
  idleMs: number;
  /** QEMU flavours to compare with (empty when QEMU is missing). */
  flavours: QemuFlavour[];
  /** Why QEMU is not compared, when `flavours` is empty. */
  noQemu?: string;
  tempDir: string;
  log: (line: string) => void;
}

type Readings = { boot: MemorySample; idle: MemorySample };

async function measure(
  start: (
    onFirstByte: (pid: number, kill: (s?: Deno.Signal) => void) => Promise<void>,
  ) => Promise<ChildRun>,
  idleMs: number,
): Promise<Readings> {
  const memoryKiB = BOOT_MEMORY_MIB * 1024;
  let readings: Readings | undefined;
  let error: unknown;
  const run = await start(async (pid, kill) => {
    try {
      const boot = await sampleMemory(pid, memoryKiB);
      await new Promise((r) => setTimeout(r, idleMs));
      readings = { boot, idle: await sampleMemory(pid, memoryKiB) };
    } catch (e) {
      error = e;
    } finally {
      kill("SIGTERM");
    }
  });
  if (error) throw error;
  if (!readings) {
    throw new Error(`the VMM exited (${run.status}) before it was measured: ${run.stderr.trim()}`);
  }
  return readings;
}

/** The memory rows. */
export async function benchMemory(o: MemoryBenchOptions): Promise<Row[]> {
  const kernel = guestPath("bench_idle");
  const timeoutMs = o.idleMs + 60_000;
  const ours: Readings[] = [];
  const refs = new Map<QemuFlavour, Readings[]>(o.flavours.map((f) => [f, []]));
  for (let i = 0; i < o.reps; i++) {
    ours.push(await measure((cb) => runVmmctl(o.tempDir, { kernel, timeoutMs }, cb), o.idleMs));
    for (const f of o.flavours) {
      refs.get(f)!.push(
        await measure((cb) => runQemuFlavour(f, { kernel, timeoutMs }, cb), o.idleMs),
      );
    }
    const r = ours[i];
    o.log(
      `  rep ${i + 1}/${o.reps}: vmmctl RSS ${(r.idle.rssKiB / 1024).toFixed(1)} MiB, ` +
        `guest RAM ${(r.idle.guestRamKiB / 1024).toFixed(1)} MiB`,
    );
  }
  const mib = (kib: number) => kib / 1024;
  const metrics = [
    {
      name: "VMM RSS minus guest RAM, after boot",
      f: (r: Readings) => mib(r.boot.rssKiB - r.boot.guestRamKiB),
    },
    {
      name: `VMM RSS minus guest RAM, idle ${o.idleMs} ms`,
      f: (r: Readings) => mib(r.idle.rssKiB - r.idle.guestRamKiB),
    },
    { name: "guest RAM resident, idle", f: (r: Readings) => mib(r.idle.guestRamKiB) },
    { name: "total RSS, idle", f: (r: Readings) => mib(r.idle.rssKiB) },
  ];
  const rows: Row[] = [];
  for (const m of metrics) {
    const oursStat = summarize(ours.map(m.f));
    if (o.flavours.length === 0) {
      rows.push(measuredRow({
        section: "memory",
        name: `${m.name} (1 vCPU)`,
        unit: "MiB",
        better: "lower",
        ours: oursStat,
        note: o.noQemu,
      }));
    }
    for (const [f, runs] of refs) {
      rows.push(measuredRow({
        section: "memory",
        name: `${m.name} (1 vCPU) vs ${qemuLabel(f)}`,
        unit: "MiB",
        better: "lower",
        ours: oursStat,
        reference: summarize(runs.map(m.f)),
        referenceName: qemuLabel(f),
      }));
    }
  }
  rows.push(skippedRow("memory", "N vCPUs", "multiprocessor not implemented yet"));
  return rows;
}
