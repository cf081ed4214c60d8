import assert from "node:assert/strict";
import { guestRamRssKiB, parseSmaps, vmRssKiB } from "./memory.ts";
import { nsPerIteration } from "./compute.ts";
import type { ChildRun } from "./child.ts";
import { blockIoSkipped, makeDiskImage, parsePhaseCycles, phaseWallMs } from "./blockio.ts";

const SMAPS = `55d0c0a00000-55d0c0a22000 r--p 00000000 fe:01 1234       /usr/bin/qemu-system-x86_64
Size:                136 kB
Rss:                 136 kB
Pss:                  68 kB
7f0000000000-7f0004200000 rw-p 00000000 00:00 0 
Size:              67584 kB
Rss:                2048 kB
7f1000000000-7f1004000000 rw-p 00000000 00:00 0
Size:              65536 kB
Rss:                  28 kB
7f2000000000-7f2010000000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:               90000 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  12 kB
`;

Deno.test("parseSmaps reads ranges, paths, Size and Rss", () => {
  const maps = parseSmaps(SMAPS);
  assert.equal(maps.length, 5);
  assert.deepEqual(maps[0], {
    start: 0x55d0c0a00000n,
    end: 0x55d0c0a22000n,
    path: "/usr/bin/qemu-system-x86_64",
    sizeKiB: 136,
    rssKiB: 136,
  });
  assert.equal(maps[1].path, "");
  assert.equal(maps[4].path, "[stack]");
  assert.equal(maps[4].rssKiB, 12);
});

Deno.test("guestRamRssKiB counts anonymous mappings of the RAM size (plus alignment slack) only", () => {
  const maps = parseSmaps(SMAPS);
  // 64 MiB: the 66 MiB (aligned) and the exact 64 MiB mapping, not the 256 MiB heap or the stack.
  assert.equal(guestRamRssKiB(maps, 65536), 2048 + 28);
  assert.equal(guestRamRssKiB(maps, 128 * 1024), 0);
});

Deno.test("vmRssKiB reads the VmRSS line and refuses text without one", () => {
  assert.equal(vmRssKiB("Name:\tdeno\nVmPeak:\t 9 kB\nVmRSS:\t   80264 kB\nThreads:\t9\n"), 80264);
  assert.throws(() => vmRssKiB("Name:\tdeno\n"), /No VmRSS/);
});

Deno.test("nsPerIteration subtracts the median empty run from each full run", () => {
  const run = (exitMs: number) => ({ exitMs }) as ChildRun;
  const ns = nsPerIteration([run(1100), run(1300)], [run(90), run(100), run(500)], 1e9);
  assert.deepEqual(ns, [1, 1.2]);
});

Deno.test("blockIoSkipped says why each virtio-blk row is missing", () => {
  const rows = blockIoSkipped("virtio-blk not available");
  assert.equal(rows.length, 4);
  for (const r of rows) {
    assert.equal(r.ours, undefined);
    assert.equal(r.note, "skipped: virtio-blk not available");
  }
});

Deno.test("parsePhaseCycles reads the four hex cycle counts in order and refuses gaps", () => {
  const serial = "bench_blk guest\r\ncapacity=131072 n=5\r\n" +
    "phase 1 cycles=00000000045380e4\r\nphase 2 cycles=0000000100000000\r\n" +
    "phase 3 cycles=0000000000000010\r\nphase 4 cycles=00000000000000ff\r\ndone\r\n";
  assert.deepEqual(parsePhaseCycles(serial), [0x45380e4, 2 ** 32, 16, 255]);
  assert.throws(
    () => parsePhaseCycles("phase 2 cycles=0000000000000001\n"),
    /phase 2 out of order/,
  );
  assert.throws(() => parsePhaseCycles("phase 1 cycles=0000000000000001\n"), /printed 1 phases/);
});

Deno.test("phaseWallMs takes the gaps between POST codes 0xB0..0xB4", () => {
  const post = [0xb0, 0xb1, 0xb2, 0xb3, 0xb4].map((code, i) => ({ code, atNs: i * i * 1e6 }));
  assert.deepEqual(phaseWallMs([{ code: 1, atNs: 0 }, ...post]), [1, 3, 5, 7]);
  assert.throws(() => phaseWallMs(post.slice(0, 4)), /no POST code 0xb4/);
});

Deno.test("makeDiskImage writes the size asked for, without zero pages", async () => {
  const path = await Deno.makeTempFile();
  try {
    await makeDiskImage(path, 2 * 2 ** 20);
    const bytes = await Deno.readFile(path);
    assert.equal(bytes.length, 2 * 2 ** 20);
    assert.ok(bytes.subarray(0, 4096).some((b) => b !== 0));
  } finally {
    await Deno.remove(path);
  }
});
