import assert from "node:assert/strict";
import { createDiskImage, formatFromName } from "./create.ts";
import { DiskOpenError } from "./errors.ts";
import { openDiskImage } from "./image.ts";
import { Qcow2Image } from "./qcow2.ts";
import {
  firstDifference,
  HAVE_QEMU_TOOLS,
  qemuCheck,
  qemuInfo,
  qemuIo,
  qemuReadAll,
  readAll,
  Rng,
  withTempDir,
} from "./test_helpers.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const ignore = !HAVE_QEMU_TOOLS;

Deno.test("formatFromName maps extensions to formats", () => {
  assert.equal(formatFromName("vm.qcow2"), "qcow2");
  assert.equal(formatFromName("/a/b/VM.QCOW2"), "qcow2");
  assert.equal(formatFromName("disk.raw"), "raw");
  assert.equal(formatFromName("disk.img"), "raw");
  assert.equal(formatFromName("disk.vmdk"), undefined);
  assert.equal(formatFromName("disk"), undefined);
  assert.equal(formatFromName("qcow2"), undefined);
});

Deno.test(
  "createDiskImage makes a sparse raw file of the size",
  withTempDir((dir) => {
    const path = `${dir}/disk.img`;
    const made = createDiskImage(path, { format: "raw", sizeBytes: 4 * GiB });
    assert.deepEqual(made, { path, format: "raw", sizeBytes: 4 * GiB });
    const info = Deno.statSync(path);
    assert.equal(info.size, 4 * GiB);
    assert.ok((info.blocks ?? 0) * 512 < MiB, `sparse: ${info.blocks} blocks allocated`);
    const disk = openDiskImage(path, { format: "auto", readonly: false });
    assert.equal(disk.format, "raw");
    const tail = new Uint8Array(4096).fill(1);
    disk.read(4 * GiB - 4096, tail);
    assert.deepEqual(tail, new Uint8Array(4096));
    disk.close();
  }),
);

Deno.test(
  "createDiskImage rounds sizes up to whole sectors and rejects bad ones",
  withTempDir((dir) => {
    assert.equal(
      createDiskImage(`${dir}/a.img`, { format: "raw", sizeBytes: 1000 }).sizeBytes,
      1024,
    );
    assert.equal(Deno.statSync(`${dir}/a.img`).size, 1024);
    for (const sizeBytes of [0, -512, 1.5, Number.NaN, 2 ** 60]) {
      assert.throws(
        () => createDiskImage(`${dir}/b.img`, { format: "raw", sizeBytes }),
        /is not a positive whole number of bytes/,
      );
    }
    assert.throws(() => createDiskImage(`${dir}/c.img`, { format: "raw" }), /no size given/);
    assert.throws(
      () => createDiskImage(`${dir}/d.qcow2`, { format: "qcow2", sizeBytes: 2 ** 52 }),
      /too large for qcow2/,
    );
    assert.throws(() => Deno.statSync(`${dir}/b.img`), Deno.errors.NotFound);
    assert.throws(() => Deno.statSync(`${dir}/d.qcow2`), Deno.errors.NotFound);
  }),
);

Deno.test(
  "createDiskImage never overwrites an existing file",
  withTempDir((dir) => {
    for (const format of ["raw", "qcow2"] as const) {
      const path = `${dir}/existing.${format}`;
      Deno.writeTextFileSync(path, "precious");
      assert.throws(
        () => createDiskImage(path, { format, sizeBytes: MiB }),
        (e: Error) =>
          e instanceof DiskOpenError && /already exists: not overwriting it/.test(e.message),
      );
      assert.equal(Deno.readTextFileSync(path), "precious");
    }
  }),
);

Deno.test(
  "createDiskImage refuses backing files for raw and missing backing files",
  withTempDir((dir) => {
    Deno.writeFileSync(`${dir}/base.img`, new Uint8Array(MiB));
    assert.throws(
      () => createDiskImage(`${dir}/x.img`, { format: "raw", backing: "base.img" }),
      /only qcow2 images can have a backing file/,
    );
    assert.throws(
      () => createDiskImage(`${dir}/y.qcow2`, { format: "qcow2", backing: "missing.img" }),
      /backing file "missing\.img": Disk image ".*missing\.img" does not exist/,
    );
    assert.throws(() => Deno.statSync(`${dir}/y.qcow2`), Deno.errors.NotFound);
  }),
);

