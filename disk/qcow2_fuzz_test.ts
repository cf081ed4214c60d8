/**
 * qcow2 metadata mutation fuzzing. Each case takes a small image QEMU made,
 * mutates its metadata (header fields, L1 and L2 entries, refcount table
 * entries and blocks) from a seed, opens it writable and runs random reads,
 * writes and flushes. The model checks after every case:
 * - nothing but a DiskError escapes (a refusal is fine, a crash is not);
 * - the header is unchanged (except the refcount table fields and the
 *   auto-clear bits we own), the file stays within the growth bound;
 * - every write that succeeded reads back, until a later error;
 * - for a sample of the images qemu-img check calls clean, our reads of the
 *   mutated image equal qemu-io's, and after our session qemu-img check still
 *   finds no errors and qemu-io reads what we wrote.
 *
 * Seeded and reproducible: VMMCTL_FUZZ_SEED=S (first seed), and
 * VMMCTL_FUZZ_ITERATIONS=N (cases; default a short run for the suite). A
 * failure names its seed; add it to REGRESSION_SEEDS.
 */
import assert from "node:assert/strict";
import { DiskError } from "./errors.ts";
import { MemFile } from "./power_loss_file.ts";
import { Qcow2Image } from "./qcow2.ts";
import { qcow2GrowthLimitBytes } from "./qcow2_check.ts";
import {
  QCOW2_HDR_AUTOCLEAR_FEATURES,
  QCOW2_HDR_L1_SIZE,
  QCOW2_HDR_L1_TABLE_OFFSET,
  QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS,
  QCOW2_HDR_REFCOUNT_TABLE_OFFSET,
} from "./qcow2_format.ts";
import { HAVE_QEMU_TOOLS, qemuCheck, qemuIo, Rng, run, withTempDir } from "./test_helpers.ts";

const ITERATIONS = Number(Deno.env.get("VMMCTL_FUZZ_ITERATIONS") ?? "120");
const FIRST_SEED = Number(Deno.env.get("VMMCTL_FUZZ_SEED") ?? "1");
/** Seeds that once found a bug; always run. */
const REGRESSION_SEEDS: readonly number[] = [];
/** Of the cases qemu-img calls clean, at most this many are compared with QEMU (it is slow). */
const QEMU_SAMPLE = Math.max(4, Math.floor(ITERATIONS / 25));

interface Base {
  name: string;
  bytes: Uint8Array;
  clusterBits: number;
}

function u64(v: DataView, at: number): number {
  return Number(v.getBigUint64(at));
}

/** Offsets of 8-byte metadata entries and refcount block bytes in an image. */
function metadataSpots(bytes: Uint8Array, clusterBits: number) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const cs = 2 ** clusterBits;
  const entry = (at: number) => u64(v, at) & 0x00ff_ffff_ffff_fe00;
  const l1 = u64(v, QCOW2_HDR_L1_TABLE_OFFSET);
  const l1Size = v.getUint32(QCOW2_HDR_L1_SIZE);
  const reftable = u64(v, QCOW2_HDR_REFCOUNT_TABLE_OFFSET);
  const reftableBytes = v.getUint32(QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS) * cs;
  const entries: number[] = [];
  const blocks: number[] = [];
  for (let i = 0; i < l1Size; i++) {
    entries.push(l1 + i * 8);
    const l2 = entry(l1 + i * 8);
    if (l2 !== 0 && l2 + cs <= bytes.length) {
      for (let j = 0; j < cs; j += 8) entries.push(l2 + j);
    }
  }
  for (let i = 0; i < reftableBytes; i += 8) {
    if (reftable + i + 8 > bytes.length) break;
    entries.push(reftable + i);
    const block = entry(reftable + i);
    if (block !== 0 && block + cs <= bytes.length) blocks.push(block);
  }
  return { entries, blocks, cs };
}

const HEADER_FIELDS = [8, 20, 24, 36, 40, 48, 56, 60, 64, 72, 96, 100];

