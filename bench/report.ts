/**
 * The benchmark's results: rows (our figure, the reference measured in the
 * same run, their ratio), the printed table, the JSON document, and the host
 * description that goes with them.
 *
 * @example
 * ```ts
 * import { formatTable, measuredRow } from "./report.ts";
 * import { summarize } from "./stats.ts";
 * const row = measuredRow({
 *   section: "exits", name: "PIO exit (pioloop, KVM)", unit: "µs", better: "lower",
 *   ours: summarize([8.1]), reference: summarize([7.9]), referenceName: "C KVM loop",
 * });
 * console.log(formatTable([row]));
 * ```
 * @module
 */

import { ratio, spread, type Stat } from "./stats.ts";

/** Which direction of a figure is good. */
export type Better = "lower" | "higher";

/** One line of the results. */
export interface Row {
  /** "exits", "boot", "stages", "compute", "memory", "blockio", "density". */
  section: string;
  name: string;
  unit: string;
  better: Better;
  ours?: Stat;
  reference?: Stat;
  /** What the reference is ("C KVM loop", "QEMU 7.2 microvm KVM"). */
  referenceName?: string;
  /** ours.median / reference.median. */
  ratio?: number;
  /** Why a figure is missing, or how to read it. */
  note?: string;
}

/** A row with both figures measured; the ratio is computed. */
export function measuredRow(r: Omit<Row, "ratio">): Row {
  const row: Row = { ...r };
  if (r.ours && r.reference) row.ratio = ratio(r.ours, r.reference);
  return row;
}

/** A row that could not be measured, with the reason. */
export function skippedRow(section: string, name: string, why: string): Row {
  return { section, name, unit: "", better: "lower", note: `skipped: ${why}` };
}

/** A number with 3 significant digits (integers above 1000 in full), for the table. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a === 0) return "0";
  return v.toPrecision(3);
}

/** "8.10 (7.90-8.40)": median and range; just the median for a single sample. */
export function formatStat(s: Stat | undefined, unit: string): string {
  if (!s) return "-";
  const u = unit ? ` ${unit}` : "";
  if (s.n === 1 || s.min === s.max) return `${formatNumber(s.median)}${u}`;
  return `${formatNumber(s.median)}${u} (${formatNumber(s.min)}-${formatNumber(s.max)})`;
}

/** "1.04x" with a word saying whether that is good for this row. */
export function formatRatio(row: Row): string {
  if (row.ratio === undefined) return "-";
  const r = row.ratio;
  const good = row.better === "lower" ? r <= 1 : r >= 1;
  const x = r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
  return `${x}x ${good ? "(ours better)" : "(ref better)"}`;
}

const HEADERS = ["measurement", "vmmctl: median (min-max)", "reference", "ours/ref"];

/** The results as an aligned text table, one block per section; notes on their own lines. */
export function formatTable(rows: readonly Row[]): string {
  const cells: string[][] = [];
  const notes = new Map<number, string>();
  let section = "";
  const lines: (string[] | string)[] = [];
  for (const row of rows) {
    if (row.section !== section) {
      section = row.section;
      lines.push(`== ${section} ==`);
    }
    const ref = row.reference
      ? `${row.referenceName ?? "reference"}: ${formatStat(row.reference, row.unit)}`
      : row.referenceName
      ? `${row.referenceName}: -`
      : "-";
    const c = [row.name, formatStat(row.ours, row.unit), ref, formatRatio(row)];
    cells.push(c);
    lines.push(c);
    if (row.note) notes.set(lines.length - 1, row.note);
  }
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const fmt = (c: string[]) => c.map((s, i) => s.padEnd(widths[i])).join("  ").trimEnd();
  const out = [fmt(HEADERS), widths.map((w) => "-".repeat(w)).join("  ")];
  lines.forEach((l, i) => {
    out.push(typeof l === "string" ? l : fmt(l));
    const note = notes.get(i);
    if (note) out.push(`    ${note}`);
  });
  return out.join("\n");
}

/** What the JSON says about the machine the figures come from. */
export interface HostDescription {
  cpuModel: string;
  cores: number;
  kernel: string;
  /** A guess: "yes" when /proc/cpuinfo has the `hypervisor` flag (we are a guest ourselves). */
  nestedVirtualization: "yes" | "no";
  memoryBytes: number;
}

/** CPU model, logical CPU count and the hypervisor flag from /proc/cpuinfo text. */
export function parseCpuinfo(text: string): { model: string; cpus: number; hypervisor: boolean } {
  let model = "unknown";
  let cpus = 0;
  let hypervisor = false;
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const key = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    if (key === "processor") cpus++;
    else if (key === "model name" && model === "unknown") model = value;
    else if (key === "flags" && value.split(/\s+/).includes("hypervisor")) hypervisor = true;
  }
  return { model, cpus, hypervisor };
}

/** The whole JSON document `deno task bench` writes. */
export interface BenchDocument {
  schema: "vmmctl-bench/1";
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  /** `git describe --always --dirty`, or "unknown". */
  revision: string;
  host: HostDescription;
  deno: { deno: string; v8: string; typescript: string };
  /** First line of `qemu-system-x86_64 --version`, or null when it is missing. */
  qemu: string | null;
  /** First line of `cc --version`, or null. */
  cc: string | null;
  /** 1-minute load average when the run started and ended (other work skews the figures). */
  loadAverage: { start: number; end: number };
  rows: Row[];
}

/** Checks a parsed document's shape (for readers of old result files, and the tests). */
export function checkDocument(doc: unknown): BenchDocument {
  const d = doc as Record<string, unknown>;
  const fail = (what: string): never => {
    throw new Error(`Bench result document: ${what}`);
  };
  if (typeof d !== "object" || d === null) fail("not an object");
  if (d.schema !== "vmmctl-bench/1") fail(`schema is "${d.schema}", not "vmmctl-bench/1"`);
  for (const k of ["startedAt", "finishedAt", "revision"]) {
    if (typeof d[k] !== "string") fail(`"${k}" is not a string`);
  }
  const host = d.host as Record<string, unknown>;
  if (typeof host !== "object" || host === null) fail(`"host" is missing`);
  if (typeof host.cpuModel !== "string" || typeof host.cores !== "number") {
    fail(`"host" lacks cpuModel or cores`);
  }
  if (host.nestedVirtualization !== "yes" && host.nestedVirtualization !== "no") {
    fail(`"host.nestedVirtualization" is "${host.nestedVirtualization}"`);
  }
  if (d.qemu !== null && typeof d.qemu !== "string") fail(`"qemu" is neither null nor a string`);
  if (!Array.isArray(d.rows)) fail(`"rows" is not an array`);
  for (const r of d.rows as Record<string, unknown>[]) {
    if (typeof r.section !== "string" || typeof r.name !== "string") {
      fail(`a row lacks section or name`);
    }
    if (r.ours === undefined && r.note === undefined) fail(`row "${r.name}" has no figure or note`);
    if (r.ratio !== undefined && (r.ours === undefined || r.reference === undefined)) {
      fail(`row "${r.name}" has a ratio without both figures`);
    }
  }
  return d as unknown as BenchDocument;
}

/** Relative spread of a row's own figure, for warnings ("noisy: 35% spread"). */
export function rowSpread(row: Row): number | undefined {
  return row.ours ? spread(row.ours) : undefined;
}
