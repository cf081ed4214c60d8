/**
 * Power-loss consistency: the raw and qcow2 engines run over a recording
 * back end, then power is cut at hundreds of seeded random points (dropping
 * any writes not covered by a completed fdatasync, tearing some at sector
 * granularity; see power_loss_file.ts). After every cut, every write the
 * guest saw acknowledged by a completed FLUSH reads back, the qcow2 image
 * opens writable (passing the open-time integrity checks), and for a sample
 * `qemu-img check` finds no errors (leaks allowed).
 *
 * The last tests show the check can fail: with any one of the engines'
 * fdatasync call sites turned into a no-op, some cut loses flushed data or
 * leaves an image QEMU calls corrupt.
 */
import assert from "node:assert/strict";
import type { DiskImage } from "./image.ts";
import { MemFile, powerCut, RecordingFile } from "./power_loss_file.ts";
import { Qcow2Image } from "./qcow2.ts";
import { RawImage } from "./raw.ts";
import { HAVE_QEMU_TOOLS, qemuCheck, qemuIo, Rng, run, withTempDir } from "./test_helpers.ts";

const SECTOR = 512;

type Engine = "raw" | "qcow2";

/** The session runs with the smallest metadata cache (most write-backs); the checks with the default. */
function openEngine(engine: Engine, file: MemFile, cacheBytes?: number): DiskImage {
  return engine === "qcow2" ? Qcow2Image.fromFile(file, { cacheBytes }) : new RawImage(file);
}

/** A recording file whose syncs from one call site (`file:line`) are dropped. */
class SiteFile extends RecordingFile {
  /** Call sites of syncData seen, with counts. */
  readonly sites = new Map<string, number>();
  disabled?: string;
  /** Op counts at the dropped syncs. */
  readonly dropped: number[] = [];
  override syncData(): void {
    const frame =
      (new Error().stack ?? "").split("\n").slice(2).find((l) => !l.includes("power_loss")) ?? "";
    const site = frame.match(/([a-z0-9_]+\.ts):(\d+)/)?.slice(1).join(":") ?? "?";
    this.sites.set(site, (this.sites.get(site) ?? 0) + 1);
    if (site !== this.disabled) super.syncData();
    else this.dropped.push(this.ops.length);
  }
}

/** What the guest did: its writes, and its flushes (each a write count and the ops it spans). */
interface Session {
  engine: Engine;
  file: SiteFile;
  /** What the image reads as before the session. */
  base: Uint8Array;
  writes: { offset: number; data: Uint8Array; opStart: number }[];
  flushes: { writes: number; opEnd: number }[];
}

interface Workload {
  steps: number;
  maxLength: number;
  flushEvery: number;
  /** Sequential large writes (to grow the refcount table) instead of random ones. */
  sequential?: boolean;
}

function runSession(
  engine: Engine,
  initial: Uint8Array,
  seed: number,
  w: Workload,
  disabled?: string,
): Session {
  const file = new SiteFile("power.img", initial);
  file.disabled = disabled;
  const disk = openEngine(engine, file, 0);
  const base = new Uint8Array(disk.sizeBytes);
  disk.read(0, base);
  const s: Session = { engine, file, base, writes: [], flushes: [] };
  const rng = new Rng(seed);
  let next = 0;
  for (let i = 0; i < w.steps; i++) {
    const length = w.sequential ? w.maxLength : 1 + rng.below(w.maxLength);
    let offset = w.sequential ? next : rng.below(disk.sizeBytes - length + 1);
    if (offset + length > disk.sizeBytes) offset = next = 0;
    next = offset + length;
    const data = rng.bytes(length);
    s.writes.push({ offset, data, opStart: file.ops.length });
    disk.write(offset, data);
    if (i % w.flushEvery === w.flushEvery - 1) {
      const writes = s.writes.length;
      disk.flush();
      s.flushes.push({ writes, opEnd: file.ops.length });
    }
  }
  disk.flush();
  s.flushes.push({ writes: s.writes.length, opEnd: file.ops.length });
  return s;
}

