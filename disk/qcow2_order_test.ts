/**
 * Metadata write ordering, tested by replaying a session's file operations
 * and "crashing" after every prefix of them (a killed process: every write
 * issued so far reached the file), and for power loss, after each fdatasync
 * plus any single write of the next batch (the disk may persist writes
 * between syncs in any order). `qemu-img check` must find no errors in any
 * of those images; leaks are allowed.
 */
import assert from "node:assert/strict";
import { ImageFile } from "./file.ts";
import { Qcow2Image } from "./qcow2.ts";
import { HAVE_QEMU_TOOLS, qemuCheck, Rng, run, withTempDir } from "./test_helpers.ts";

type Op = { kind: "write"; offset: number; data: Uint8Array } | { kind: "sync" };

/** Opens `path` with every write and sync recorded in `ops`. */
function openRecorded(path: string, ops: Op[]): Qcow2Image {
  const file = ImageFile.open(path, { readonly: false });
  const write = file.write.bind(file);
  const sync = file.syncData.bind(file);
  file.write = (offset: number, data: Uint8Array) => {
    ops.push({ kind: "write", offset, data: data.slice() });
    write(offset, data);
  };
  file.syncData = () => {
    ops.push({ kind: "sync" });
    sync();
  };
  return Qcow2Image.fromFile(file);
}

/** A file image that ops are applied to in order, tracking its length. */
class Replay {
  bytes: Uint8Array;
  length: number;
  constructor(original: Uint8Array, ops: readonly Op[]) {
    let size = original.length;
    for (const op of ops) {
      if (op.kind === "write") size = Math.max(size, op.offset + op.data.length);
    }
    this.bytes = new Uint8Array(size);
    this.bytes.set(original);
    this.length = original.length;
  }
  apply(op: Op): void {
    if (op.kind !== "write") return;
    this.bytes.set(op.data, op.offset);
    this.length = Math.max(this.length, op.offset + op.data.length);
  }
  /** The file as it is now, plus optionally one more write. */
  snapshot(extra?: Op): Uint8Array {
    if (extra === undefined || extra.kind !== "write") return this.bytes.subarray(0, this.length);
    const out = this.bytes.slice(0, Math.max(this.length, extra.offset + extra.data.length));
    out.set(extra.data, extra.offset);
    return out;
  }
}

function checkImage(path: string, bytes: Uint8Array, what: string): void {
  Deno.writeFileSync(path, bytes);
  const r = qemuCheck(path);
  assert.equal(r["check-errors"], 0, `${what}: ${JSON.stringify(r)}`);
  assert.equal(r.corruptions ?? 0, 0, `${what}: ${JSON.stringify(r)}`);
}

Deno.test({
  name: "qcow2 metadata order: every crash point and every power-loss cut leaves no errors",
  ignore: !HAVE_QEMU_TOOLS,
  fn: withTempDir((dir) => {
    const path = `${dir}/o.qcow2`;
    // Small clusters and a one-cluster refcount table, so a short session allocates
    // L2 tables, refcount blocks and moves the refcount table; a snapshot makes
    // writes copy shared L2 tables and clusters and free references later.
    run("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "cluster_size=512", path, "12M"]);
    run("qemu-io", ["-f", "qcow2", "-c", "write -P 0x21 0 96k", path]);
    run("qemu-img", ["snapshot", "-c", "s1", path]);
    const original = Deno.readFileSync(path);
    const ops: Op[] = [];
    const disk = openRecorded(path, ops);
    const rng = new Rng(71);
    for (let i = 0; i < 12; i++) {
      const length = 1 + rng.below(6000);
      const offset = i < 4 ? rng.below(96 * 1024) : rng.below(disk.sizeBytes - length);
      disk.write(offset, rng.bytes(length));
      if (i % 4 === 3) disk.flush();
    }
    // Enough sequential data to outgrow the refcount table (8 MiB of file).
    for (let offset = 0; offset < 9 * 1024 * 1024; offset += 256 * 1024) {
      disk.write(offset, new Uint8Array(256 * 1024).fill(offset >>> 18));
    }
    disk.close();
    assert.ok(
      ops.some((op) => op.kind === "write" && op.offset === 48),
      "the refcount table moved",
    );
    const crash = `${dir}/crash.qcow2`;

    // Process crash: every prefix (sampled, plus every sync point). Power loss: all
    // writes before a sync, plus any one write of the batch after it (sampled).
    const replay = new Replay(original, ops);
    const step = Math.max(1, Math.floor(ops.length / 60));
    let checks = 0;
    for (let k = 0; k <= ops.length; k++) {
      const afterSync = k === 0 || ops[k - 1].kind === "sync";
      if (k % step === 0 || afterSync || k === ops.length) {
        checkImage(crash, replay.snapshot(), `crash after ${k} of ${ops.length} ops`);
      }
      if (afterSync) {
        let end = k;
        while (end < ops.length && ops[end].kind !== "sync") end++;
        const stride = Math.max(1, Math.floor((end - k) / 8));
        for (let i = k; i < end; i += stride) {
          checkImage(crash, replay.snapshot(ops[i]), `power loss: ops before ${k} plus op ${i}`);
          checks++;
        }
      }
      if (k < ops.length) replay.apply(ops[k]);
    }
    assert.ok(checks > 10);
  }),
});
