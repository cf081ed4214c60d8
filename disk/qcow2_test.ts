/**
 * qcow2 against QEMU's own tools: images qemu-img/qemu-io make must read
 * back as `qemu-img convert -O raw` does, and images we write must pass
 * `qemu-img check` and convert to the bytes we expect.
 */
import assert from "node:assert/strict";
import { DiskFormatError, DiskOpenError, DiskRangeError, DiskReadOnlyError } from "./errors.ts";
import { type DiskImage, openDiskImage } from "./image.ts";
import { Qcow2Image } from "./qcow2.ts";
import {
  QCOW2_EXT_BACKING_FORMAT,
  QCOW2_HDR_AUTOCLEAR_FEATURES,
  QCOW2_HDR_INCOMPATIBLE_FEATURES,
  QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS,
  QCOW2_HDR_REFCOUNT_TABLE_OFFSET,
  QCOW2_HDR_VERSION,
} from "./qcow2_format.ts";
import {
  firstDifference,
  HAVE_QEMU_TOOLS,
  qemuCheck,
  qemuIo,
  qemuReadAll,
  readAll,
  Rng,
  run,
  withTempDir,
} from "./test_helpers.ts";

const ignore = !HAVE_QEMU_TOOLS;
const MiB = 1024 * 1024;

function create(path: string, size: string, options: string[] = [], extra: string[] = []): void {
  const args = ["create", "-q", "-f", "qcow2", ...extra];
  if (options.length > 0) args.push("-o", options.join(","));
  run("qemu-img", [...args, path, size]);
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const at = firstDifference(actual, expected);
  assert.equal(
    at,
    -1,
    `${what}: first difference at byte ${at} (lengths ${actual.length}/${expected.length})`,
  );
}

/** Asserts that QEMU finds no errors and (unless allowed) no leaks. */
function assertClean(path: string, allowLeaks = false): void {
  const r = qemuCheck(path);
  assert.equal(r["check-errors"], 0, `check errors in ${path}: ${JSON.stringify(r)}`);
  assert.equal(r.corruptions ?? 0, 0, `corruptions in ${path}: ${JSON.stringify(r)}`);
  if (!allowLeaks) assert.equal(r.leaks ?? 0, 0, `leaks in ${path}: ${JSON.stringify(r)}`);
}

/** Random writes (some crossing clusters, some whole clusters), mirrored in `expected`. */
function randomWrites(
  disk: DiskImage,
  expected: Uint8Array,
  seed: number,
  count: number,
  maxLength: number,
  flushEvery = 0,
): void {
  const rng = new Rng(seed);
  for (let i = 0; i < count; i++) {
    const length = 1 + rng.below(maxLength);
    const offset = rng.below(disk.sizeBytes - length + 1);
    const data = rng.bytes(length);
    disk.write(offset, data);
    expected.set(data, offset);
    if (flushEvery > 0 && i % flushEvery === flushEvery - 1) disk.flush();
  }
}

/** Reads in odd-sized pieces that straddle cluster boundaries, compared with `expected`. */
function assertPiecewiseReads(disk: DiskImage, expected: Uint8Array, seed: number): void {
  const rng = new Rng(seed);
  for (let i = 0; i < 200; i++) {
    const length = rng.below(150000);
    const offset = rng.below(disk.sizeBytes - length + 1);
    const out = new Uint8Array(length);
    disk.read(offset, out);
    assertSameBytes(
      out,
      expected.subarray(offset, offset + length),
      `read of ${length} at ${offset}`,
    );
  }
}

const QEMU_IO_FILL = [
  "write -P 0xab 0 64k",
  "write -P 0xcd 100k 8k",
  "write -P 0x5a 1000001 70000",
  "write -P 0x11 3M 1M",
  "write -P 0x22 7340032 512",
  "write -z 3200k 300k",
];