Deno.test({
  name: "createDiskImage qcow2: qemu-img sees a clean v3 image with 64 KiB clusters",
  ignore,
  fn: withTempDir((dir) => {
    for (const size of [MiB, 10 * GiB + 512, 2 * 1024 * GiB]) {
      const path = `${dir}/new-${size}.qcow2`;
      createDiskImage(path, { format: "qcow2", sizeBytes: size });
      const info = qemuInfo(path);
      assert.equal(info.format, "qcow2");
      assert.equal(info["virtual-size"], size);
      assert.equal(info["cluster-size"], 65536);
      const specific = (info["format-specific"] as { data: Record<string, unknown> }).data;
      assert.equal(specific.compat, "1.1");
      assert.equal(specific["refcount-bits"], 16);
      assert.equal(specific["lazy-refcounts"], false);
      const check = qemuCheck(path);
      assert.equal(check["check-errors"], 0);
      assert.equal(check.leaks ?? 0, 0);
      assert.equal(check.corruptions ?? 0, 0);
    }
  }),
});

Deno.test({
  name: "createDiskImage qcow2: QEMU and we read each other's writes",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/rw.qcow2`;
    createDiskImage(path, { format: "qcow2", sizeBytes: 16 * MiB });
    qemuIo(path, "qcow2", ["write -P 0x3c 1M 100k"]);
    const disk = openDiskImage(path, { format: "auto", readonly: false });
    const expected = readAll(disk);
    assert.equal(expected[MiB + 5], 0x3c);
    const data = new Rng(3).bytes(200000);
    disk.write(5 * MiB - 7, data);
    expected.set(data, 5 * MiB - 7);
    disk.close();
    const check = qemuCheck(path);
    assert.equal(check["check-errors"], 0);
    assert.equal(check.leaks ?? 0, 0);
    assert.equal(firstDifference(qemuReadAll(path), expected), -1);
  }),
});

Deno.test({
  name: "createDiskImage qcow2 over a backing file: size and format from the base, reads through",
  ignore,
  fn: withTempDir((dir) => {
    Deno.mkdirSync(`${dir}/vms`);
    const base = new Rng(9).bytes(3 * MiB + 512);
    Deno.writeFileSync(`${dir}/base.img`, base);
    createDiskImage(`${dir}/mid.qcow2`, { format: "qcow2", backing: "base.img" });
    // The name is stored as given and resolved against the new image's folder.
    const made = createDiskImage(`${dir}/vms/top.qcow2`, {
      format: "qcow2",
      backing: "../mid.qcow2",
    });
    assert.deepEqual(made, {
      path: `${dir}/vms/top.qcow2`,
      format: "qcow2",
      sizeBytes: 3 * MiB + 512,
      backing: "../mid.qcow2",
      backingFormat: "qcow2",
    });
    const info = qemuInfo(`${dir}/vms/top.qcow2`);
    assert.equal(info["virtual-size"], 3 * MiB + 512);
    assert.equal(info["backing-filename"], "../mid.qcow2");
    assert.equal(info["backing-filename-format"], "qcow2");
    assert.equal(qemuInfo(`${dir}/mid.qcow2`)["backing-filename-format"], "raw");
    assert.equal(qemuCheck(`${dir}/vms/top.qcow2`)["check-errors"], 0);
    assert.equal(firstDifference(qemuReadAll(`${dir}/vms/top.qcow2`), base), -1);
    const disk = Qcow2Image.open(`${dir}/vms/top.qcow2`, { readonly: false });
    assert.equal(firstDifference(readAll(disk), base), -1);
    const expected = base.slice();
    expected.set(new Uint8Array(10).fill(0xfe), 2 * MiB + 3);
    disk.write(2 * MiB + 3, new Uint8Array(10).fill(0xfe));
    disk.close();
    assert.equal(firstDifference(qemuReadAll(`${dir}/vms/top.qcow2`), expected), -1);
    assert.equal(firstDifference(Deno.readFileSync(`${dir}/base.img`), base), -1);
    // An explicit size wins over the base's.
    createDiskImage(`${dir}/big.qcow2`, {
      format: "qcow2",
      backing: "base.img",
      sizeBytes: 8 * MiB,
    });
    assert.equal(qemuInfo(`${dir}/big.qcow2`)["virtual-size"], 8 * MiB);
  }),
});
