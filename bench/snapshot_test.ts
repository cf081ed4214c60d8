import assert from "node:assert/strict";
import { kvmAvailable } from "../tests/boot.ts";
import { CC_PATH } from "../tests/cc.ts";
import { encodeSnapshot, NO_MMIO, NO_PORT, nonZeroPages } from "./snapshot.ts";
import { makeDiskImage, runOursBlk } from "./blockio.ts";
import { compileKvmLoop, EXIT_GUESTS, runC, runOurs, writeSnapshot } from "./exits.ts";
import { createAccel } from "../accel/select.ts";
import { openLibc } from "../ffi/libc.ts";

Deno.test("nonZeroPages keeps only pages with a non-zero byte, with their addresses", () => {
  const ram = new Uint8Array(4 * 4096);
  ram[4096 + 4095] = 1;
  ram[3 * 4096] = 0xff;
  const pages = nonZeroPages((gpa, n) => ram.subarray(gpa, gpa + n), [{
    gpa: 0,
    size: ram.length,
  }]);
  assert.deepEqual(pages.map((p) => p.gpa), [4096, 3 * 4096]);
  assert.equal(pages[0].bytes[4095], 1);
  ram[3 * 4096] = 0; // the kept page is a copy
  assert.equal(pages[1].bytes[0], 0xff);
});

Deno.test("encodeSnapshot lays out header, regions, registers and pages as kvm_loop.c reads them", () => {
  const page = new Uint8Array(4096).fill(7);
  const bytes = encodeSnapshot({
    exitPort: 0xf4,
    countPort: 0x80,
    regions: [{ gpa: 0, size: 0x100000 }],
    regs: Uint8Array.of(1, 2, 3),
    sregs: Uint8Array.of(4, 5),
    pages: [{ gpa: 0x2000, bytes: page }],
  });
  const v = new DataView(bytes.buffer);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), "VMMBSNAP");
  assert.equal(v.getUint32(8, true), 1);
  assert.equal(v.getUint32(12, true), 0xf4);
  assert.equal(v.getUint32(16, true), 0x80);
  assert.equal(v.getBigUint64(20, true), NO_MMIO);
  assert.equal(v.getUint32(28, true), 1);
  assert.equal(v.getBigUint64(32, true), 0n);
  assert.equal(v.getBigUint64(40, true), 0x100000n);
  assert.equal(v.getUint32(48, true), 3);
  assert.deepEqual([...bytes.subarray(52, 55)], [1, 2, 3]);
  assert.equal(v.getUint32(55, true), 2);
  assert.deepEqual([...bytes.subarray(59, 61)], [4, 5]);
  assert.equal(v.getUint32(61, true), 1);
  assert.equal(v.getBigUint64(65, true), 0x2000n);
  assert.equal(bytes[73], 7);
  assert.equal(bytes.length, 73 + 4096);
  const mmio = encodeSnapshot({
    exitPort: 0xf4,
    countMmio: 0x3000_0000,
    regions: [],
    regs: new Uint8Array(0),
    sregs: new Uint8Array(0),
    pages: [],
  });
  const m = new DataView(mmio.buffer);
  assert.equal(m.getUint32(16, true), NO_PORT);
  assert.equal(m.getBigUint64(20, true), 0x3000_0000n);
  assert.throws(
    () =>
      encodeSnapshot({
        exitPort: 0,
        regions: [],
        regs: page,
        sregs: page,
        pages: [{ gpa: 0, bytes: new Uint8Array(10) }],
      }),
    /not 4096 bytes/,
  );
});

Deno.test({
  name: "kvm_loop runs the snapshot of vmmctl's machine: same exits, same exit value",
  ignore: !kvmAvailable() || CC_PATH === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const loop = await compileKvmLoop(dir);
      assert.ok(loop.path, loop.why);
      const accel = await createAccel("kvm", openLibc());
      for (const g of EXIT_GUESTS) {
        writeSnapshot(accel, g, 300, `${dir}/s`);
        const c = await runC(loop.path!, `${dir}/s`, g);
        const ours = runOurs(accel, g, 300);
        assert.equal(c.counted, 300, `${g.guest} under C`);
        assert.equal(ours.counted, 300, `${g.guest} under vmmctl`);
        assert.ok(c.countedMs > 0 && c.countedMs <= c.loopMs);
        assert.ok(ours.countedMs > 0 && ours.countedMs <= ours.loopMs);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "bench_blk under vmmctl: four timed phases, and the writes reached the image",
  ignore: !kvmAvailable(),
  async fn() {
    const disk = await Deno.makeTempFile();
    try {
      await makeDiskImage(disk, 1 << 20);
      const before = await Deno.readFile(disk);
      const r = runOursBlk(await createAccel("kvm", openLibc()), disk, 5);
      assert.equal(r.ms.length, 4);
      assert.equal(r.cycles.length, 4);
      for (const ms of r.ms) assert.ok(ms > 0);
      for (const c of r.cycles) assert.ok(c > 0);
      // Phase 4 wrote 128 KiB sequential chunks from sector 0 with whatever phase 3 read:
      // the image is the same there, but phase 2's random 4 KiB writes carried phase 1's
      // buffer to other places, so some 4 KiB block changed.
      const after = await Deno.readFile(disk);
      assert.equal(after.length, before.length);
      let changed = 0;
      for (let at = 0; at < after.length; at += 4096) {
        if (after.subarray(at, at + 4096).some((b, i) => b !== before[at + i])) changed++;
      }
      assert.ok(changed > 0, "no 4 KiB block changed");
    } finally {
      await Deno.remove(disk);
    }
  },
});