for (
  const [name, options] of [
    ["v2 (compat=0.10), 64 KiB clusters", ["compat=0.10"]],
    ["v2, 512-byte clusters", ["compat=0.10", "cluster_size=512"]],
    ["v3, 64 KiB clusters", []],
    ["v3, 512-byte clusters", ["cluster_size=512"]],
    ["v3, 4 KiB clusters, 8-bit refcounts", ["cluster_size=4096", "refcount_bits=8"]],
    ["v3, 2 MiB clusters", ["cluster_size=2M"]],
  ] as const
) {
  Deno.test({
    name: `qcow2 ${name}: reads what qemu-io wrote as qemu-img convert does`,
    ignore,
    fn: withTempDir((dir) => {
      const path = `${dir}/a.qcow2`;
      create(path, "8M", [...options]);
      qemuIo(path, "qcow2", QEMU_IO_FILL);
      const expected = qemuReadAll(path);
      const disk = openDiskImage(path, { format: "auto", readonly: true });
      assert.equal(disk.format, "qcow2");
      assert.equal(disk.sizeBytes, 8 * MiB);
      assertSameBytes(readAll(disk), expected, "whole image");
      assert.equal(expected[100 * 1024], 0xcd); // the oracle is not all zeros
      assertPiecewiseReads(disk, expected, 3);
      disk.close();
    }),
  });
}

Deno.test({
  name: "qcow2 v3 zero clusters read as zeros even over a backing file",
  ignore,
  fn: withTempDir((dir) => {
    Deno.writeFileSync(`${dir}/base.raw`, new Uint8Array(2 * MiB).fill(0x77));
    create(`${dir}/top.qcow2`, "2M", [], ["-b", "base.raw", "-F", "raw"]);
    qemuIo(`${dir}/top.qcow2`, "qcow2", [
      "write -z 64k 128k",
      "write -P 0x12 1M 64k",
      "write -z 1M 64k",
    ]);
    const disk = openDiskImage(`${dir}/top.qcow2`, { format: "qcow2", readonly: true });
    const all = readAll(disk);
    assertSameBytes(all, qemuReadAll(`${dir}/top.qcow2`), "whole image");
    assert.equal(all[0], 0x77);
    assert.equal(all[100 * 1024], 0);
    assert.equal(all[MiB + 5], 0);
    disk.close();
  }),
});

Deno.test({
  name: "qcow2 compressed clusters (qemu-img convert -c) read back identically",
  ignore,
  fn: withTempDir((dir) => {
    create(`${dir}/a.qcow2`, "8M", ["cluster_size=4096"]);
    Deno.writeFileSync(`${dir}/noise.raw`, new Rng(5).bytes(256 * 1024));
    qemuIo(`${dir}/a.qcow2`, "qcow2", ["write -P 0x61 0 1M", "write -P 0x62 5M 300k"]);
    run("qemu-io", ["-f", "qcow2", "-c", "write -P 0x63 2M 64k", `${dir}/a.qcow2`]);
    for (const cluster of ["4096", "65536"]) {
      const c = `${dir}/c${cluster}.qcow2`;
      run("qemu-img", [
        "convert",
        "-c",
        "-O",
        "qcow2",
        "-o",
        `cluster_size=${cluster}`,
        `${dir}/a.qcow2`,
        c,
      ]);
      const report = qemuCheck(c) as { "compressed-clusters"?: number };
      assert.ok(
        (report["compressed-clusters"] ?? 0) > 0,
        "the oracle image has compressed clusters",
      );
      const disk = openDiskImage(c, { format: "auto", readonly: true });
      const expected = qemuReadAll(c);
      assertSameBytes(readAll(disk), expected, `compressed, ${cluster}-byte clusters`);
      assertPiecewiseReads(disk, expected, 4);
      disk.close();
    }
  }),
});

Deno.test({
  name: "qcow2 backing chains (raw and qcow2, smaller bases, relative names) read like QEMU",
  ignore,
  fn: withTempDir((dir) => {
    Deno.mkdirSync(`${dir}/sub`);
    Deno.writeFileSync(`${dir}/base.raw`, new Rng(11).bytes(3 * MiB + 512));
    create(`${dir}/mid.qcow2`, "6M", ["cluster_size=4096"], ["-b", "base.raw", "-F", "raw"]);
    qemuIo(`${dir}/mid.qcow2`, "qcow2", ["write -P 0x44 1M 300k", "write -P 0x45 4M 8k"]);
    // A relative backing name is relative to the image's own folder.
    create(`${dir}/sub/top.qcow2`, "8M", [], ["-b", "../mid.qcow2", "-F", "qcow2"]);
    qemuIo(`${dir}/sub/top.qcow2`, "qcow2", ["write -P 0x55 1100k 10k", "write -P 0x56 7M 4k"]);
    for (const image of [`${dir}/mid.qcow2`, `${dir}/sub/top.qcow2`]) {
      const disk = openDiskImage(image, { format: "auto", readonly: true });
      const expected = qemuReadAll(image);
      assertSameBytes(readAll(disk), expected, image);
      assertPiecewiseReads(disk, expected, 6);
      disk.close();
    }
    const top = Qcow2Image.open(`${dir}/sub/top.qcow2`, { readonly: true });
    assert.equal(top.backingPath, `${dir}/mid.qcow2`);
    assert.equal(top.backing?.format, "qcow2");
    assert.equal((top.backing as Qcow2Image).backing?.format, "raw");
    top.close();
  }),
});

