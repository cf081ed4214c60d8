/**
 * Virtio guests under KVM: virtio-blk through the legacy and the modern
 * interface (the host checks the image file afterwards), a hostile guest
 * that attacks the queues, a SIGKILL after a flush, and virtio-net into a
 * network namespace.
 */
import assert from "node:assert/strict";
import {
  compareSerial,
  VIRTIO_GUEST_EXPECTATIONS,
  VIRTIO_HOSTILE_EXPECTATION,
  VIRTIO_NET_EXPECTATION,
} from "../guests/expectations.ts";
import { ip, linkExists, netUnavailable } from "./netns.ts";
import { createDiskImage } from "../disk/create.ts";
import { HAVE_QEMU_TOOLS } from "../disk/test_helpers.ts";
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

for (
  const [mode, cmdline, k, irqchip] of [
    ["legacy", "", 0x11, "user"],
    ["modern", "modern=1", 0x22, "user"],
    // The in-kernel irqchip: the device's IRQ is made level-triggered in KVM's PIC instead.
    ["legacy", "", 0x11, "kernel"],
  ] as const
) {
  Deno.test({
    name: `virtio guest: virtio-blk through the ${mode} interface reads, writes, flushes; ` +
      `IOERR past the end (irqchip ${irqchip})`,
    ignore,
    async fn() {
      const image = await makeRawImage();
      try {
        const r = await bootGuest({
          kernel: guestPath("virtio_blk"),
          cmdline,
          irqchip,
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

Deno.test({
  name: "virtio guest: a hostile guest breaks the queues, the VMM survives, a reset device works",
  ignore,
  async fn() {
    const image = await makeRawImage();
    try {
      const r = await bootGuest({
        kernel: guestPath("virtio_hostile"),
        disks: [{ path: image, format: "raw", readonly: false }],
        timeoutMs: 30_000,
      });
      const e = VIRTIO_HOSTILE_EXPECTATION;
      const diff = compareSerial(e.lines, r.serial);
      assert.equal(diff, undefined, `${diff}\n--- serial ---\n${r.serial}`);
      assert.equal(r.status, e.status, JSON.stringify(r.outcome));
      const bytes = await Deno.readFile(image);
      assert.ok(bytes.subarray(SECTOR).every((b) => b === 0), "no stray writes");
    } finally {
      await Deno.remove(image);
    }
  },
});

Deno.test({
  name: "virtio guest: data flushed before the VMM is SIGKILLed is in the qcow2 image",
  // qemu-img is the oracle for the image.
  ignore: ignore || !HAVE_QEMU_TOOLS,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vmmctl-crash-" });
    try {
      const image = `${dir}/disk.qcow2`;
      createDiskImage(image, { format: "qcow2", sizeBytes: DISK_SECTORS * SECTOR });
      const consolePath = `${dir}/console.log`;
      const cfg = `${dir}/vm.toml`;
      await Deno.writeTextFile(
        cfg,
        [
          "[vm]",
          'name = "crash"',
          'memory = "64M"',
          "[boot]",
          `kernel = ${JSON.stringify(guestPath("virtio_blk"))}`,
          'cmdline = "crash=1"',
          "[[disk]]",
          `path = ${JSON.stringify(image)}`,
          'format = "qcow2"',
          "[console]",
          `serial = ${JSON.stringify(`file:${consolePath}`)}`,
        ].join("\n") + "\n",
      );
      const main = new URL("../main.ts", import.meta.url).pathname;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", main, "up", cfg],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let serial = "";
      const deadline = Date.now() + 30_000;
      while (!serial.includes("flushed") && !serial.includes("FAIL") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        serial = await Deno.readTextFile(consolePath).catch(() => "");
      }
      child.kill("SIGKILL");
      const status = await child.output();
      assert.ok(
        serial.includes("flushed"),
        `guest never flushed:\n${serial}\n${new TextDecoder().decode(status.stderr)}`,
      );
      assert.equal(status.signal, "SIGKILL", "the VMM was killed, not finished");
      // qemu-img reads the image: an oracle for the qcow2 metadata we flushed.
      const check = await new Deno.Command("qemu-img", { args: ["check", image] }).output();
      assert.equal(check.code, 0, new TextDecoder().decode(check.stdout));
      const rawPath = `${dir}/out.raw`;
      const convert = await new Deno.Command("qemu-img", {
        args: ["convert", "-f", "qcow2", "-O", "raw", image, rawPath],
      }).output();
      assert.equal(convert.code, 0, new TextDecoder().decode(convert.stderr));
      const bytes = await Deno.readFile(rawPath);
      assert.deepEqual(bytes.subarray(2 * SECTOR, 3 * SECTOR), pattern(0x33));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const noNet = netUnavailable();
if (noNet) console.warn(`virtio-net guest test skipped: ${noNet}`);

Deno.test({
  name: "virtio guest: virtio-net exchanges ARP with a network namespace through the VMM's tap",
  ignore: ignore || noNet !== undefined,
  async fn() {
    const ns = `vmmctl-net-${Deno.pid}`;
    const tap = `vmn${Deno.pid % 100000}`;
    ip("netns", "add", ns);
    try {
      const run = bootGuest({
        kernel: guestPath("virtio_net"),
        interfaces: [{ tap, lladdr: "fe:e1:ba:d0:00:02" }],
        timeoutMs: 60_000,
      });
      // The VMM creates the tap in our namespace; move it into the test's.
      const deadline = Date.now() + 20_000;
      while (!linkExists(tap) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      ip("link", "set", "dev", tap, "netns", ns);
      ip("-n", ns, "addr", "add", "10.77.0.1/24", "dev", tap);
      ip("-n", ns, "link", "set", "dev", tap, "up");
      const r = await run;
      const e = VIRTIO_NET_EXPECTATION;
      const diff = compareSerial(e.lines, r.serial);
      assert.equal(diff, undefined, `${diff}\n--- serial ---\n${r.serial}`);
      assert.equal(r.status, e.status, JSON.stringify(r.outcome));
      // The reply (addressed to the guest's MAC, checked by the guest) exists only
      // because the namespace's kernel received the guest's request. Once the VMM
      // is gone, so is its tap.
      assert.equal(ip("-n", ns, "link", "show").includes(tap), false);
    } finally {
      ip("netns", "del", ns);
    }
    assert.equal(linkExists(tap), false, "the tap went away with the VMM");
  },
});
