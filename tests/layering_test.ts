/**
 * Imports point down: every product file (not unit tests, not test
 * machinery) imports only its own folder and lower layers of tests/layers.ts,
 * no two folders import each other, the ground floor imports nothing of the
 * project, and the only edge into the test machinery is the sanctioned one.
 * docs/ARCHITECTURE.md shows the same layer table.
 */
import assert from "node:assert/strict";
import { importGraph, importsOf, stripComments } from "./import_graph.ts";
import {
  ENTRY_POINTS,
  isTestMachinery,
  layerOf,
  LAYERS,
  SANCTIONED_EDGES,
  topOf,
} from "./layers.ts";

const repo = new URL("../", import.meta.url);
const graph = importGraph(repo);
/** The top floor (benches, tests, tools): not product files. */
const TOOLS_RANK = LAYERS[LAYERS.length - 1].rank;

/** Product files' imports, without edges that name an entry point only to spawn it. */
function productEdges() {
  const out: { from: string; to: string; dynamic: boolean; line: number }[] = [];
  for (const [from, edges] of graph) {
    if (isTestMachinery(from) || layerOf(from)?.rank === TOOLS_RANK) continue;
    for (const e of edges) {
      if (ENTRY_POINTS.includes(e.to) && e.dynamic) continue;
      out.push({ from, ...e });
    }
  }
  return out;
}

const dirOf = (p: string) => (p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : ".");

Deno.test("layering: every import of a product file resolves to a file of the repository", () => {
  const missing = productEdges().filter((e) => !graph.has(e.to));
  assert.deepEqual(missing, []);
});

Deno.test("layering: every top-level folder with TypeScript is in the layer table", () => {
  const tops = new Set([...graph.keys()].map(topOf));
  const unplaced = [...tops].filter((t) => !LAYERS.some((l) => l.members.includes(t)));
  assert.deepEqual(unplaced, []);
});

Deno.test("layering: no product file imports a higher layer; the ground floor imports nothing", () => {
  const bad: string[] = [];
  for (const e of productEdges()) {
    if (SANCTIONED_EDGES.some((s) => s.from === e.from && s.to === e.to)) continue;
    const from = layerOf(e.from)!;
    const to = layerOf(e.to);
    const where = `${e.from}:${e.line} imports ${e.to}`;
    if (!to) bad.push(`${where} (in no layer)`);
    else if (to.rank > from.rank) bad.push(`${where} (layer ${to.rank} above ${from.rank})`);
    else if (from.rank === 0 && topOf(e.to) !== topOf(e.from)) {
      bad.push(`${where} (the ground floor imports nothing of the project)`);
    }
  }
  assert.deepEqual(bad, []);
});

Deno.test("layering: no two folders import each other (a folder may use its subfolders)", () => {
  const pairs = new Map<string, string>();
  for (const e of productEdges()) {
    const a = dirOf(e.from), b = dirOf(e.to);
    if (a === b || a.startsWith(b + "/") || b.startsWith(a + "/")) continue;
    if (!pairs.has(`${a} ${b}`)) pairs.set(`${a} ${b}`, `${e.from}:${e.line} -> ${e.to}`);
  }
  const cycles: string[] = [];
  for (const [k, example] of pairs) {
    const [a, b] = k.split(" ");
    if (a < b && pairs.has(`${b} ${a}`)) cycles.push(`${example} and ${pairs.get(`${b} ${a}`)}`);
  }
  assert.deepEqual(cycles, []);
});

Deno.test("layering: the product reaches the test machinery only through the sanctioned dynamic import", () => {
  for (const s of SANCTIONED_EDGES) {
    const e = graph.get(s.from)?.find((x) => x.to === s.to);
    assert.ok(e, `${s.from} imports ${s.to}`);
    assert.equal(e.dynamic, true, `${s.from} loads ${s.to} only when chosen`);
  }
});

Deno.test("layering: docs/ARCHITECTURE.md shows the layer table of tests/layers.ts", () => {
  const doc = Deno.readTextFileSync(new URL("docs/ARCHITECTURE.md", repo));
  const rows = [...doc.matchAll(/^\|\s*(\d+)\s*\|([^|]+)\|/gm)].map((m) => ({
    rank: Number(m[1]),
    members: [...m[2].matchAll(/`([^`]+?)\/?`/g)].map((x) => x[1]),
  }));
  assert.deepEqual(rows, LAYERS.map((l) => ({ rank: l.rank, members: [...l.members] })));
});

Deno.test("import graph reader: comments are not imports; import(), export from and Worker URLs are", () => {
  const src = [
    '/** import { x } from "../a.ts"; */',
    '// import "../b.ts";',
    'import { type T, v } from "./c.ts";',
    'export { w } from "../d/e.ts";',
    'import "./side.ts";',
    "const s = \"import { y } from './not.ts'\";",
    'const m = await import("../lazy.ts");',
    'const u = new URL("./worker.ts", import.meta.url);',
    'import assert from "node:assert/strict";',
  ].join("\n");
  assert.equal(stripComments("a /* b\nc */ d // e\nf").split("\n").length, 3);
  const edges = importsOf("x/y/file.ts", src).map((e) => `${e.to}${e.dynamic ? " dyn" : ""}`);
  assert.deepEqual(edges.sort(), [
    "x/d/e.ts",
    "x/lazy.ts dyn",
    "x/y/c.ts",
    "x/y/side.ts",
    "x/y/worker.ts dyn",
  ]);
});