Deno.test({
  name: "qcow2 backing file without a format extension is read as raw, never probed",
  ignore,
  fn: withTempDir((dir) => {
    Deno.writeFileSync(`${dir}/base.raw`, new Rng(12).bytes(MiB));
    create(`${dir}/top.qcow2`, "1M", [], ["-b", "base.raw", "-F", "raw"]);
    // Turn the backing format extension into an unknown one, which readers skip.
    const bytes = Deno.readFileSync(`${dir}/top.qcow2`);
    const v = new DataView(bytes.buffer);
    let at = v.getUint32(100);
    while (v.getUint32(at) !== QCOW2_EXT_BACKING_FORMAT) {
      at += 8 + Math.ceil(v.getUint32(at + 4) / 8) * 8;
    }
    v.setUint32(at, 0x1badcafe);
    Deno.writeFileSync(`${dir}/top.qcow2`, bytes);
    const disk = Qcow2Image.open(`${dir}/top.qcow2`, { readonly: true });
    assert.equal(disk.backing?.format, "raw");
    assertSameBytes(readAll(disk), Deno.readFileSync(`${dir}/base.raw`), "through the raw base");
    disk.close();
  }),
});

for (
  const [name, options, writes, maxLength] of [
    ["v3, 64 KiB clusters", [], 300, 200000],
    ["v2, 4 KiB clusters", ["compat=0.10", "cluster_size=4096"], 300, 20000],
    ["v3, 512-byte clusters, 1-bit refcounts", ["cluster_size=512", "refcount_bits=1"], 300, 5000],
    ["v3, 1 KiB clusters, 2-bit refcounts", ["cluster_size=1024", "refcount_bits=2"], 200, 5000],
    ["v3, 4 KiB clusters, 64-bit refcounts", ["cluster_size=4096", "refcount_bits=64"], 200, 20000],
    ["v3, preallocation=metadata", ["cluster_size=4096", "preallocation=metadata"], 200, 20000],
  ] as const
) {
  Deno.test({
    name: `qcow2 ${name}: random writes pass qemu-img check and convert to the expected bytes`,
    ignore,
    fn: withTempDir((dir) => {
      const path = `${dir}/w.qcow2`;
      create(path, "8M", [...options]);
      qemuIo(path, "qcow2", ["write -P 0x31 64k 256k", "write -P 0x32 5M 100k"]);
      const disk = openDiskImage(path, { format: "qcow2", readonly: false });
      const expected = readAll(disk);
      randomWrites(disk, expected, 21, writes, maxLength, 37);
      assertSameBytes(readAll(disk), expected, "before close");
      disk.close();
      assertClean(path);
      assertSameBytes(qemuReadAll(path), expected, "qemu-img convert");
      // And again in a second session (allocation resumes from the file's state).
      const again = openDiskImage(path, { format: "qcow2", readonly: false });
      assertSameBytes(readAll(again), expected, "reopened");
      randomWrites(again, expected, 22, 50, maxLength);
      again.close();
      assertClean(path);
      assertSameBytes(qemuReadAll(path), expected, "second session");
    }),
  });
}