/**
 * Cuts power after `cut` ops and checks the result; returns what is wrong
 * (undefined when nothing). `qemuPath` also runs `qemu-img check` there.
 */
function checkCut(s: Session, cut: number, rng: Rng, qemuPath?: string): string | undefined {
  const bytes = powerCut(s.file, cut, rng);
  let flushed = -1;
  for (let f = 0; f < s.flushes.length; f++) if (s.flushes[f].opEnd <= cut) flushed = f;
  const covered = flushed < 0 ? 0 : s.flushes[flushed].writes;
  const expected = s.base.slice();
  for (let i = 0; i < covered; i++) expected.set(s.writes[i].data, s.writes[i].offset);
  // Writes issued after that flush began may or may not be there.
  const uncertain = new Uint8Array(Math.ceil(expected.length / SECTOR));
  for (let i = covered; i < s.writes.length && s.writes[i].opStart < cut; i++) {
    const { offset, data } = s.writes[i];
    for (let c = Math.floor(offset / SECTOR); c * SECTOR < offset + data.length; c++) {
      uncertain[c] = 1;
    }
  }
  let actual: Uint8Array;
  try {
    const disk = openEngine(s.engine, new MemFile("cut.img", bytes));
    actual = new Uint8Array(disk.sizeBytes);
    disk.read(0, actual);
  } catch (e) {
    return `cut ${cut}: the image does not open or read: ${(e as Error).message}`;
  }
  for (let c = 0; c < uncertain.length; c++) {
    if (uncertain[c]) continue;
    const a = actual.subarray(c * SECTOR, (c + 1) * SECTOR);
    const b = expected.subarray(c * SECTOR, (c + 1) * SECTOR);
    if (a.some((x, i) => x !== b[i])) {
      return `cut ${cut} (after ${flushed + 1} completed flushes): sector ${c} lost its ` +
        `flushed contents`;
    }
  }
  if (qemuPath !== undefined) {
    Deno.writeFileSync(qemuPath, bytes);
    const r = qemuCheck(qemuPath);
    if (r["check-errors"] !== 0 || (r.corruptions ?? 0) !== 0) {
      return `cut ${cut}: qemu-img check: ${JSON.stringify(r)}`;
    }
  }
  return undefined;
}

/** Checks `cuts` random cut points (`qemuChecks` of them with qemu-img); returns the failures. */
function checkCuts(
  s: Session,
  seed: number,
  cuts: number,
  qemuChecks: number,
  dir: string,
  stopAtFirst = false,
): string[] {
  const rng = new Rng(seed);
  const failures: string[] = [];
  for (let i = 0; i < cuts; i++) {
    const cut = rng.below(s.file.ops.length + 1);
    const withQemu = i % Math.ceil(cuts / Math.max(1, qemuChecks)) === 0 && qemuChecks > 0;
    const failure = checkCut(s, cut, rng, withQemu ? `${dir}/cut.qcow2` : undefined);
    if (failure !== undefined) {
      failures.push(failure);
      if (stopAtFirst) break;
    }
  }
  return failures;
}

/** A 1 MiB image with 512-byte clusters, data, and a snapshot sharing it (writes copy and free). */
function snapshotImage(dir: string, options = "cluster_size=512"): Uint8Array {
  const path = `${dir}/base.qcow2`;
  run("qemu-img", ["create", "-q", "-f", "qcow2", "-o", options, path, "1M"]);
  qemuIo(path, "qcow2", ["write -P 0x21 0 192k", "write -P 0x22 640k 64k"]);
  run("qemu-img", ["snapshot", "-c", "s1", path]);
  return Deno.readFileSync(path);
}

/** 3 MiB, 512-byte clusters, 64-bit refcounts: sequential writes outgrow the refcount table. */
function growthImage(dir: string): Uint8Array {
  const path = `${dir}/growth.qcow2`;
  run("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-o",
    "cluster_size=512,refcount_bits=64",
    path,
    "3M",
  ]);
  return Deno.readFileSync(path);
}

