/**
 * Hostile qcow2 images: metadata outside the file, zeroed or overflowing
 * refcounts, reserved bits and doubly-referenced clusters. Each is refused
 * as corrupt (naming `qemu-img check -r`) at open or on the write that would
 * use it, and never changes the header or grows the file without bound.
 */
import assert from "node:assert/strict";
import { DiskFormatError } from "./errors.ts";
import { openDiskImage } from "./image.ts";
import {
  QCOW2_HDR_L1_TABLE_OFFSET,
  QCOW2_HDR_REFCOUNT_ORDER,
  QCOW2_HDR_REFCOUNT_TABLE_OFFSET,
} from "./qcow2_format.ts";
import { HAVE_QEMU_TOOLS, qemuInfo, qemuIo, run, withTempDir } from "./test_helpers.ts";

const ignore = !HAVE_QEMU_TOOLS;

function create(path: string, size: string, options: string[] = []): void {
  const args = ["create", "-q", "-f", "qcow2"];
  if (options.length > 0) args.push("-o", options.join(","));
  run("qemu-img", [...args, path, size]);
}

function u64(bytes: Uint8Array, at: number): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(at));
}

/** Edits the file's bytes in place. */
function patch(path: string, edit: (bytes: Uint8Array, v: DataView) => void): void {
  const bytes = Deno.readFileSync(path);
  edit(bytes, new DataView(bytes.buffer));
  Deno.writeFileSync(path, bytes);
}

/** Host offset of the L2 table of L1 entry 0. */
function l2Of(bytes: Uint8Array): number {
  return u64(bytes, u64(bytes, QCOW2_HDR_L1_TABLE_OFFSET)) & 0x00ff_ffff_ffff_fe00;
}

/**
 * Opens the image writable, writes sector 1, flushes and closes. Either the
 * open or the write must be refused as corrupt; whatever happens, the header
 * stays and the file does not grow past `maxGrowth` bytes.
 */
function assertRefused(path: string, maxGrowth = 0, writeAt = 512): DiskFormatError {
  const before = Deno.readFileSync(path);
  let error: unknown;
  try {
    const disk = openDiskImage(path, { format: "qcow2", readonly: false });
    try {
      disk.write(writeAt, new Uint8Array(512).fill(0xee));
      disk.flush();
    } finally {
      try {
        disk.close();
      } catch {
        // the write's error is the one we assert on
      }
    }
  } catch (e) {
    error = e;
  }
  const after = Deno.readFileSync(path);
  assert.deepEqual(after.subarray(0, 512), before.subarray(0, 512), "the header is unchanged");
  assert.equal(qemuInfo(path).format, "qcow2", "qemu-img still sees a qcow2 image");
  assert.ok(after.length <= before.length + maxGrowth, `file grew to ${after.length} bytes`);
  assert.ok(error instanceof DiskFormatError, `refused as corrupt: ${error}`);
  assert.match(error.message, /[Cc]orrupt/);
  assert.match(error.message, /qemu-img check -r/);
  return error;
}

Deno.test({
  name: "qcow2 repro: a zeroed refcount table entry is refused, the header survives sector 1",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=512"]);
    patch(path, (b) => b.fill(0, u64(b, QCOW2_HDR_REFCOUNT_TABLE_OFFSET), u64(b, 48) + 8));
    assertRefused(path);
  }),
});

Deno.test({
  name: "qcow2: a zeroed refcount block (header and tables at refcount 0) is refused",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=512"]);
    patch(path, (b) => {
      const block = u64(b, u64(b, QCOW2_HDR_REFCOUNT_TABLE_OFFSET));
      b.fill(0, block, block + 512);
    });
    assertRefused(path);
  }),
});

Deno.test({
  name: "qcow2: refcount table or L1 table past the end of the file is refused at open",
  ignore,
  fn: withTempDir((dir) => {
    for (const field of [QCOW2_HDR_REFCOUNT_TABLE_OFFSET, QCOW2_HDR_L1_TABLE_OFFSET]) {
      const path = `${dir}/d${field}.qcow2`;
      create(path, "1M");
      patch(path, (_b, v) => v.setBigUint64(field, 1n << 40n)); // 1 TiB, cluster aligned
      const e = assertRefused(path);
      assert.match(e.message, /outside the file|past the end/);
    }
  }),
});

Deno.test({
  name: "qcow2: a truncated image (header only) is refused",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=512"]);
    const bytes = Deno.readFileSync(path);
    Deno.writeFileSync(path, bytes.subarray(0, 512));
    assertRefused(path);
  }),
});