Deno.test({
  name: "qcow2 writes into images with backing files copy the rest of the cluster from the base",
  ignore,
  fn: withTempDir((dir) => {
    const base = new Rng(31).bytes(3 * MiB);
    Deno.writeFileSync(`${dir}/base.raw`, base);
    create(`${dir}/mid.qcow2`, "4M", ["cluster_size=4096"], ["-b", "base.raw", "-F", "raw"]);
    qemuIo(`${dir}/mid.qcow2`, "qcow2", ["write -P 0x44 1M 300k"]);
    const midBefore = Deno.readFileSync(`${dir}/mid.qcow2`);
    create(`${dir}/top.qcow2`, "5M", [], ["-b", "mid.qcow2", "-F", "qcow2"]);
    const disk = openDiskImage(`${dir}/top.qcow2`, { format: "auto", readonly: false });
    const expected = readAll(disk);
    assertSameBytes(expected.subarray(0, 1000), base.subarray(0, 1000), "base shows through");
    // Small writes in the middle of clusters: the rest must come from the chain.
    for (const offset of [100, 65536 + 7, MiB + 4000, 3 * MiB - 3, 4 * MiB + 1]) {
      const data = new Uint8Array(5).fill(0xee);
      disk.write(offset, data);
      expected.set(data, offset);
    }
    randomWrites(disk, expected, 32, 100, 100000, 10);
    disk.close();
    assertClean(`${dir}/top.qcow2`);
    assertSameBytes(qemuReadAll(`${dir}/top.qcow2`), expected, "top via qemu");
    assertSameBytes(Deno.readFileSync(`${dir}/base.raw`), base, "base untouched");
    assertSameBytes(Deno.readFileSync(`${dir}/mid.qcow2`), midBefore, "mid untouched");
  }),
});

Deno.test({
  name: "qcow2 writes over compressed and zero clusters replace them without leaks",
  ignore,
  fn: withTempDir((dir) => {
    create(`${dir}/a.qcow2`, "4M", ["cluster_size=4096"]);
    qemuIo(`${dir}/a.qcow2`, "qcow2", ["write -P 0x61 0 2M"]);
    run("qemu-img", ["convert", "-c", "-O", "qcow2", `${dir}/a.qcow2`, `${dir}/c.qcow2`]);
    // Zero clusters that keep their host cluster (write -z over allocated data), and plain ones.
    qemuIo(`${dir}/c.qcow2`, "qcow2", [
      "write -P 0x62 2M 512k",
      "write -z 2M 256k",
      "write -z 3M 64k",
    ]);
    const disk = openDiskImage(`${dir}/c.qcow2`, { format: "qcow2", readonly: false });
    const expected = readAll(disk);
    assertSameBytes(expected, qemuReadAll(`${dir}/c.qcow2`), "before writing");
    for (const offset of [10, 70000, 500000, 2 * MiB + 100, 2 * MiB + 70000, 3 * MiB + 5]) {
      const data = new Rng(offset).bytes(3000);
      disk.write(offset, data);
      expected.set(data, offset);
    }
    disk.close();
    assertClean(`${dir}/c.qcow2`);
    assertSameBytes(qemuReadAll(`${dir}/c.qcow2`), expected, "after writing");
  }),
});

Deno.test({
  name: "qcow2 with 512-byte clusters grows its refcount table and blocks",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/g.qcow2`;
    create(path, "24M", ["cluster_size=512"]);
    const before = new DataView(Deno.readFileSync(path).buffer);
    assert.equal(before.getUint32(QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS), 1);
    const disk = openDiskImage(path, { format: "qcow2", readonly: false });
    const expected = new Uint8Array(disk.sizeBytes);
    // One refcount block counts 256 clusters (128 KiB); a one-cluster table, 8 MiB of file.
    const rng = new Rng(41);
    for (let offset = 0; offset < 20 * MiB; offset += 64 * 1024) {
      const data = rng.bytes(64 * 1024);
      disk.write(offset, data);
      expected.set(data, offset);
      if (offset % (4 * MiB) === 0) disk.flush();
    }
    randomWrites(disk, expected, 42, 200, 3000);
    disk.close();
    const after = new DataView(Deno.readFileSync(path).buffer);
    assert.ok(after.getUint32(QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS) > 1, "the refcount table grew");
    assert.notEqual(after.getBigUint64(QCOW2_HDR_REFCOUNT_TABLE_OFFSET), 512n, "and moved");
    assertClean(path);
    assertSameBytes(qemuReadAll(path), expected, "qemu-img convert");
  }),
});

Deno.test({
  name: "qcow2 with a minimal metadata cache (evictions of dirty tables) stays consistent",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/e.qcow2`;
    create(path, "16M", ["cluster_size=512"]);
    const disk = Qcow2Image.open(path, { readonly: false, cacheBytes: 0 });
    const expected = new Uint8Array(disk.sizeBytes);
    randomWrites(disk, expected, 51, 400, 4000);
    assertSameBytes(readAll(disk), expected, "before close");
    disk.close();
    assertClean(path);
    assertSameBytes(qemuReadAll(path), expected, "qemu-img convert");
    // Shared L2 tables and clusters (a snapshot) copied under the same pressure.
    run("qemu-img", ["snapshot", "-c", "s1", path]);
    const snapshot = expected.slice();
    const again = Qcow2Image.open(path, { readonly: false, cacheBytes: 0 });
    randomWrites(again, expected, 52, 300, 4000, 50);
    assertSameBytes(readAll(again), expected, "second session");
    again.close();
    assertClean(path);
    assertSameBytes(qemuReadAll(path), expected, "active layer");
    assertSameBytes(qemuReadAll(path, ["-l", "s1"]), snapshot, "snapshot s1");
  }),
});

