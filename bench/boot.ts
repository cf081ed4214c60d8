/**
 * Start-up and boot: wall time from spawn to the guest's first serial byte
 * and to the process's exit (right after the guest's exit-port write), and
 * the process's CPU time, for `vmmctl up` and QEMU (microvm/pc, KVM/TCG) on
 * the same image; plus the stages inside vmmctl (bench/stage_child.ts).
 *
 * @module
 */

import { guestPath } from "../guests/images.ts";
import { type ChildRun, timeChild, vmmctlCommand, vmmctlToml } from "./child.ts";
import { QEMU, qemuBenchArgs, type QemuFlavour, qemuLabel, qemuUnsupported } from "./qemu_ref.ts";
import { QEMU_FLAVOURS } from "./qemu_ref.ts";
import { measuredRow, type Row, skippedRow } from "./report.ts";
import type { StageReport } from "./stage_child.ts";
import { type Stat, summarize } from "./stats.ts";

/** A guest the start-up benchmark boots. */
export interface BootGuest {
  name: "hello" | "demo";
  /** Exit status of `vmmctl up` (and QEMU) when the guest ends normally. */
  status: number;
  /** Waits for 8259 timer interrupts (so it cannot run on microvm). */
  needsPic: boolean;
}

/** hello (prints and exits at once) and demo (10 timer ticks at 100 Hz, RTC, power-off). */
export const BOOT_GUESTS: readonly BootGuest[] = [
  { name: "hello", status: 33, needsPic: false },
  { name: "demo", status: 0, needsPic: true },
];

/** Guest RAM for every VMM in these benchmarks. */
export const BOOT_MEMORY_MIB = 64;

/** Options of {@link benchBoot}. */
export interface BootBenchOptions {
  reps: number;
  /** Runs of QEMU pc with KVM (SeaBIOS runs in KVM's emulator here: seconds each); 0 skips. */
  pcKvmReps: number;
  tempDir: string;
  qemuInstalled: boolean;
  log: (line: string) => void;
}

/** Runs `vmmctl up` on a config written to `tempDir`. */
export async function runVmmctl(
  tempDir: string,
  o: { kernel: string; cmdline?: string; memoryMiB?: number; timeoutMs?: number },
  onFirstByte?: Parameters<typeof timeChild>[2]["onFirstByte"],
): Promise<ChildRun> {
  const cfg = `${tempDir}/bench-vm.toml`;
  await Deno.writeTextFile(
    cfg,
    vmmctlToml({ kernel: o.kernel, cmdline: o.cmdline, memoryMiB: o.memoryMiB ?? BOOT_MEMORY_MIB }),
  );
  const v = vmmctlCommand();
  return await timeChild(v.program, [...v.args, "up", cfg], {
    timeoutMs: o.timeoutMs ?? 60_000,
    onFirstByte,
  });
}

/** Runs QEMU in flavour `f`. */
export async function runQemuFlavour(
  f: QemuFlavour,
  o: { kernel: string; cmdline?: string; memoryMiB?: number; timeoutMs?: number },
  onFirstByte?: Parameters<typeof timeChild>[2]["onFirstByte"],
): Promise<ChildRun> {
  const args = qemuBenchArgs(f, { ...o, memoryMiB: o.memoryMiB ?? BOOT_MEMORY_MIB });
  return await timeChild(QEMU, args, { timeoutMs: o.timeoutMs ?? 60_000, onFirstByte });
}

/** Throws unless the run ended with `status` and printed something. */
export function checkRun(what: string, r: ChildRun, status: number): void {
  if (r.timedOut) throw new Error(`${what} timed out; stderr: ${r.stderr.trim()}`);
  if (r.status !== status) {
    throw new Error(
      `${what} exited with ${r.status}, not ${status}; ` +
        `output: ${JSON.stringify(r.stdout.slice(-300))}; stderr: ${r.stderr.trim()}`,
    );
  }
  if (r.firstByteMs === undefined) throw new Error(`${what} printed nothing`);
}

const METRICS = [
  { key: "firstByteMs", label: "spawn to first serial byte", unit: "ms" },
  { key: "exitMs", label: "spawn to exit", unit: "ms" },
  { key: "cpuMs", label: "CPU time (user+sys)", unit: "ms" },
] as const;

function stat(runs: ChildRun[], key: "firstByteMs" | "exitMs" | "cpuMs"): Stat {
  return summarize(runs.map((r) => r[key] as number));
}

