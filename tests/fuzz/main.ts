/**
 * Runs the fuzz targets of tests/fuzz/ directly, seeded and reproducible,
 * and prints per target the inputs tried, counters and every finding with
 * its input (to turn it into a regression test). Exits 1 when anything was
 * found. (`deno task fuzz` runs the same targets as tests, through
 * targets_fuzz_test.ts, beside the other *_fuzz_test.ts files.)
 *
 *   deno run -A tests/fuzz/main.ts                      every target, short run, seed 1
 *   deno run -A tests/fuzz/main.ts --long               the long run (or VMMCTL_FUZZ_LONG=1)
 *   deno run -A tests/fuzz/main.ts --seed 7 --seeds 4   seeds 7..10
 *   deno run -A tests/fuzz/main.ts --target kernels     one target (repeatable)
 *   deno run -A tests/fuzz/main.ts --inputs 100000      inputs per target and seed
 *
 * @module
 */

import { parseArgs } from "node:util";
import { TARGETS } from "./targets.ts";
import type { FuzzReport } from "./target.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    long: { type: "boolean", default: false },
    seed: { type: "string", default: "1" },
    seeds: { type: "string", default: "1" },
    target: { type: "string", multiple: true },
    inputs: { type: "string" },
    json: { type: "boolean", default: false },
  },
});

const long = values.long || Deno.env.get("VMMCTL_FUZZ_LONG") === "1";
const first = Number(values.seed);
const count = Number(values.seeds);
const names = values.target ?? TARGETS.map((t) => t.name);
const unknown = names.filter((n) => !TARGETS.some((t) => t.name === n));
if (unknown.length || !Number.isInteger(first) || !Number.isInteger(count) || count < 1) {
  console.error(
    `fuzz: unknown target ${unknown.join(", ") || "(none)"} or bad --seed/--seeds; ` +
      `targets: ${TARGETS.map((t) => t.name).join(", ")}`,
  );
  Deno.exit(2);
}

const reports: FuzzReport[] = [];
for (const target of TARGETS.filter((t) => names.includes(t.name))) {
  const inputs = values.inputs ? Number(values.inputs) : long ? target.long : target.short;
  for (let seed = first; seed < first + count; seed++) {
    const t0 = performance.now();
    const report = await target.run(seed, inputs);
    reports.push(report);
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(
      `${target.name.padEnd(10)} seed ${seed}: ${report.inputs} ${target.unit} in ${s} s, ` +
        `${report.findings.length} findings  ${JSON.stringify(report.counts)}`,
    );
    for (const f of report.findings) {
      console.log(`  step ${f.step}: ${f.message}`);
      if (f.input !== undefined) console.log(`    input: ${JSON.stringify(f.input).slice(0, 600)}`);
    }
  }
}
if (values.json) console.log(JSON.stringify(reports));
Deno.exit(reports.some((r) => r.findings.length) ? 1 : 0);