Deno.test({
  name: "qcow2 internal snapshots: writes copy shared clusters and the snapshot keeps its data",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/s.qcow2`;
    create(path, "4M", ["cluster_size=4096"]);
    qemuIo(path, "qcow2", ["write -P 0x33 0 2M"]);
    run("qemu-img", ["snapshot", "-c", "s1", path]);
    const snapshot = qemuReadAll(path, ["-l", "s1"]);
    const disk = openDiskImage(path, { format: "qcow2", readonly: false });
    const expected = readAll(disk);
    randomWrites(disk, expected, 61, 100, 20000, 20);
    disk.close();
    assertClean(path);
    assertSameBytes(qemuReadAll(path), expected, "active layer");
    assertSameBytes(qemuReadAll(path, ["-l", "s1"]), snapshot, "snapshot s1");
  }),
});

Deno.test({
  name: "qcow2 writes keep header extensions and clear only the auto-clear bits",
  ignore,
  fn: withTempDir((dir) => {
    Deno.writeFileSync(`${dir}/base.raw`, new Uint8Array(MiB));
    const path = `${dir}/x.qcow2`;
    create(path, "1M", [], ["-b", "base.raw", "-F", "raw"]);
    run("qemu-img", ["bitmap", "--add", path, "b0"]);
    const before = Deno.readFileSync(path).slice(0, 65536);
    assert.equal(new DataView(before.buffer).getBigUint64(QCOW2_HDR_AUTOCLEAR_FEATURES), 1n);
    const disk = openDiskImage(path, { format: "qcow2", readonly: false });
    disk.write(4096, new Uint8Array(4096).fill(1));
    disk.close();
    const after = Deno.readFileSync(path).slice(0, 65536);
    assert.equal(new DataView(after.buffer).getBigUint64(QCOW2_HDR_AUTOCLEAR_FEATURES), 0n);
    after.set(before.subarray(88, 96), 88);
    assertSameBytes(after, before, "the rest of the first cluster");
    const info = JSON.parse(run("qemu-img", ["info", "--output=json", path]));
    assert.equal(info["backing-filename-format"], "raw");
    // QEMU now treats the bitmap as stale; its clusters may count as leaks, nothing worse.
    assertClean(path, true);
  }),
});

Deno.test({
  name: "qcow2 read-only images refuse writes and bounds are checked",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/r.qcow2`;
    create(path, "1M");
    qemuIo(path, "qcow2", ["write -P 0x71 0 4k"]);
    const bytes = Deno.readFileSync(path);
    const disk = openDiskImage(path, { format: "qcow2", readonly: true });
    assert.throws(() => disk.write(0, new Uint8Array(1)), DiskReadOnlyError);
    assert.throws(() => disk.read(MiB - 1, new Uint8Array(2)), DiskRangeError);
    assert.throws(() => disk.read(-512, new Uint8Array(512)), DiskRangeError);
    disk.close();
    assertSameBytes(Deno.readFileSync(path), bytes, "file untouched");
    const rw = openDiskImage(path, { format: "qcow2", readonly: false });
    assert.throws(() => rw.write(MiB, new Uint8Array(1)), DiskRangeError);
    assert.throws(() => rw.write(2 ** 53, new Uint8Array(1)), DiskRangeError);
    rw.close();
  }),
});