/** Applies 1-4 seeded mutations to the image's metadata. */
function mutate(base: Base, rng: Rng): Uint8Array {
  const bytes = base.bytes.slice();
  const v = new DataView(bytes.buffer);
  const { entries, blocks, cs } = metadataSpots(bytes, base.clusterBits);
  const count = 1 + rng.below(4);
  for (let m = 0; m < count; m++) {
    const pick = <T>(xs: readonly T[]): T => xs[rng.below(xs.length)];
    const kind = rng.below(7);
    if (kind === 0) {
      // A header field: zero, all ones, another cluster, or a bit flip.
      const at = pick(HEADER_FIELDS);
      const width = at === 20 || at === 36 || at === 56 || at === 60 || at >= 96 ? 4 : 8;
      const choice = rng.below(4);
      for (let i = 0; i < width; i++) {
        if (choice === 0) bytes[at + i] = 0;
        else if (choice === 1) bytes[at + i] = 0xff;
      }
      if (choice === 2 && width === 8) v.setBigUint64(at, BigInt(rng.below(64) * cs));
      if (choice === 3) bytes[at + rng.below(width)] ^= 1 << rng.below(8);
    } else if (kind <= 3 && entries.length > 0) {
      // A table entry: zero, another entry's value, a random cluster, flags or reserved bits.
      const at = pick(entries);
      const choice = rng.below(5);
      if (choice === 0) v.setBigUint64(at, 0n);
      else if (choice === 1) bytes.copyWithin(at, pick(entries), pick(entries) + 8);
      else if (choice === 2) v.setBigUint64(at, BigInt(rng.below(bytes.length / cs + 8) * cs));
      else if (choice === 3) bytes[at] ^= 0x80 >> rng.below(2); // COPIED or COMPRESSED
      else bytes[at + rng.below(8)] ^= 1 << rng.below(8);
    } else if (blocks.length > 0) {
      // Refcount block bytes: zeroed, saturated or flipped.
      const block = pick(blocks);
      const at = block + rng.below(cs);
      const choice = rng.below(3);
      const length = 1 + rng.below(cs - (at - block));
      if (choice === 0) bytes.fill(0, at, at + length);
      else if (choice === 1) bytes.fill(0xff, at, at + length);
      else bytes[at] ^= 1 << rng.below(8);
    }
  }
  return bytes;
}

/** qemu-io's view of `[offset, offset + length)` (read -v, parsed). */
function qemuIoRead(path: string, offset: number, length: number): Uint8Array {
  const text = run("qemu-io", ["-r", "-f", "qcow2", "-c", `read -v ${offset} ${length}`, path]);
  const out = new Uint8Array(length);
  let n = 0;
  for (const line of text.split("\n")) {
    const m = line.match(/^[0-9a-f]{8}: ((?: [0-9a-f]{2}){1,16})/);
    if (m === null) continue;
    for (const h of m[1].trim().split(" ")) out[n++] = parseInt(h, 16);
  }
  assert.equal(n, length, `qemu-io printed ${n} of ${length} bytes`);
  return out;
}

interface CaseResult {
  opened: boolean;
  qemuCompared: boolean;
}

