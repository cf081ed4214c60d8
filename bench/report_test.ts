import assert from "node:assert/strict";
import {
  checkDocument,
  formatNumber,
  formatRatio,
  formatStat,
  formatTable,
  measuredRow,
  parseCpuinfo,
  skippedRow,
} from "./report.ts";
import { summarize } from "./stats.ts";

Deno.test("measuredRow computes ours/ref from the medians; skippedRow has only a note", () => {
  const row = measuredRow({
    section: "exits",
    name: "PIO",
    unit: "µs",
    better: "lower",
    ours: summarize([9, 10, 11]),
    reference: summarize([7, 8, 9]),
    referenceName: "C",
  });
  assert.equal(row.ratio, 10 / 8);
  const onlyOurs = measuredRow({
    section: "s",
    name: "n",
    unit: "",
    better: "lower",
    ours: row.ours,
  });
  assert.equal(onlyOurs.ratio, undefined);
  const s = skippedRow("blockio", "virtio-blk", "virtio-blk not available");
  assert.equal(s.note, "skipped: virtio-blk not available");
  assert.equal(s.ours, undefined);
});

Deno.test("formatNumber keeps 3 significant digits and groups thousands", () => {
  assert.equal(formatNumber(8.123), "8.12");
  assert.equal(formatNumber(45.28), "45.3");
  assert.equal(formatNumber(259.4), "259");
  assert.equal(formatNumber(125000.4), "125,000");
  assert.equal(formatNumber(0.01234), "0.0123");
  assert.equal(formatNumber(0), "0");
});

Deno.test("formatStat shows the range only when the samples differ", () => {
  assert.equal(formatStat(summarize([8, 9, 10]), "µs"), "9.00 µs (8.00-10.0)");
  assert.equal(formatStat(summarize([3, 3]), "ms"), "3.00 ms");
  assert.equal(formatStat(undefined, "ms"), "-");
});

Deno.test("formatRatio says which side is better for lower- and higher-is-better rows", () => {
  const base = { section: "s", name: "n", unit: "" };
  assert.equal(formatRatio({ ...base, better: "lower", ratio: 1.337 }), "1.34x (ref better)");
  assert.equal(formatRatio({ ...base, better: "lower", ratio: 0.5 }), "0.50x (ours better)");
  assert.equal(formatRatio({ ...base, better: "higher", ratio: 12.34 }), "12.3x (ours better)");
  assert.equal(formatRatio({ ...base, better: "lower" }), "-");
});

Deno.test("formatTable: aligned columns, section headers, notes under their row", () => {
  const rows = [
    measuredRow({
      section: "exits",
      name: "PIO",
      unit: "µs",
      better: "lower",
      ours: summarize([10]),
      reference: summarize([8]),
      referenceName: "C",
      note: "target 1.10x",
    }),
    skippedRow("blockio", "virtio-blk 4k random read", "virtio-blk not available"),
  ];
  const lines = formatTable(rows).split("\n");
  assert.match(lines[0], /^measurement\s+vmmctl: median \(min-max\)\s+reference\s+ours\/ref$/);
  assert.equal(lines[2], "== exits ==");
  assert.match(lines[3], /^PIO\s+10\.0 µs\s+C: 8\.00 µs\s+1\.25x \(ref better\)$/);
  assert.equal(lines[4], "    target 1.10x");
  assert.equal(lines[5], "== blockio ==");
  assert.match(lines[6], /^virtio-blk 4k random read\s+-\s+-\s+-$/);
  assert.equal(lines[7], "    skipped: virtio-blk not available");
  // The ratio column starts at the same offset in the header and in the rows.
  assert.equal(lines[0].indexOf("ours/ref"), lines[3].indexOf("1.25x"));
});

Deno.test("parseCpuinfo: model, processor count and the hypervisor flag", () => {
  const text = [
    "processor\t: 0",
    "model name\t: AMD EPYC",
    "flags\t\t: fpu vme hypervisor lahf_lm",
    "",
    "processor\t: 1",
    "model name\t: AMD EPYC",
    "flags\t\t: fpu vme hypervisor lahf_lm",
    "",
  ].join("\n");
  assert.deepEqual(parseCpuinfo(text), { model: "AMD EPYC", cpus: 2, hypervisor: true });
  assert.equal(parseCpuinfo("processor : 0\nflags : fpu vmx\n").hypervisor, false);
});

Deno.test("checkDocument accepts the written shape and names what is wrong", () => {
  const doc = {
    schema: "vmmctl-bench/1",
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:01:00.000Z",
    quick: true,
    revision: "abc1234",
    host: {
      cpuModel: "AMD EPYC",
      cores: 2,
      kernel: "linux 6.1",
      nestedVirtualization: "yes",
      memoryBytes: 1,
    },
    deno: { deno: "2.9.6", v8: "x", typescript: "y" },
    qemu: null,
    cc: null,
    loadAverage: { start: 0.5, end: 0.7 },
    rows: [
      measuredRow({
        section: "exits",
        name: "PIO",
        unit: "µs",
        better: "lower",
        ours: summarize([10]),
        reference: summarize([8]),
      }),
      skippedRow("blockio", "blk", "virtio-blk not available"),
    ],
  };
  const roundTrip = JSON.parse(JSON.stringify(doc));
  assert.equal(checkDocument(roundTrip).rows.length, 2);
  assert.throws(() => checkDocument({ ...roundTrip, schema: "x" }), /schema is "x"/);
  assert.throws(
    () =>
      checkDocument({ ...roundTrip, host: { ...roundTrip.host, nestedVirtualization: "maybe" } }),
    /nestedVirtualization" is "maybe"/,
  );
  assert.throws(
    () => checkDocument({ ...roundTrip, rows: [{ section: "a", name: "b" }] }),
    /row "b" has no figure or note/,
  );
  assert.throws(
    () => checkDocument({ ...roundTrip, rows: [{ section: "a", name: "b", note: "x", ratio: 2 }] }),
    /ratio without both figures/,
  );
});
