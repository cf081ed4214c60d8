import assert from "node:assert/strict";
import { createCommand, parseCreateArgs } from "./create.ts";
import { UsageError } from "../command.ts";
import { openDiskImage } from "../../disk/image.ts";

Deno.test("create: format from -f, the name, or the base; sizes parsed", () => {
  assert.deepEqual(parseCreateArgs(["a.qcow2"], { size: "1G" }), {
    path: "a.qcow2",
    format: "qcow2",
    sizeBytes: 1024 ** 3,
    backing: undefined,
  });
  assert.equal(parseCreateArgs(["a.img"], { size: "1M" }).format, "raw");
  assert.equal(parseCreateArgs(["disk"], { size: "1M" }).format, "raw");
  assert.equal(parseCreateArgs(["disk"], { base: "b.qcow2" }).format, "qcow2");
  assert.equal(parseCreateArgs(["a.img"], { size: "1M", format: "qcow2" }).format, "qcow2");
});

Deno.test("create: usage errors", () => {
  assert.throws(() => parseCreateArgs([], { size: "1M" }), UsageError);
  assert.throws(() => parseCreateArgs(["a"], {}), /needs a size/);
  assert.throws(() => parseCreateArgs(["a"], { size: "1Q" }), UsageError);
  assert.throws(
    () => parseCreateArgs(["a"], { size: "1M", format: "vmdk" }),
    /unknown disk format "vmdk"/,
  );
  assert.throws(() => parseCreateArgs(["a.img"], { base: "b" }), /needs the qcow2 format/);
});

Deno.test("create: makes images that open with the right size; never overwrites", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log = console.log;
    console.log = () => {};
    const err = console.error;
    let errors = "";
    console.error = (s: string) => errors += s;
    try {
      assert.equal(await createCommand.run([`${dir}/a.qcow2`], { size: "1M" }), 0);
      assert.equal(await createCommand.run([`${dir}/b.img`], { size: "3K" }), 0);
      assert.equal(await createCommand.run([`${dir}/c.qcow2`], { base: "a.qcow2" }), 0);
      assert.equal(await createCommand.run([`${dir}/b.img`], { size: "3K" }), 1);
      assert.match(errors, /already exists/);
    } finally {
      console.log = log;
      console.error = err;
    }
    for (
      const [name, format, size] of [["a.qcow2", "qcow2", 1 << 20], ["b.img", "raw", 3072], [
        "c.qcow2",
        "qcow2",
        1 << 20,
      ]] as const
    ) {
      const d = openDiskImage(`${dir}/${name}`, { format: "auto", readonly: true });
      assert.equal(d.format, format);
      assert.equal(d.sizeBytes, size);
      d.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