function runCase(base: Base, seed: number, dir: string, compare: boolean): CaseResult {
  const rng = new Rng(seed);
  const bytes = mutate(base, rng);
  const where = `seed ${seed} (${base.name})`;
  const escaped = (e: unknown, what: string) => {
    if (!(e instanceof DiskError)) {
      throw new Error(`${where}: ${what} threw a non-disk error: ${e}`, { cause: e });
    }
  };
  const cs = 2 ** base.clusterBits;
  // Is the mutated image valid in QEMU's eyes? (Only asked for sampled cases.)
  const path = `${dir}/fuzz.qcow2`;
  let clean = false;
  if (compare) {
    Deno.writeFileSync(path, bytes);
    try {
      const r = qemuCheck(path);
      clean = r["check-errors"] === 0 && (r.corruptions ?? 0) === 0;
    } catch {
      clean = false; // qemu-img refuses to open it at all
    }
  }

  const file = new MemFile(path, bytes);
  let disk: Qcow2Image;
  try {
    disk = Qcow2Image.fromFile(file, { cacheBytes: rng.below(2) === 0 ? 0 : undefined });
  } catch (e) {
    escaped(e, "open");
    assert.ok(!clean || !/[Cc]orrupt/.test(String(e)), `${where}: a clean image was refused: ${e}`);
    return { opened: false, qemuCompared: false };
  }
  const size = disk.sizeBytes;
  const limit = qcow2GrowthLimitBytes(bytes.length, size, base.clusterBits, disk.refcountBits, 64);

  let qemuCompared = false;
  if (clean && size <= 4 * 1024 * 1024) {
    // Reads of the valid image agree with QEMU's.
    for (let k = 0; k < 2; k++) {
      const length = Math.min(size, 4096);
      const offset = Math.floor(rng.below(size - length + 1) / 512) * 512;
      const ours = new Uint8Array(length);
      disk.read(offset, ours);
      assert.deepEqual(ours, qemuIoRead(path, offset, length), `${where}: read at ${offset}`);
    }
    qemuCompared = true;
  }

  // A session of writes and reads; a model of what succeeded.
  const model: [number, Uint8Array][] = []; // successful writes, in order
  let failed = false;
  for (let op = 0; op < 12 && !failed; op++) {
    const length = 1 + rng.below(3 * cs);
    const offset = rng.below(Math.max(1, size - length + 1));
    if (length > size) break;
    try {
      if (rng.below(3) > 0) {
        const data = rng.bytes(length);
        disk.write(offset, data);
        model.push([offset, data]);
      } else {
        disk.read(offset, new Uint8Array(length));
      }
      if (rng.below(4) === 0) disk.flush();
    } catch (e) {
      escaped(e, `operation ${op}`);
      failed = true;
    }
  }
  if (!failed) {
    // Later writes win: check from the last write back, bytes not yet seen.
    const seen = new Uint8Array(size);
    for (const [offset, data] of [...model].reverse()) {
      const got = new Uint8Array(data.length);
      disk.read(offset, got);
      for (let i = 0; i < data.length; i++) {
        if (seen[offset + i]) continue;
        seen[offset + i] = 1;
        if (got[i] !== data[i]) assert.fail(`${where}: byte ${offset + i} does not read back`);
      }
    }
  }
  try {
    disk.close();
  } catch (e) {
    escaped(e, "close");
    failed = true;
  }
  const after = file.bytes;
  // The header: only the refcount table fields and the auto-clear bits may change.
  const header = (b: Uint8Array) => {
    const h = b.slice(0, Math.min(cs, b.length));
    h.fill(0, QCOW2_HDR_REFCOUNT_TABLE_OFFSET, QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS + 4);
    h.fill(0, QCOW2_HDR_AUTOCLEAR_FEATURES, QCOW2_HDR_AUTOCLEAR_FEATURES + 8);
    return h;
  };
  assert.deepEqual(header(after), header(bytes), `${where}: the header changed`);
  assert.ok(after.length <= limit, `${where}: the file grew to ${after.length} (bound ${limit})`);

  if (qemuCompared && !failed) {
    Deno.writeFileSync(path, after);
    const r = qemuCheck(path);
    assert.equal(r["check-errors"], 0, `${where}: after our writes: ${JSON.stringify(r)}`);
    assert.equal(r.corruptions ?? 0, 0, `${where}: after our writes: ${JSON.stringify(r)}`);
    const [offset, data] = model.at(-1) ?? [0, new Uint8Array(0)];
    if (data.length > 0) {
      assert.deepEqual(qemuIoRead(path, offset, data.length), data, `${where}: qemu-io reads`);
    }
  }
  return { opened: true, qemuCompared };
}

Deno.test({
  name: `qcow2 fuzz: ${ITERATIONS} metadata mutations from seed ${FIRST_SEED} hold the invariants`,
  ignore: !HAVE_QEMU_TOOLS,
  fn: withTempDir((dir) => {
    const bases: Base[] = [];
    for (
      const [name, options, bits] of [
        ["v3 512", "cluster_size=512", 9],
        ["v3 4k 1-bit", "cluster_size=4096,refcount_bits=1", 12],
        ["v2 4k", "compat=0.10,cluster_size=4096", 12],
        ["v3 64k", "", 16],
      ] as const
    ) {
      const path = `${dir}/${bases.length}.qcow2`;
      const args = ["create", "-q", "-f", "qcow2"];
      if (options !== "") args.push("-o", options);
      run("qemu-img", [...args, path, "1M"]);
      qemuIo(path, "qcow2", ["write -P 0x41 0 40k", "write -P 0x42 512k 8k"]);
      if (bases.length === 0) run("qemu-img", ["snapshot", "-c", "s", path]);
      bases.push({ name, bytes: Deno.readFileSync(path), clusterBits: bits });
    }
    let opened = 0;
    let compared = 0;
    const seeds = [...REGRESSION_SEEDS];
    for (let i = 0; i < ITERATIONS; i++) seeds.push(FIRST_SEED + i);
    for (const seed of seeds) {
      const base = bases[seed % bases.length];
      const r = runCase(base, seed, dir, compared < QEMU_SAMPLE && seed % 3 === 0);
      if (r.opened) opened++;
      if (r.qemuCompared) compared++;
    }
    console.log(
      `qcow2 fuzz: ${seeds.length} cases, ${opened} opened writable, ${compared} compared with qemu-io`,
    );
    // The fuzzer must reach past the open checks and compare with QEMU, or it tests nothing.
    assert.ok(opened > seeds.length / 10, `${opened} of ${seeds.length} images opened`);
    assert.ok(compared >= 2, `${compared} cases compared with qemu-io`);
  }),
});