function patch(path: string, offset: number, set: (v: DataView) => void): void {
  const bytes = Deno.readFileSync(path);
  set(new DataView(bytes.buffer, offset));
  Deno.writeFileSync(path, bytes);
}

function openError(path: string, readonly = false): Error {
  try {
    openDiskImage(path, { format: "auto", readonly }).close();
  } catch (e) {
    return e as Error;
  }
  throw new Error(`"${path}" opened`);
}

Deno.test({
  name: "qcow2 unsupported features are refused with the feature named",
  ignore,
  fn: withTempDir((dir) => {
    create(`${dir}/l2.qcow2`, "1M", ["extended_l2=on"]);
    assert.match(openError(`${dir}/l2.qcow2`).message, /"extended L2 entries" \(bit 4\)/);
    create(`${dir}/data.qcow2`, "1M", [`data_file=${dir}/data.raw`]);
    assert.match(openError(`${dir}/data.qcow2`).message, /"external data file" \(bit 2\)/);
    // AES rather than LUKS: LUKS key derivation takes seconds; the header check is the same.
    create(`${dir}/aes.qcow2`, "1M", ["encrypt.format=aes", "encrypt.key-secret=s0"], [
      "--object",
      "secret,id=s0,data=pw",
    ]);
    assert.match(openError(`${dir}/aes.qcow2`).message, /is encrypted \(qcow2 AES encryption\)/);
    try {
      create(`${dir}/zstd.qcow2`, "1M", ["compression_type=zstd"]);
      assert.match(openError(`${dir}/zstd.qcow2`).message, /"compression type" \(bit 3\): zstd/);
    } catch (e) {
      if (!/zstd/.test(String(e))) throw e; // QEMU built without zstd
    }
    create(`${dir}/v4.qcow2`, "1M");
    patch(`${dir}/v4.qcow2`, QCOW2_HDR_VERSION, (v) => v.setUint32(0, 4));
    assert.match(openError(`${dir}/v4.qcow2`).message, /Unsupported qcow2 version 4/);
    create(`${dir}/bit.qcow2`, "1M");
    patch(`${dir}/bit.qcow2`, QCOW2_HDR_INCOMPATIBLE_FEATURES, (v) => v.setBigUint64(0, 1n << 20n));
    const e = openError(`${dir}/bit.qcow2`, true);
    assert.ok(e instanceof DiskFormatError);
    assert.match(e.message, /incompatible feature bit 20/);
  }),
});

Deno.test({
  name: "qcow2 images with the dirty or corrupt bit open read-only only",
  ignore,
  fn: withTempDir((dir) => {
    for (const [bit, word] of [[0n, "dirty bit"], [1n, "marked corrupt"]] as const) {
      const path = `${dir}/d${bit}.qcow2`;
      create(path, "1M");
      qemuIo(path, "qcow2", ["write -P 0x5c 0 4k"]);
      patch(path, QCOW2_HDR_INCOMPATIBLE_FEATURES, (v) => v.setBigUint64(0, 1n << bit));
      const e = openError(path, false);
      assert.ok(e instanceof DiskFormatError);
      assert.ok(e.message.includes(word), e.message);
      assert.match(e.message, /qemu-img check -r all/);
      const disk = openDiskImage(path, { format: "qcow2", readonly: true });
      const head = new Uint8Array(4);
      disk.read(0, head);
      assert.deepEqual(head, new Uint8Array(4).fill(0x5c));
      disk.close();
    }
  }),
});

Deno.test({
  name: "qcow2 with a missing backing file names it",
  ignore,
  fn: withTempDir((dir) => {
    Deno.writeFileSync(`${dir}/base.raw`, new Uint8Array(MiB));
    create(`${dir}/top.qcow2`, "1M", [], ["-b", "base.raw", "-F", "raw"]);
    Deno.removeSync(`${dir}/base.raw`);
    const e = openError(`${dir}/top.qcow2`, true);
    assert.ok(e instanceof DiskOpenError);
    assert.match(
      e.message,
      /Backing file ".*base\.raw" of disk image ".*top\.qcow2": .*does not exist/,
    );
  }),
});
