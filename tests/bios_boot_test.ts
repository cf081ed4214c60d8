// BIOS boots: SeaBIOS from the seabios package loads guests/disk/bootsector.asm from a raw
// virtio-blk disk; its INT 10h output reaches COM1 through SeaBIOS's sercon. The default suite
// runs ONE such boot (KVM, irqchip user: ~10 s here, SeaBIOS runs in KVM's instruction emulator)
// and compares it with QEMU -M pc (TCG) booting the same image. VMMCTL_TEST_BIOS=1 adds the
// other back-ends and the bad-disk case.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { bootGuest, type BootOptions, kvmAvailable } from "./boot.ts";
import { isQemuInstalled, runQemu } from "./qemu.ts";
import { firmwareAvailable } from "../loaders/firmware.ts";

const BOOTSECTOR = fileURLToPath(new URL("../guests/bin/disk/bootsector.img", import.meta.url));
const MEMORY_MIB = 64;
/** bootsector.asm writes 0x10 to port 0xF4 on success. */
const STATUS_OK = 0x21;
const longTests = Deno.env.get("VMMCTL_TEST_BIOS") === "1";

const canBoot = kvmAvailable() && firmwareAvailable();

/**
 * A 1 MiB raw disk holding `image` (SeaBIOS's CHS geometry needs a cylinder or more, or
 * it cannot read sector 0 of a tiny disk).
 */
async function diskWith(image: Uint8Array): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "bios-disk-", suffix: ".img" });
  await Deno.writeFile(path, image);
  await Deno.truncate(path, 1024 * 1024);
  return path;
}

function lines(serial: string): string[] {
  return serial.replaceAll("\r", "").split("\n").filter((l) => l !== "");
}

interface E820Line {
  base: bigint;
  length: bigint;
  type: number;
}

function e820(ls: string[]): E820Line[] {
  return ls.filter((l) => l.startsWith("e820: ")).map((l) => {
    const [base, length, type] = l.slice(6).split(" ");
    return { base: BigInt("0x" + base), length: BigInt("0x" + length), type: parseInt(type, 16) };
  });
}

/**
 * The parts of the E820 map both machines must agree on: everything below 1 MiB, RAM from
 * 1 MiB with SeaBIOS's reservation after it ending exactly at the end of RAM (how much SeaBIOS
 * keeps for its tables depends on what the machine hands it, so the split point may differ),
 * and the BIOS flash reservation below 4 GiB. QEMU's own extra reservations (its KVM TSS pages,
 * the AMD HyperTransport hole above 1 TiB) are not part of our machine.
 */
function e820Summary(entries: E820Line[]): string[] {
  const mib = 0x100000n;
  const out = entries.filter((e) => e.base < mib).map((e) =>
    `${e.base.toString(16)}+${e.length.toString(16)} type ${e.type}`
  );
  const high = entries.filter((e) => e.base >= mib && e.base < 0x1_0000_0000n);
  const ram = high.find((e) => e.base === mib && e.type === 1);
  const ramEnd = ram ? ram.base + ram.length : 0n;
  const after = high.find((e) => e.base === ramEnd && e.type === 2);
  out.push(
    `RAM from 1 MiB, then reserved, up to ${
      (after ? after.base + after.length : ramEnd) / mib
    } MiB`,
  );
  const flash = high.find((e) => e.base + e.length === 0x1_0000_0000n);
  out.push(
    `flash ${flash ? `${flash.base.toString(16)}+${flash.length.toString(16)}` : "missing"}`,
  );
  return out;
}

/** Compares a vmmctl boot's serial output with QEMU's, line by line (E820 by summary). */
function assertSameAsQemu(ours: string, qemu: string): void {
  const context = `vmmctl:\n${ours}\nqemu:\n${qemu}`;
  const a = lines(ours);
  const b = lines(qemu);
  assert.deepEqual(
    a.filter((l) => !l.startsWith("e820: ")),
    b.filter((l) => !l.startsWith("e820: ")),
    context,
  );
  assert.deepEqual(e820Summary(e820(a)), e820Summary(e820(b)), context);
}

async function qemuReference(disk: string): Promise<string> {
  const result = await runQemu({ disk, memoryMiB: MEMORY_MIB, accel: "tcg", timeoutMs: 60_000 });
  assert.ok(result, "qemu-system-x86_64 disappeared");
  assert.equal(result.timedOut, false, `QEMU timed out:\n${result.serial}\n${result.stderr}`);
  assert.equal(result.status, STATUS_OK, `QEMU:\n${result.serial}\n${result.stderr}`);
  return result.serial;
}

