import assert from "node:assert/strict";
import { createCommand, parseCreateArgs } from "./create.ts";
import { UsageError } from "../command.ts";
import { ManagedError } from "../errors.ts";
import { openDiskImage } from "../../disk/image.ts";

Deno.test("create: format from the prefix, the name or -f; sizes in whole megabytes", () => {
  assert.deepEqual(parseCreateArgs(["a.qcow2"], { size: "1G" }), {
    path: "a.qcow2",
    format: "qcow2",
    sizeMegabytes: 1024,
    warnings: [],
  });
  assert.equal(parseCreateArgs(["qcow2:disk"], { size: "1M" }).format, "qcow2");
  assert.equal(parseCreateArgs(["qcow2:disk"], { size: "1M" }).path, "disk");
  assert.equal(parseCreateArgs(["raw:a.qcow2"], { size: "1M" }).format, "raw");
  assert.equal(parseCreateArgs(["a.img"], { size: "1M" }).format, "raw");
  assert.equal(parseCreateArgs(["a.img"], { size: "1M", format: "qcow2" }).format, "qcow2");
  assert.equal(parseCreateArgs(["a"], { size: "4.5G" }).sizeMegabytes, 4608);
  assert.deepEqual(parseCreateArgs(["a"], { size: "1.5M" }).warnings, [
    "size rounded to 1 megabytes",
  ]);
});

Deno.test("create: vmctl's refusals", () => {
  assert.throws(() => parseCreateArgs([], { size: "1M" }), UsageError);
  assert.throws(() => parseCreateArgs(["a"], {}), /could not create a: missing size argument/);
  assert.throws(
    () => parseCreateArgs(["a"], { size: "100" }),
    /size must be at least one megabyte/,
  );
  assert.throws(() => parseCreateArgs(["a"], { size: "1Q" }), /invalid size: 1Q: Invalid argument/);
  assert.throws(
    () => parseCreateArgs(["a.img"], { base: "b.qcow2" }),
    /base images require qcow2 disk format/,
  );
  assert.throws(
    () => parseCreateArgs(["a.qcow2"], { base: "b.qcow2", input: "c.img" }),
    (e: Error) => e instanceof ManagedError && /conflicting -b and -i arguments/.test(e.message),
  );
});

async function quietly(fn: () => Promise<number>): Promise<{ code: number; errors: string }> {
  const err = console.error;
  let errors = "";
  console.error = (s: string) => errors += s + "\n";
  try {
    return { code: await fn(), errors };
  } finally {
    console.error = err;
  }
}

Deno.test("create: images open with the right size; bases checked; -i copies; never overwrites", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmmctl-create-" });
  try {
    const run = (args: string[], flags: Record<string, string>) =>
      quietly(() => createCommand.run(args, flags));
    let r = await run([`${dir}/a.qcow2`], { size: "1M" });
    assert.equal(r.code, 0);
    assert.equal(r.errors, "vmmctl: qcow2 imagefile created\n");
    assert.equal((await run([`${dir}/b.img`], { size: "2M" })).code, 0);
    assert.equal((await run([`${dir}/c.qcow2`], { base: "a.qcow2" })).code, 0);
    r = await run([`${dir}/d.qcow2`], { base: "a.qcow2", size: "2M" });
    assert.equal(r.code, 1);
    assert.match(r.errors, /size 2M does not match the base image's 1M/);
    r = await run([`${dir}/e.qcow2`], { base: "b.img" });
    assert.equal(r.code, 1);
    assert.match(r.errors, /base image b\.img is not a qcow2 image/);
    r = await run([`${dir}/b.img`], { size: "2M" });
    assert.equal(r.code, 1);
    assert.match(r.errors, /already exists/);
    // -i: a raw image with data copied into qcow2, grown to 3M.
    const raw = openDiskImage(`${dir}/b.img`, { format: "raw", readonly: false });
    raw.write(1 << 20, new TextEncoder().encode("hello"));
    raw.close();
    r = await run([`qcow2:${dir}/f`], { input: `${dir}/b.img`, size: "3M" });
    assert.equal(r.code, 0, r.errors);
    r = await run([`${dir}/g.img`], { input: `${dir}/b.img`, size: "1M" });
    assert.match(r.errors, /size cannot be smaller than input disk size/);
    const f = openDiskImage(`${dir}/f`, { format: "auto", readonly: true });
    assert.equal(f.format, "qcow2");
    assert.equal(f.sizeBytes, 3 << 20);
    const back = new Uint8Array(5);
    f.read(1 << 20, back);
    assert.equal(new TextDecoder().decode(back), "hello");
    f.close();
    for (
      const [name, format, size] of [
        ["a.qcow2", "qcow2", 1 << 20],
        ["b.img", "raw", 2 << 20],
        ["c.qcow2", "qcow2", 1 << 20],
      ] as const
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
