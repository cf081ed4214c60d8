/**
 * Crash safety: a child process writes and flushes, keeps writing, and is
 * SIGKILLed. The flushed data must be in the image afterwards, and a qcow2
 * image must pass `qemu-img check` with no errors. Leaked clusters (counted
 * but unused, from the writes cut short) are allowed: they waste space only.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { openDiskImage } from "./image.ts";
import { CRASH_REGION_A, crashPattern } from "./testdata/crash_plan.ts";
import {
  firstDifference,
  HAVE_QEMU_TOOLS,
  qemuCheck,
  qemuReadAll,
  run,
  withTempDir,
} from "./test_helpers.ts";

const CHILD = fileURLToPath(new URL("./testdata/crash_child.ts", import.meta.url));
const IMAGE_BYTES = 8 * 1024 * 1024;

/** Runs the child until it reports it is busy writing, waits a little more, kills it. */
async function runAndKill(path: string, format: string, delayMs: number): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", CHILD, path, format],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("busy")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  assert.ok(seen.includes("flushed") && seen.includes("busy"), `child said: ${seen}`);
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL", "the child was killed, not finished");
  await reader.cancel().catch(() => {});
}

function assertRegionA(bytes: Uint8Array, what: string): void {
  for (const [offset, length] of CRASH_REGION_A) {
    const at = firstDifference(
      bytes.subarray(offset, offset + length),
      crashPattern(offset, length, 1),
    );
    assert.equal(at, -1, `${what}: flushed write at ${offset} differs at +${at}`);
  }
}

Deno.test(
  "a flushed raw write survives SIGKILL of the writer",
  withTempDir(async (dir) => {
    const path = `${dir}/crash.img`;
    Deno.writeFileSync(path, new Uint8Array(IMAGE_BYTES));
    await runAndKill(path, "raw", 30);
    assertRegionA(Deno.readFileSync(path), "raw file");
  }),
);

for (
  const [name, options, delayMs] of [
    ["64 KiB clusters", [], 30],
    ["512-byte clusters", ["cluster_size=512"], 80],
    ["v2, 4 KiB clusters", ["compat=0.10", "cluster_size=4096"], 5],
  ] as const
) {
  Deno.test({
    name: `a flushed qcow2 write (${name}) survives SIGKILL and the image stays consistent`,
    ignore: !HAVE_QEMU_TOOLS,
    fn: withTempDir(async (dir) => {
      const path = `${dir}/crash.qcow2`;
      const args = ["create", "-q", "-f", "qcow2"];
      if (options.length > 0) args.push("-o", options.join(","));
      run("qemu-img", [...args, path, String(IMAGE_BYTES)]);
      await runAndKill(path, "qcow2", delayMs);
      const report = qemuCheck(path);
      assert.equal(report["check-errors"], 0, JSON.stringify(report));
      assert.equal(
        report.corruptions ?? 0,
        0,
        `no corruption (leaks allowed): ${JSON.stringify(report)}`,
      );
      assertRegionA(qemuReadAll(path), "qemu-img convert");
      const disk = openDiskImage(path, { format: "qcow2", readonly: false });
      const all = new Uint8Array(disk.sizeBytes);
      disk.read(0, all);
      assertRegionA(all, "our reader");
      disk.close();
    }),
  });
}
