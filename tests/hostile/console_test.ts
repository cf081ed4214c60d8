/**
 * Console sinks that cannot take output: `check` refuses them, and a VM
 * started anyway ends with a clear reason instead of blocking forever (a
 * FIFO) or dying with an uncaught worker error (a symlink loop).
 */
import assert from "node:assert/strict";
import { formatConfigError, parseConfig } from "../../config/parse.ts";
import { VmHost } from "../../machine/host.ts";
import { nullConfig, tinyKernel } from "../harness/null_accel.ts";

async function withSinks(f: (paths: { fifo: string; loop: string; dir: string }) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "guest-console-" });
  try {
    const fifo = `${dir}/fifo`;
    assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
    const loop = `${dir}/loop`;
    await Deno.symlink(`${dir}/loop`, loop);
    await Deno.writeFile(`${dir}/k`, tinyKernel());
    await f({ fifo, loop, dir });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check refuses serial = file: of a FIFO and of a symlink loop", async () => {
  await withSinks(({ fifo, loop, dir }) => {
    const errors = (sink: string) =>
      parseConfig(`[vm]\nname = "c"\n[boot]\nkernel = "k"\n[console]\nserial = "file:${sink}"\n`, {
        baseDir: dir,
      }).errors.map(formatConfigError);
    assert.deepEqual(errors(fifo), [
      `console.serial (line 6): file "${fifo}" is a FIFO: the VM would block whenever nobody ` +
      'reads it; use a regular file or serial = "pty"',
    ]);
    assert.deepEqual(errors(loop), [
      `console.serial (line 6): file "${loop}" is a loop of symbolic links`,
    ]);
    assert.deepEqual(errors("/dev/null"), []);
    assert.deepEqual(errors(`${dir}/new.log`), []);
    return Promise.resolve();
  });
});

Deno.test("a VM whose console file is a FIFO or a symlink loop ends at once with the reason", async () => {
  await withSinks(async ({ fifo, loop }) => {
    for (
      const [path, re] of [[fifo, /is a FIFO/], [loop, /is a loop of symbolic links/]] as const
    ) {
      const host = new VmHost({
        config: nullConfig(),
        serial: { serial: "file", path },
        kernelImage: tinyKernel(),
      });
      const outcome = await host.start();
      assert.equal(outcome.kind, "failed");
      assert.match(
        (outcome as { reason: string }).reason,
        new RegExp(`console file ".*" ${re.source}`),
      );
    }
  });
});
