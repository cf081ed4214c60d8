import assert from "node:assert/strict";
import { guestRamRssKiB, parseSmaps, vmRssKiB } from "./memory.ts";
import { nsPerIteration } from "./compute.ts";
import type { ChildRun } from "./child.ts";
import { benchBlockIo } from "./blockio.ts";

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

Deno.test("benchBlockIo says why each virtio-blk row is missing", () => {
  const rows = benchBlockIo();
  assert.equal(rows.length, 4);
  for (const r of rows) {
    assert.equal(r.ours, undefined);
    assert.match(r.note!, /^skipped: virtio-blk not available/);
  }
});