async function bootBios(disk: string, o: Partial<BootOptions> = {}) {
  return await bootGuest({
    memoryBytes: MEMORY_MIB * 1024 * 1024,
    disks: [{ path: disk, format: "raw", readonly: true }],
    timeoutMs: 180_000,
    ...o,
  });
}

async function checkBoot(o: Partial<BootOptions>): Promise<void> {
  const disk = await diskWith(await Deno.readFile(BOOTSECTOR));
  try {
    const [ours, qemu] = await Promise.all([
      bootBios(disk, o),
      isQemuInstalled() ? qemuReference(disk) : Promise.resolve(undefined),
    ]);
    const context = `outcome ${JSON.stringify(ours.outcome)}, ${ours.wallMs.toFixed(0)} ms\n` +
      ours.serial;
    assert.equal(ours.status, STATUS_OK, context);
    const ls = lines(ours.serial);
    assert.ok(ls.some((l) => l.includes("SeaBIOS (version")), context);
    for (
      const want of [
        "bootsector: hello through INT 10h",
        "int13: extensions present",
        "int13: sector 3 says hello",
        "bootsector: done",
      ]
    ) {
      assert.ok(ls.includes(want), `missing "${want}"\n${context}`);
    }
    // Our map as the machine lays it out: 64 MiB of RAM, the EBDA and BIOS area reserved.
    assert.deepEqual(e820Summary(e820(ls)), [
      "0+9fc00 type 1",
      "9fc00+400 type 2",
      "f0000+10000 type 2",
      "RAM from 1 MiB, then reserved, up to 64 MiB",
      "flash fffc0000+40000",
    ], context);
    if (qemu !== undefined) assertSameAsQemu(ours.serial, qemu);
    console.log(`BIOS boot to the boot sector's exit: ${ours.wallMs.toFixed(0)} ms`);
  } finally {
    await Deno.remove(disk);
  }
}

Deno.test({
  name: "bios: SeaBIOS boots a boot sector from virtio-blk under KVM, as under QEMU -M pc",
  ignore: !canBoot,
  async fn() {
    await checkBoot({ accel: "kvm", irqchip: "user" });
  },
});

Deno.test({
  name: "bios: the same boot with the in-kernel irqchip (VMMCTL_TEST_BIOS=1)",
  ignore: !canBoot || !longTests,
  async fn() {
    await checkBoot({ accel: "kvm", irqchip: "kernel" });
  },
});

Deno.test({
  name: "bios: the same boot on the OpenBSD vmm(4) back-end (VMMCTL_TEST_BIOS=1)",
  ignore: !canBoot || !longTests,
  async fn() {
    await checkBoot({ accel: "openbsd-on-kvm" });
  },
});

Deno.test({
  name: "bios: a disk without a boot signature: SeaBIOS says so and the VM stays up",
  ignore: !canBoot || !longTests,
  async fn() {
    const image = (await Deno.readFile(BOOTSECTOR)).slice();
    image[510] = 0;
    image[511] = 0;
    const disk = await diskWith(image);
    try {
      const result = await bootBios(disk, { timeoutMs: 45_000 });
      const ls = lines(result.serial);
      assert.ok(ls.some((l) => l.startsWith("No bootable device.")), result.serial);
      assert.ok(!ls.includes("bootsector: hello through INT 10h"), result.serial);
      // It waits (etc/boot-fail-wait = -1) until stopped, like vmd.
      assert.equal(result.outcome.kind, "stopped", JSON.stringify(result.outcome));
    } finally {
      await Deno.remove(disk);
    }
  },
});

Deno.test({
  name: 'bios: boot.on_fail = "end": with nothing to boot the VM ends (VMMCTL_TEST_BIOS=1)',
  ignore: !canBoot || !longTests,
  async fn() {
    const image = (await Deno.readFile(BOOTSECTOR)).slice();
    image[510] = 0;
    const disk = await diskWith(image);
    try {
      const result = await bootBios(disk, { onFail: "end", timeoutMs: 300_000 });
      assert.ok(
        lines(result.serial).some((l) => l.startsWith("No bootable device.")),
        result.serial,
      );
      assert.equal(result.outcome.kind, "reset", JSON.stringify(result.outcome));
    } finally {
      await Deno.remove(disk);
    }
  },
});
