/**
 * `deno task bench [--quick] [--only SECTION,...]`: vmmctl's benchmarks,
 * each against a reference measured in the same run on the same guest (a C
 * KVM loop, QEMU with KVM and with TCG). Prints a table and writes
 * bench/out/results-<timestamp>.json. See README "Benchmarks".
 *
 * @module
 */

import { parseArgs } from "node:util";
import { benchBoot, benchStages } from "./boot.ts";
import { benchCompute } from "./compute.ts";
import { benchDensity } from "./density.ts";
import { benchExits, compileKvmLoop } from "./exits.ts";
import { benchMemory } from "./memory.ts";
import { benchBlockIo } from "./blockio.ts";
import { describeHost, firstLineOf, gitRevision, loadAverage } from "./host_info.ts";
import { type BenchDocument, formatTable, type Row, skippedRow } from "./report.ts";

/** The sections, in the order they run. */
export const SECTIONS = [
  "exits",
  "boot",
  "stages",
  "compute",
  "memory",
  "density",
  "blockio",
] as const;
/** A section name. */
export type Section = typeof SECTIONS[number];

/** How much work a run does. */
export interface BenchPlan {
  quick: boolean;
  /** Repetitions of each measurement. */
  reps: number;
  /** Exits per exit-benchmark run. */
  exitCount: number;
  /** Runs of QEMU pc+KVM per guest (seconds each here). */
  pcKvmReps: number;
  /** cpl3 loop iterations. */
  computeIterations: number;
  /** How long the idle guest idles before the memory reading. */
  idleMs: number;
  /** Length of one in-process density sample. */
  densityWindowMs: number;
  /** virtio-blk requests per phase. */
  blkRequests: number;
}

/** The plan for a full or a `--quick` run (the quick one stays under 2 minutes here). */
export function benchPlan(quick: boolean): BenchPlan {
  return quick
    ? {
      quick,
      reps: 3,
      exitCount: 20_000,
      pcKvmReps: 0,
      computeIterations: 200_000_000,
      idleMs: 300,
      densityWindowMs: 1000,
      blkRequests: 50,
    }
    : {
      quick,
      reps: 7,
      exitCount: 200_000,
      pcKvmReps: 3,
      computeIterations: 1_000_000_000,
      idleMs: 2000,
      densityWindowMs: 3000,
      blkRequests: 400,
    };
}

/** What a section gets. */
export interface SectionContext {
  plan: BenchPlan;
  tempDir: string;
  qemuInstalled: boolean;
  log: (line: string) => void;
}

async function runSection(name: Section, ctx: SectionContext): Promise<Row[]> {
  switch (name) {
    case "exits":
      return benchExits({
        count: ctx.plan.exitCount,
        reps: ctx.plan.reps,
        cLoop: await compileKvmLoop(ctx.tempDir),
        tempDir: ctx.tempDir,
        extraAccels: ["openbsd-on-kvm"],
        extraCount: Math.max(1000, ctx.plan.exitCount / 10),
        log: ctx.log,
      });
    case "boot":
      return benchBoot({
        reps: ctx.plan.reps,
        pcKvmReps: ctx.plan.pcKvmReps,
        tempDir: ctx.tempDir,
        qemuInstalled: ctx.qemuInstalled,
        log: ctx.log,
      });
    case "stages":
      return benchStages({ reps: ctx.plan.reps, tempDir: ctx.tempDir });
    case "compute":
      return benchCompute({
        reps: ctx.plan.reps,
        iterations: ctx.plan.computeIterations,
        tempDir: ctx.tempDir,
        qemuInstalled: ctx.qemuInstalled,
        log: ctx.log,
      });
    case "memory":
      return benchMemory({
        reps: Math.min(ctx.plan.reps, 3),
        idleMs: ctx.plan.idleMs,
        flavours: !ctx.qemuInstalled
          ? []
          : ctx.plan.pcKvmReps > 0
          ? ["microvm-kvm", "pc-kvm"]
          : ["microvm-kvm"],
        noQemu: ctx.qemuInstalled ? undefined : "QEMU skipped: qemu-system-x86_64 is not installed",
        tempDir: ctx.tempDir,
        log: ctx.log,
      });
    case "density":
      return benchDensity({
        reps: ctx.plan.reps,
        windowMs: ctx.plan.densityWindowMs,
        qemuInstalled: ctx.qemuInstalled,
        log: ctx.log,
      });
    case "blockio":
      return benchBlockIo({
        reps: Math.min(ctx.plan.reps, 3),
        requests: ctx.plan.blkRequests,
        pcKvmReps: Math.max(1, Math.min(ctx.plan.pcKvmReps, 2)),
        qemuInstalled: ctx.qemuInstalled,
        tempDir: ctx.tempDir,
        log: ctx.log,
      });
  }
}

