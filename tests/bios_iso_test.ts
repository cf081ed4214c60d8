// BIOS boots of a real boot loader (VMMCTL_TEST_BIOS=1: tens of seconds each on this host).
// The test makes an ISO with grub-mkrescue whose grub.cfg loads guests/bin/hello.bin by
// Multiboot; SeaBIOS boots it from a virtio-scsi CD-ROM and, since grub-mkrescue images are
// hybrid, from a virtio-blk disk too; GRUB's output reaches COM1 through SeaBIOS's sercon and
// the guest writes the exit port. Compared with QEMU -M pc (TCG) booting the same image.
// Not gated: a CD-ROM image that is not ISO 9660 is refused when the VM is built.
import assert from "node:assert/strict";
import { bootGuest, type BootOptions, kvmAvailable } from "./boot.ts";
import { isQemuInstalled, runQemu } from "./qemu.ts";
import { firmwareAvailable } from "../loaders/firmware.ts";
import { guestPath } from "../guests/images.ts";
import { openCdrom } from "../devices/virtio/attach.ts";

const longTests = Deno.env.get("VMMCTL_TEST_BIOS") === "1";
const HELLO_STATUS = 0x21;
const MEMORY_MIB = 64;

function haveTool(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const canBoot = longTests && kvmAvailable() && firmwareAvailable() && haveTool("grub-mkrescue") &&
  haveTool("xorriso");

/** Builds the GRUB rescue ISO into a fresh temporary folder; returns its path. */
async function grubIso(): Promise<{ iso: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "bios-grub-" });
  await Deno.mkdir(`${dir}/root/boot/grub`, { recursive: true });
  await Deno.copyFile(guestPath("hello"), `${dir}/root/boot/hello.bin`);
  await Deno.writeTextFile(
    `${dir}/root/boot/grub/grub.cfg`,
    [
      "set timeout=0",
      'echo "grub: loading the test guest"',
      "multiboot /boot/hello.bin greeting=hi answer=42",
      "boot",
      "",
    ].join("\n"),
  );
  const iso = `${dir}/grub.iso`;
  // Uncompressed modules: GRUB decompressing xz in KVM's instruction emulator takes minutes.
  const out = await new Deno.Command("grub-mkrescue", {
    args: ["--compress=no", "-o", iso, `${dir}/root`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return { iso, dir };
}

/**
 * The console from SeaBIOS's "Booting from ..." line on, escape sequences and CRs removed.
 * GRUB's "error: Can't get controller info." (its VESA probe: there is no VGA) is dropped: it is
 * the last text through SeaBIOS's serial mirror before the guest writes COM1 itself, and how
 * much of it the mirror flushes before that depends on timer ticks (QEMU loses its newline).
 */
function fromBoot(serial: string, what: string): string[] {
  // deno-lint-ignore no-control-regex
  const plain = serial.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1bc/g, "").replaceAll("\r", "")
    .replace(/error: Can't get controller info\.*/g, "\n");
  const lines = plain.split("\n").filter((l) => l.trim() !== "");
  const at = lines.findIndex((l) => l.startsWith(`Booting from ${what}`));
  return at < 0 ? lines : lines.slice(at);
}

async function check(
  what: "DVD/CD" | "Hard Disk",
  ours: Partial<BootOptions>,
  qemu: { disk?: string; cdrom?: string },
) {
  const [mine, ref] = await Promise.all([
    // Minutes on this host when it is busy (SeaBIOS and GRUB run in KVM's instruction emulator).
    bootGuest({ memoryBytes: MEMORY_MIB * 1024 * 1024, timeoutMs: 900_000, ...ours }),
    isQemuInstalled()
      ? runQemu({ ...qemu, memoryMiB: MEMORY_MIB, accel: "tcg", timeoutMs: 120_000 })
      : Promise.resolve(undefined),
  ]);
  const context = `${JSON.stringify(mine.outcome)} after ${
    mine.wallMs.toFixed(0)
  } ms\n${mine.serial}`;
  assert.equal(mine.status, HELLO_STATUS, context);
  const lines = fromBoot(mine.serial, what);
  assert.equal(lines[0], `Booting from ${what}...`, context);
  assert.ok(lines.some((l) => l.includes("grub: loading the test guest")), context);
  assert.ok(lines.some((l) => l.includes("cmdline: greeting=hi answer=42")), context);
  if (ref) {
    assert.equal(ref.status, HELLO_STATUS, ref.serial + ref.stderr);
    assert.deepEqual(
      lines,
      fromBoot(ref.serial, what),
      `qemu:\n${ref.serial}\nvmmctl:\n${context}`,
    );
  }
  console.log(`GRUB from ${what} to the guest's exit: ${mine.wallMs.toFixed(0)} ms`);
}

for (const accel of ["kvm", "openbsd-on-kvm"] as const) {
  Deno.test({
    name: `bios iso [${accel}]: GRUB from a CD-ROM loads a Multiboot guest, as under QEMU`,
    ignore: !canBoot,
    async fn() {
      const { iso, dir } = await grubIso();
      try {
        await check("DVD/CD", { accel, cdrom: iso, bootDevice: "cdrom" }, { cdrom: iso });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
  Deno.test({
    name: `bios iso [${accel}]: the same hybrid image boots from a disk`,
    ignore: !canBoot,
    async fn() {
      const { iso, dir } = await grubIso();
      try {
        await check("Hard Disk", {
          accel,
          disks: [{ path: iso, format: "raw", readonly: true }],
        }, { disk: iso });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test("bios iso: a CD-ROM image that is not ISO 9660 is refused by name", async () => {
  const path = await Deno.makeTempFile({ prefix: "bios-notiso-" });
  try {
    await Deno.writeFile(path, new Uint8Array(64 * 1024).fill(0x41));
    assert.throws(() => openCdrom(path), /is not an ISO 9660 image \(no "CD001" at byte 32769\)/);
    await Deno.writeFile(path, new Uint8Array(100));
    assert.throws(() => openCdrom(path), /not an ISO 9660 image/);
    assert.throws(() => openCdrom(path + ".missing"), /Cannot attach CD-ROM/);
  } finally {
    await Deno.remove(path);
  }
});
