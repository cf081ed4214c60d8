import assert from "node:assert/strict";
import { LoaderError } from "./common.ts";
import { readImageFile } from "./image_file.ts";

const MiB = 2 ** 20;

async function inTempDir(f: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "guest-image-file-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readImageFile: a regular file within the bound is read whole", async () => {
  await inTempDir((dir) => {
    const data = new Uint8Array(100_000).map((_, i) => i * 31);
    Deno.writeFileSync(`${dir}/k`, data);
    assert.deepEqual(readImageFile(`${dir}/k`, 100_000, "kernel"), data);
    assert.throws(() => readImageFile(`${dir}/k`, 99_999, "kernel"), /more than guest RAM/);
  });
});

Deno.test("readImageFile: a 5 GiB sparse kernel is refused from its size, before reading", async () => {
  await inTempDir((dir) => {
    const path = `${dir}/sparse`;
    const f = Deno.openSync(path, { write: true, create: true });
    f.truncateSync(5 * 2 ** 30);
    f.close();
    // Remove read permission: reading would fail differently, so the size check must come first.
    Deno.chmodSync(path, 0o200);
    const isRoot = Deno.uid() === 0;
    assert.throws(
      () => readImageFile(path, 64 * MiB, "kernel"),
      (e) =>
        e instanceof LoaderError &&
        /kernel ".*sparse" is 5G, more than guest RAM \(64M\)/.test(e.message),
    );
    if (!isRoot) assert.throws(() => Deno.readFileSync(path), Deno.errors.PermissionDenied);
  });
});

Deno.test("readImageFile: FIFOs, devices, directories and /proc files are refused without blocking", async () => {
  await inTempDir(async (dir) => {
    const fifo = `${dir}/fifo`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(mk.success);
    // Opening a FIFO with no writer blocks forever: the test would hang, not fail, if it were opened.
    assert.throws(
      () => readImageFile(fifo, 64 * MiB, "initrd"),
      /initrd ".*fifo" is a FIFO, not a regular file/,
    );
    assert.throws(() => readImageFile("/dev/zero", 64 * MiB, "kernel"), /is a character device/);
    assert.throws(() => readImageFile(dir, 64 * MiB, "kernel"), /is a directory/);
    // stat() says 0 bytes; reading it would yield 8 bytes per page of the address space.
    assert.throws(
      () => readImageFile("/proc/self/pagemap", 64 * MiB, "kernel"),
      /is empty \(or a \/proc/,
    );
    assert.throws(
      () => readImageFile(`${dir}/none`, 64 * MiB, "kernel"),
      /kernel ".*none": .*No such file/,
    );
    Deno.symlinkSync("loop", `${dir}/loop`);
    assert.throws(() => readImageFile(`${dir}/loop`, 64 * MiB, "kernel"), LoaderError);
  });
});