/** Parses the command line; throws with a usage message on nonsense. */
export function parseBenchArgs(args: string[]): { quick: boolean; only: Section[] } {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    throw new Error(
      `usage: deno task bench [--quick] [--only ${SECTIONS.join(",")}]`,
    );
  }
  let only: Section[] = [...SECTIONS];
  if (values.only !== undefined) {
    only = values.only.split(",").map((s) => s.trim()) as Section[];
    for (const s of only) {
      if (!SECTIONS.includes(s)) {
        throw new Error(`Unknown section "${s}"; use ${SECTIONS.join(", ")}`);
      }
    }
  }
  return { quick: values.quick, only };
}

/** Runs the benchmarks; returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  let opts;
  try {
    opts = parseBenchArgs(args);
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    return 2;
  }
  const plan = benchPlan(opts.quick);
  const startedAt = new Date();
  const loadStart = loadAverage();
  const host = describeHost();
  const [revision, qemu, cc] = await Promise.all([
    gitRevision(),
    firstLineOf("qemu-system-x86_64", ["--version"]),
    firstLineOf("cc", ["--version"]),
  ]);
  const log = (line: string) => console.error(line);
  log(`vmmctl bench (${opts.quick ? "quick" : "full"}) at ${revision}`);
  log(
    `host: ${host.cpuModel}, ${host.cores} cores, ${host.kernel}, ` +
      `nested virtualization: ${host.nestedVirtualization}; load ${loadStart.toFixed(2)}`,
  );
  if (loadStart > host.cores) {
    log(
      `warning: load average ${loadStart.toFixed(2)} is above ${host.cores}: figures will be noisy`,
    );
  }
  log(`deno ${Deno.version.deno}; ${qemu ?? "no qemu-system-x86_64"}; ${cc ?? "no cc"}`);
  const tempDir = await Deno.makeTempDir({ prefix: "vmmctl-bench-" });
  const rows: Row[] = [];
  try {
    for (const s of opts.only) {
      log(`[${s}]`);
      const t0 = performance.now();
      try {
        rows.push(...await runSection(s, { plan, tempDir, log, qemuInstalled: qemu !== null }));
      } catch (e) {
        // One broken section must not cost the others' figures.
        const why = e instanceof Error ? e.stack ?? e.message : String(e);
        log(`  ${s} failed: ${why}`);
        rows.push(skippedRow(s, `${s} (whole section)`, `failed: ${why.split("\n")[0]}`));
      }
      log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  } finally {
    await Deno.remove(tempDir, { recursive: true }).catch(() => {});
  }
  const doc: BenchDocument = {
    schema: "vmmctl-bench/1",
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    quick: opts.quick,
    revision,
    host,
    deno: { ...Deno.version },
    qemu,
    cc,
    loadAverage: { start: loadStart, end: loadAverage() },
    rows,
  };
  console.log(formatTable(rows));
  const outDir = new URL("./out/", import.meta.url).pathname;
  await Deno.mkdir(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const path = `${outDir}results-${stamp}.json`;
  await Deno.writeTextFile(path, JSON.stringify(doc, null, 2) + "\n");
  log(`wrote ${path}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
