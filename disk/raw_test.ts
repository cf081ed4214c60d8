import assert from "node:assert/strict";
import { createDiskImage } from "./create.ts";
import { DiskIoError, DiskOpenError, DiskRangeError, DiskReadOnlyError } from "./errors.ts";
import { openDiskImage } from "./image.ts";
import { RawImage } from "./raw.ts";
import { Rng, withTempDir } from "./test_helpers.ts";

Deno.test(
  "raw image reads and writes the file's bytes",
  withTempDir((dir) => {
    const path = `${dir}/disk.img`;
    const initial = new Rng(7).bytes(1 << 20);
    Deno.writeFileSync(path, initial);
    const disk = openDiskImage(path, { format: "raw", readonly: false });
    assert.equal(disk.format, "raw");
    assert.equal(disk.sizeBytes, 1 << 20);
    const part = new Uint8Array(1000);
    disk.read(12345, part);
    assert.deepEqual(part, initial.subarray(12345, 13345));
    const data = new Rng(8).bytes(70000);
    disk.write(1000, data);
    disk.flush();
    disk.close();
    disk.close(); // idempotent
    const expected = initial.slice();
    expected.set(data, 1000);
    assert.deepEqual(Deno.readFileSync(path), expected);
  }),
);

Deno.test(
  "raw image checks bounds with DiskRangeError",
  withTempDir((dir) => {
    const path = `${dir}/disk.img`;
    Deno.writeFileSync(path, new Uint8Array(4096));
    const disk = RawImage.open(path, { readonly: false });
    disk.read(4096, new Uint8Array(0)); // empty access at the end is fine
    disk.read(3584, new Uint8Array(512));
    for (const [offset, length] of [[4095, 2], [4096, 1], [-1, 1], [0.5, 1], [2 ** 60, 1]]) {
      assert.throws(() => disk.read(offset, new Uint8Array(length)), DiskRangeError);
      assert.throws(() => disk.write(offset, new Uint8Array(length)), DiskRangeError);
    }
    assert.throws(() => disk.read(0, new Uint8Array(4097)), /outside disk image/);
    disk.close();
    assert.throws(() => disk.read(0, new Uint8Array(1)), DiskIoError);
  }),
);

Deno.test(
  "raw image opened read-only refuses writes",
  withTempDir((dir) => {
    const path = `${dir}/disk.img`;
    Deno.writeFileSync(path, new Uint8Array(4096).fill(9));
    const disk = openDiskImage(path, { format: "auto", readonly: true });
    assert.equal(disk.readonly, true);
    assert.throws(() => disk.write(0, new Uint8Array([1])), DiskReadOnlyError);
    disk.flush();
    disk.close();
    assert.deepEqual(Deno.readFileSync(path), new Uint8Array(4096).fill(9));
  }),
);

Deno.test(
  "detected raw image refuses a qcow2 magic in its first bytes",
  withTempDir((dir) => {
    const path = `${dir}/disk.img`;
    Deno.writeFileSync(path, new Uint8Array(4096));
    const magic = new Uint8Array([0x51, 0x46, 0x49, 0xfb]);
    const auto = openDiskImage(path, { format: "auto", readonly: false });
    assert.throws(() => auto.write(0, magic), /Refusing to write a qcow2 header/);
    auto.write(0, new Uint8Array([0x51, 0x46, 0x49])); // not the magic yet
    assert.throws(() => auto.write(3, new Uint8Array([0xfb])), DiskReadOnlyError);
    auto.write(4, magic); // elsewhere is fine
    auto.close();
    const explicit = openDiskImage(path, { format: "raw", readonly: false });
    explicit.write(0, magic);
    explicit.close();
    assert.deepEqual(Deno.readFileSync(path).subarray(0, 8), new Uint8Array([...magic, ...magic]));
  }),
);

Deno.test(
  "openDiskImage explains missing files, folders and devices",
  withTempDir((dir) => {
    assert.throws(
      () => openDiskImage(`${dir}/none.img`, { format: "auto", readonly: true }),
      (e: Error) => e instanceof DiskOpenError && /does not exist/.test(e.message),
    );
    assert.throws(() => openDiskImage(dir, { format: "raw", readonly: true }), /is a directory/);
    assert.throws(
      () => openDiskImage("/dev/null", { format: "raw", readonly: true }),
      /not a regular file or block device/,
    );
  }),
);

Deno.test(
  "an image open for writing is locked against a second writer",
  withTempDir((dir) => {
    const path = `${dir}/disk.img`;
    Deno.writeFileSync(path, new Uint8Array(4096));
    const first = openDiskImage(path, { format: "raw", readonly: false });
    assert.throws(
      () => openDiskImage(path, { format: "raw", readonly: false }),
      /in use by another/,
    );
    assert.throws(() => openDiskImage(path, { format: "raw", readonly: true }), DiskOpenError);
    first.close();
    const reader1 = openDiskImage(path, { format: "raw", readonly: true });
    const reader2 = openDiskImage(path, { format: "raw", readonly: true });
    reader1.close();
    reader2.close();
  }),
);

Deno.test(
  "a raw image that shrinks under us reports an I/O error, not zeros",
  withTempDir((dir) => {
    const path = `${dir}/disk.img`;
    Deno.writeFileSync(path, new Uint8Array(8192).fill(1));
    const disk = openDiskImage(path, { format: "raw", readonly: true });
    Deno.truncateSync(path, 4096);
    assert.throws(() => disk.read(4096, new Uint8Array(512)), /Unexpected end of disk image/);
    disk.close();
  }),
);

Deno.test(
  "openDiskImage detects qcow2 by its magic",
  withTempDir((dir) => {
    createDiskImage(`${dir}/a.qcow2`, { format: "qcow2", sizeBytes: 1 << 20 });
    const disk = openDiskImage(`${dir}/a.qcow2`, { format: "auto", readonly: true });
    assert.equal(disk.format, "qcow2");
    assert.equal(disk.sizeBytes, 1 << 20);
    disk.close();
    // Given as raw, the same file is its own bytes.
    const raw = openDiskImage(`${dir}/a.qcow2`, { format: "raw", readonly: true });
    assert.equal(raw.format, "raw");
    assert.equal(raw.sizeBytes, Deno.statSync(`${dir}/a.qcow2`).size);
    raw.close();
  }),
);