const RANDOM: Workload = { steps: 120, maxLength: 6000, flushEvery: 7 };
const GROWTH: Workload = { steps: 40, maxLength: 64 * 1024, flushEvery: 5, sequential: true };

Deno.test({
  name: "power loss: qcow2 keeps every flushed write and checks clean at 300 random cuts",
  ignore: !HAVE_QEMU_TOOLS,
  fn: withTempDir((dir) => {
    const s = runSession("qcow2", snapshotImage(dir), 1301, RANDOM);
    assert.ok(s.file.ops.length > 300, `${s.file.ops.length} ops`);
    assert.deepEqual(checkCuts(s, 1302, 300, 10, dir), []);
  }),
});

Deno.test({
  name: "power loss: qcow2 survives cuts while its refcount table grows and moves",
  ignore: !HAVE_QEMU_TOOLS,
  fn: withTempDir((dir) => {
    const s = runSession("qcow2", growthImage(dir), 1401, GROWTH);
    const moved = s.file.ops.some((op) => op.kind === "write" && op.offset === 48);
    assert.ok(moved, "the refcount table moved");
    assert.deepEqual(checkCuts(s, 1402, 100, 4, dir), []);
  }),
});

Deno.test("power loss: raw keeps every flushed write at 200 random cuts", () => {
  const s = runSession("raw", new Uint8Array(256 * 1024), 1501, RANDOM);
  assert.deepEqual(checkCuts(s, 1502, 200, 0, ""), []);
});

/**
 * Cuts where a dropped sync mattered: once the whole batch after it was
 * issued and nothing of it synced, with a few random choices of what
 * reached the medium. Returns the first failure.
 */
function checkDropped(s: Session, seed: number, dir: string): string | undefined {
  const rng = new Rng(seed);
  const ops = s.file.ops;
  const starts = s.file.dropped;
  const step = Math.max(1, Math.floor(starts.length / 6));
  for (let k = 0; k < starts.length; k += step) {
    let cut = starts[k];
    while (cut < ops.length && ops[cut].kind !== "sync") cut++;
    for (let pattern = 0; pattern < 4; pattern++) {
      const failure = checkCut(s, cut, rng, `${dir}/cut.qcow2`);
      if (failure !== undefined) return failure;
    }
  }
  return undefined;
}

Deno.test({
  name: "power loss: with any one fdatasync site removed, the check finds lost or corrupt data",
  ignore: !HAVE_QEMU_TOOLS,
  fn: withTempDir((dir) => {
    const sessions = [
      { initial: snapshotImage(dir), workload: RANDOM, seed: 1601 },
      { initial: growthImage(dir), workload: GROWTH, seed: 1701 },
    ];
    const sites = new Set<string>();
    for (const x of sessions) {
      const s = runSession("qcow2", x.initial, x.seed, x.workload);
      for (const site of s.file.sites.keys()) sites.add(site);
    }
    // The data, refcount, L2, free-ordering, table-move and flush syncs at least.
    assert.ok(sites.size >= 6, [...sites].join(", "));
    const undetected: string[] = [];
    for (const site of sites) {
      const found = sessions.some((x) => {
        const s = runSession("qcow2", x.initial, x.seed, x.workload, site);
        return s.file.dropped.length > 0 && checkDropped(s, x.seed + 1, dir) !== undefined;
      });
      if (!found) undetected.push(site);
    }
    assert.deepEqual(undetected, [], "sync sites whose removal no cut detects");
  }),
});

Deno.test("power loss: a raw image whose flush does not sync loses flushed writes", () => {
  const s = runSession("raw", new Uint8Array(256 * 1024), 1801, RANDOM, "raw.ts:" + rawFlushLine());
  assert.ok(checkCuts(s, 1802, 200, 0, "", true).length > 0);
});

/** The line of RawImage.flush's syncData call, found the way SiteFile names sites. */
function rawFlushLine(): string {
  const probe = new SiteFile("probe.img", new Uint8Array(512));
  new RawImage(probe).flush();
  const [site] = [...probe.sites.keys()];
  return site.split(":")[1];
}