/** The start-up rows for every boot guest against every QEMU flavour that can run it. */
export async function benchBoot(o: BootBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  for (const g of BOOT_GUESTS) {
    const kernel = guestPath(g.name);
    const ours: ChildRun[] = [];
    const refs = new Map<QemuFlavour, ChildRun[] | string>();
    for (const f of QEMU_FLAVOURS) {
      const why = !o.qemuInstalled
        ? "qemu-system-x86_64 is not installed"
        : qemuUnsupported(f, g.needsPic) ??
          (f === "pc-kvm" && o.pcKvmReps === 0
            ? "not in --quick (SeaBIOS runs in KVM's instruction emulator here: seconds per boot)"
            : undefined);
      refs.set(f, why ?? []);
    }
    for (let i = 0; i < o.reps; i++) {
      const r = await runVmmctl(o.tempDir, { kernel });
      checkRun(`vmmctl up ${g.name}`, r, g.status);
      ours.push(r);
      for (const [f, runs] of refs) {
        if (typeof runs === "string") continue;
        if (f === "pc-kvm" && i >= o.pcKvmReps) continue;
        const q = await runQemuFlavour(f, { kernel });
        checkRun(`${qemuLabel(f)} ${g.name}`, q, g.status);
        runs.push(q);
      }
      o.log(
        `  ${g.name} rep ${i + 1}/${o.reps}: vmmctl first byte ${r.firstByteMs!.toFixed(0)} ms, ` +
          `exit ${r.exitMs.toFixed(0)} ms, CPU ${r.cpuMs.toFixed(0)} ms`,
      );
    }
    for (const m of METRICS) {
      let measured = 0;
      for (const [f, runs] of refs) {
        if (typeof runs === "string") continue;
        measured++;
        rows.push(measuredRow({
          section: "boot",
          name: `${g.name}: ${m.label} vs ${qemuLabel(f)}`,
          unit: m.unit,
          better: "lower",
          ours: stat(ours, m.key),
          reference: stat(runs, m.key),
          referenceName: qemuLabel(f),
        }));
      }
      if (measured === 0) {
        rows.push(measuredRow({
          section: "boot",
          name: `${g.name}: ${m.label}`,
          unit: m.unit,
          better: "lower",
          ours: stat(ours, m.key),
        }));
      }
    }
    for (const [f, runs] of refs) {
      if (typeof runs === "string") {
        rows.push(skippedRow("boot", `${g.name} vs ${qemuLabel(f)}`, runs));
      }
    }
  }
  return rows;
}

/** Runs the stage probe once; stage times in ms since spawn, plus "process exit". */
export async function runStageProbe(tempDir: string, kernel: string): Promise<Map<string, number>> {
  const cfg = `${tempDir}/stage-vm.toml`;
  await Deno.writeTextFile(cfg, vmmctlToml({ kernel, memoryMiB: BOOT_MEMORY_MIB }));
  const probe = new URL("./stage_child.ts", import.meta.url).pathname;
  const spawnAbsMs = performance.timeOrigin + performance.now();
  const r = await timeChild(Deno.execPath(), ["run", "--allow-all", "--quiet", probe, cfg], {
    timeoutMs: 60_000,
  });
  if (r.status !== 0) throw new Error(`stage probe failed (${r.status}): ${r.stderr.trim()}`);
  const report = JSON.parse(r.stdout) as StageReport;
  if (report.outcome.kind !== "exit-port") {
    throw new Error(`stage probe: the guest ended with ${JSON.stringify(report.outcome)}`);
  }
  const out = new Map<string, number>();
  out.set("Deno runtime up (performance.timeOrigin)", report.timeOriginMs - spawnAbsMs);
  for (const s of report.stages) out.set(s.name, report.timeOriginMs + s.atMs - spawnAbsMs);
  out.set("process exit", r.exitMs);
  return out;
}

/** The stage rows: each stage's time since spawn (median over `reps` probes of hello). */
export async function benchStages(o: { reps: number; tempDir: string }): Promise<Row[]> {
  const samples = new Map<string, number[]>();
  for (let i = 0; i < o.reps; i++) {
    const stages = await runStageProbe(o.tempDir, guestPath("hello"));
    for (const [name, ms] of stages) samples.set(name, [...samples.get(name) ?? [], ms]);
  }
  const rows: Row[] = [];
  for (const [name, values] of samples) {
    rows.push(measuredRow({
      section: "stages (hello, ms since spawn)",
      name,
      unit: "ms",
      better: "lower",
      ours: summarize(values),
    }));
  }
  rows.sort((a, b) => a.ours!.median - b.ours!.median);
  return rows;
}