Deno.test({
  name: "qcow2: a changed refcount_order is refused (the counts it reads are wrong)",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=512"]);
    patch(path, (_b, v) => v.setUint32(QCOW2_HDR_REFCOUNT_ORDER, 6));
    assertRefused(path);
  }),
});

Deno.test({
  name: "qcow2: all-0xffff refcounts do not grow the file past what the virtual size needs",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "512K");
    patch(path, (b) => {
      const block = u64(b, u64(b, QCOW2_HDR_REFCOUNT_TABLE_OFFSET));
      b.fill(0xff, block, block + 65536);
    });
    // Before: the first write skipped 32768 "used" clusters and grew the file to 2 GiB.
    assertRefused(path, 4 * 1024 * 1024);
  }),
});

Deno.test({
  name: "qcow2: reserved bits in an L1 or L2 entry are refused as corrupt",
  ignore,
  fn: withTempDir((dir) => {
    for (const where of ["L1", "L2"] as const) {
      const path = `${dir}/${where}.qcow2`;
      create(path, "1M", ["cluster_size=4096"]);
      qemuIo(path, "qcow2", ["write -P 0x11 0 8k"]);
      patch(path, (b, v) => {
        const at = where === "L1" ? u64(b, QCOW2_HDR_L1_TABLE_OFFSET) : l2Of(b);
        v.setUint8(at + 7, v.getUint8(at + 7) | 0x02); // bit 1
      });
      const e = assertRefused(path);
      assert.match(e.message, /reserved/);
    }
  }),
});

Deno.test({
  name: "qcow2: two L2 entries naming one host cluster are refused on write",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=4096"]);
    qemuIo(path, "qcow2", ["write -P 0x11 0 4k", "write -P 0x22 4k 4k"]);
    patch(path, (b) => {
      const l2 = l2Of(b);
      b.copyWithin(l2 + 8, l2, l2 + 8); // guest cluster 1 -> guest cluster 0's host cluster
    });
    const before = Deno.readFileSync(path);
    const e = assertRefused(path);
    assert.match(e.message, /more than one L2 entry/);
    assert.deepEqual(Deno.readFileSync(path), before, "nothing was written");
  }),
});

Deno.test({
  name: "qcow2: an L2 entry pointing at the header is refused before anything is written",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=4096"]);
    qemuIo(path, "qcow2", ["write -P 0x11 0 4k"]);
    patch(path, (b, v) => {
      const l2 = l2Of(b);
      v.setUint32(l2, 0x80000000); // COPIED, host offset 0 (the header)
      v.setUint32(l2 + 4, 0);
      v.setUint32(l2 + 8, 0x80000000);
      v.setUint32(l2 + 12, 4096); // guest cluster 1 -> the refcount table's cluster
    });
    assertRefused(path);
  }),
});

Deno.test({
  name: "qcow2: clean images still open writable and read-only opens of hostile ones still read",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=512"]);
    qemuIo(path, "qcow2", ["write -P 0x33 0 4k"]);
    const disk = openDiskImage(path, { format: "qcow2", readonly: false });
    disk.write(512, new Uint8Array(512).fill(0x44));
    disk.close();
    const sector = new Uint8Array(512);
    const ro = openDiskImage(path, { format: "qcow2", readonly: true });
    ro.read(512, sector);
    ro.close();
    assert.deepEqual(sector, new Uint8Array(512).fill(0x44));
  }),
});

Deno.test({
  name: "qcow2: a snapshot's data cluster at refcount 0 is never handed out for new data",
  ignore,
  fn: withTempDir((dir) => {
    const path = `${dir}/d.qcow2`;
    create(path, "1M", ["cluster_size=4096"]);
    qemuIo(path, "qcow2", ["write -P 0x11 0 4k"]);
    run("qemu-img", ["snapshot", "-c", "s1", path]);
    qemuIo(path, "qcow2", ["write -P 0x22 0 4k"]); // the snapshot alone keeps the 0x11 cluster
    patch(path, (b, v) => {
      const snapshotL1 = u64(b, u64(b, 64)); // first snapshot entry: l1_table_offset
      const l2 = u64(b, snapshotL1) & 0x00ff_ffff_ffff_fe00;
      const host = u64(b, l2) & 0x00ff_ffff_ffff_fe00;
      const block = u64(b, u64(b, QCOW2_HDR_REFCOUNT_TABLE_OFFSET));
      v.setUint16(block + 2 * (host / 4096), 0);
    });
    const e = assertRefused(path, 0, 512 * 1024); // a write that allocates
    assert.match(e.message, /holds guest data but its refcount is 0/);
  }),
});
