/**
 * What every fuzz target is: a name, a seeded run of some inputs, and the
 * findings it reports (an exception that escaped, a broken invariant). A
 * target never throws itself: it turns failures into findings, so one run
 * reports all of them.
 *
 * @module
 */

/** One failure, reproducible by `seed` (and `step` within the run). */
export interface Finding {
  target: string;
  seed: number;
  step: number;
  message: string;
  /** The input (or its start), to turn the finding into a regression test. */
  input?: string;
}

/** What a run did. */
export interface FuzzReport {
  target: string;
  seed: number;
  /** Inputs (or operations) tried. */
  inputs: number;
  findings: Finding[];
  /** Free-form counters (accesses refused by the memory gateway, loader errors seen...). */
  counts: Record<string, number>;
}

/** A fuzz target. */
export interface FuzzTarget {
  readonly name: string;
  /** What one input is, for reports. */
  readonly unit: string;
  /** Runs `inputs` inputs from `seed`. */
  run(seed: number, inputs: number): FuzzReport | Promise<FuzzReport>;
  /** Inputs of the default-suite run (a second or so) and of `--long`. */
  readonly short: number;
  readonly long: number;
}

/** Collects findings and counters for one run. */
export class Recorder {
  readonly report: FuzzReport;

  constructor(target: string, seed: number) {
    this.report = { target, seed, inputs: 0, findings: [], counts: {} };
  }

  /** Records a finding (at most 50 per run: the first ones are what matters). */
  find(step: number, message: string, input?: string): void {
    if (this.report.findings.length < 50) {
      const { target, seed } = this.report;
      this.report.findings.push({ target, seed, step, message, input: input?.slice(0, 4000) });
    }
  }

  count(name: string, n = 1): void {
    this.report.counts[name] = (this.report.counts[name] ?? 0) + n;
  }
}

/** A short description of an unexpected exception, with the top of its stack. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return `non-Error thrown: ${String(e)}`;
  const frames = (e.stack ?? "").split("\n").slice(1, 4).map((l) => l.trim()).join(" | ");
  return `${e.name}: ${e.message} [${frames}]`;
}
