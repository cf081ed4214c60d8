/**
 * Guest compute: the cpl3 guest's LCG loop (64-bit ring 3, runs natively on
 * this host's nested KVM) under `vmmctl up`, QEMU microvm with KVM and QEMU
 * microvm with TCG. Each VMM's `iters=0` run time is subtracted, so only the
 * loop is compared; the rows are ns per iteration and the speed-up over TCG.
 *
 * @module
 */

import { guestPath } from "../guests/images.ts";
import type { ChildRun } from "./child.ts";
import { checkRun, runQemuFlavour, runVmmctl } from "./boot.ts";
import { qemuLabel } from "./qemu_ref.ts";
import { measuredRow, type Row } from "./report.ts";
import { median, summarize } from "./stats.ts";

/** cpl3's exit status under both VMMs (debug exit 0x15). */
const CPL3_STATUS = 43;

/** Options of {@link benchCompute}. */
export interface ComputeBenchOptions {
  reps: number;
  iterations: number;
  tempDir: string;
  qemuInstalled: boolean;
  log: (line: string) => void;
}

/** Loop-only ns per iteration from runs with `iterations` and the median `iters=0` run. */
export function nsPerIteration(runs: ChildRun[], empty: ChildRun[], iterations: number): number[] {
  const base = median(empty.map((r) => r.exitMs));
  return runs.map((r) => ((r.exitMs - base) * 1e6) / iterations);
}

/** The compute rows. */
export async function benchCompute(o: ComputeBenchOptions): Promise<Row[]> {
  const kernel = guestPath("cpl3");
  type Runner = (cmdline: string) => Promise<ChildRun>;
  const vmms: { label: string; run: Runner }[] = [
    { label: "vmmctl", run: (c) => runVmmctl(o.tempDir, { kernel, cmdline: c }) },
  ];
  if (o.qemuInstalled) {
    for (const f of ["microvm-kvm", "microvm-tcg"] as const) {
      vmms.push({ label: qemuLabel(f), run: (c) => runQemuFlavour(f, { kernel, cmdline: c }) });
    }
  }
  const failures: string[] = [];
  const full = new Map<string, ChildRun[]>();
  const empty = new Map<string, ChildRun[]>();
  for (let i = 0; i < o.reps; i++) {
    for (const v of vmms) {
      for (const [iters, into] of [[o.iterations, full], [0, empty]] as const) {
        const what = `${v.label} cpl3 iters=${iters}`;
        let r = await v.run(`iters=${iters}`);
        try {
          checkRun(what, r, CPL3_STATUS);
        } catch (e) {
          // One retry, and the failure goes into the row's note: a crash is a finding too.
          failures.push(e instanceof Error ? e.message.split(";")[0] : String(e));
          o.log(`  ${failures.at(-1)}: retrying once`);
          r = await v.run(`iters=${iters}`);
          checkRun(what, r, CPL3_STATUS);
        }
        into.set(v.label, [...into.get(v.label) ?? [], r]);
      }
    }
    o.log(
      `  rep ${i + 1}/${o.reps}: ` +
        vmms.map((v) => `${v.label} ${full.get(v.label)![i].exitMs.toFixed(0)} ms`).join(", "),
    );
  }
  const ns = new Map<string, number[]>();
  for (const v of vmms) {
    ns.set(v.label, nsPerIteration(full.get(v.label)!, empty.get(v.label)!, o.iterations));
  }
  const note = `${
    o.iterations.toLocaleString("en-US")
  } iterations; each VMM's iters=0 run subtracted`;
  const ours = summarize(ns.get("vmmctl")!);
  const rows: Row[] = [];
  const kvm = ns.get(qemuLabel("microvm-kvm"));
  const tcg = ns.get(qemuLabel("microvm-tcg"));
  rows.push(measuredRow({
    section: "compute",
    name: "cpl3 LCG loop, ns per iteration",
    unit: "ns",
    better: "lower",
    ours,
    reference: kvm ? summarize(kvm) : undefined,
    referenceName: kvm ? qemuLabel("microvm-kvm") : undefined,
    note: kvm ? note : `${note}; QEMU skipped: qemu-system-x86_64 is not installed`,
  }));
  if (tcg && kvm) {
    const tcgMedian = median(tcg);
    rows.push(measuredRow({
      section: "compute",
      name: "speed-up over QEMU TCG (same loop)",
      unit: "x",
      better: "higher",
      ours: summarize(ns.get("vmmctl")!.map((v) => tcgMedian / v)),
      reference: summarize(kvm.map((v) => tcgMedian / v)),
      referenceName: "QEMU microvm KVM",
      note: `QEMU TCG: ${tcgMedian.toFixed(2)} ns per iteration`,
    }));
  }
  return rows;
}
