/**
 * Virtio guests under KVM: virtio-blk through the legacy and the modern
 * interface (the host checks the image file afterwards), a hostile guest
 * that attacks the queues, a SIGKILL after a flush, and virtio-net into a
 * network namespace.
 */
import assert from "node:assert/strict";
import { compareSerial } from "../guests/expectations.ts";
import { VIRTIO_GUEST_EXPECTATIONS } from "../guests/expectations.ts";
import { guestPath } from "../guests/images.ts";
import { bootGuest, kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";

const ignore = !kvmAvailable();
if (ignore) console.warn(`virtio guests: ${NO_KVM_MESSAGE}`);

const SECTOR = 512;
const DISK_SECTORS = 128;
const HOST_TEXT = "host sector zero";

/** A raw image of 128 sectors with HOST_TEXT at the start of sector 0. */
async function makeRawImage(): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "vmmctl-virtio-", suffix: ".img" });
  const bytes = new Uint8Array(DISK_SECTORS * SECTOR);
  bytes.set(new TextEncoder().encode(HOST_TEXT));
  await Deno.writeFile(path, bytes);
  return path;
}

function pattern(k: number): Uint8Array {
  return Uint8Array.from({ length: SECTOR }, (_, i) => (i + k) & 0xff);
}

function expectation(label: string) {
  const e = VIRTIO_GUEST_EXPECTATIONS.find((x) => x.label === label);
  if (!e) throw new Error(`No virtio guest expectation "${label}"`);
  return e;
}

for (const [mode, cmdline, k] of [["legacy", "", 0x11], ["modern", "modern=1", 0x22]] as const) {
  Deno.test({
    name:
      `virtio guest: virtio-blk through the ${mode} interface reads, writes, flushes; IOERR past the end`,
    ignore,
    async fn() {
      const image = await makeRawImage();
      try {
        const r = await bootGuest({
          kernel: guestPath("virtio_blk"),
          cmdline,
          disks: [{ path: image, format: "raw", readonly: false }],
        });
        const e = expectation(`virtio_blk ${mode}`);
        const diff = compareSerial(e.lines, r.serial);
        assert.equal(diff, undefined, `${diff}\n--- serial ---\n${r.serial}`);
        assert.equal(r.status, e.status, JSON.stringify(r.outcome));
        const bytes = await Deno.readFile(image);
        assert.equal(bytes.length, DISK_SECTORS * SECTOR, "the image did not grow");
        assert.deepEqual(bytes.subarray(SECTOR, 2 * SECTOR), pattern(k), "sector 1 in the file");
        assert.equal(new TextDecoder().decode(bytes.subarray(0, 16)), HOST_TEXT);
        assert.ok(bytes.subarray(2 * SECTOR).every((b) => b === 0), "nothing else written");
      } finally {
        await Deno.remove(image);
      }
    },
  });
}
