/**
 * The graphical console of a BIOS-booted VM: SeaBIOS runs the VGA BIOS
 * (vgabios-stdvga.bin through fw_cfg), draws its banner on the screen, boots
 * guests/disk/keys.asm, which reads keys through INT 16h and echoes them with
 * INT 10h. Keys come from a VNC client (default suite, KVM) and from a real
 * browser on the web console (VMMCTL_TEST_BIOS=1: each BIOS boot takes
 * seconds to tens of seconds on this host, SeaBIOS and the VGA BIOS run in
 * KVM's instruction emulator). Not under the OpenBSD back-end yet: the VGA
 * BIOS clears the screen with REP STOSW into the legacy window, which the
 * vmm(4) back-end's MMIO emulation does not handle (README says so).
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { AccelChoice } from "../accel/select.ts";
import type { VmConfig } from "../config/schema.ts";
import { firmwareAvailable } from "../loaders/firmware.ts";
import { exitStatus } from "../machine/machine.ts";
import { DEFAULT_VGA_BIOS } from "../devices/vga/text_mode.ts";
import { kvmAvailable } from "./boot.ts";
import { cdpSession, chromiumPath } from "./chromium.ts";
import { DisplayGuest, vncClient } from "./display_helpers.ts";

const KEYS_IMG = fileURLToPath(new URL("../guests/bin/disk/keys.img", import.meta.url));
const longTests = Deno.env.get("VMMCTL_TEST_BIOS") === "1";
const canBoot = kvmAvailable() && firmwareAvailable() && exists(DEFAULT_VGA_BIOS);

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** A VM booting keys.img from a 1 MiB raw disk through SeaBIOS, with a display. */
async function keysVm(
  accel: AccelChoice,
  web: boolean,
): Promise<{ config: VmConfig; disk: string }> {
  const disk = await Deno.makeTempFile({ prefix: "vmmctl-keys-", suffix: ".img" });
  await Deno.writeFile(disk, await Deno.readFile(KEYS_IMG));
  await Deno.truncate(disk, 1024 * 1024);
  const config: VmConfig = {
    vm: { name: "keys", memoryBytes: 64 * 1024 * 1024, vcpus: 1, accel, irqchip: "user" },
    boot: { cmdline: "" },
    disks: [{ path: disk, format: "raw", readonly: false }],
    interfaces: [],
    console: { serial: "none" },
    debug: { exitPort: 0xf4 },
    display: {
      type: "vga",
      serial: false,
      vnc: "127.0.0.1:0",
      ...(web ? { web: "127.0.0.1:0" } : {}),
    },
  };
  return { config, disk };
}

async function biosScreenAndVncKeys(accel: AccelChoice): Promise<void> {
  const { config, disk } = await keysVm(accel, false);
  const g = new DisplayGuest(config, 240_000);
  try {
    const screen = await g.waitForScreen(/keys: press a key/, 200_000);
    assert.match(
      screen.split("\n")[0],
      /^SeaBIOS \(version [^)]+\)$/,
      "the BIOS banner, on the screen",
    );
    assert.match(screen, /Booting from Hard Disk\.\.\./);
    assert.equal(g.serial, "", "with a display and serial = false SeaBIOS does not mirror to COM1");
    const vnc = await vncClient(g.display.endpoints.vnc!);
    try {
      assert.deepEqual([vnc.width, vnc.height], [720, 400]);
      await vnc.key(0x76); // v
      await g.waitForScreen(/key: v scan 2f/);
      await vnc.key(0x31); // 1
      await g.waitForScreen(/key: 1 scan 02/);
    } finally {
      vnc.close();
    }
    assert.equal(exitStatus(await g.outcome), 0x21);
  } finally {
    await g.stop();
    await Deno.remove(disk).catch(() => {});
  }
}

Deno.test({
  name:
    "display+BIOS: SeaBIOS draws its banner through the VGA BIOS; keys typed over VNC reach INT 16h (KVM)",
  ignore: !canBoot,
  fn: () => biosScreenAndVncKeys("kvm"),
});

Deno.test({
  name: "display+BIOS: the boot screen in a real browser, keys typed there reach the guest",
  ignore: !canBoot || !longTests || chromiumPath() === undefined,
  async fn() {
    const { config, disk } = await keysVm("kvm", true);
    const g = new DisplayGuest(config, 240_000);
    const browser = await cdpSession(chromiumPath()!);
    try {
      await g.waitForScreen(/keys: press a key/, 200_000);
      await browser.navigate(g.display.endpoints.web!);
      await browser.waitForStatus(/connected/);
      await browser.typeKey("KeyB", "b");
      await g.waitForScreen(/key: b scan 30/);
      // VMMCTL_SCREENSHOT=FILE saves the page as it is now (README's picture comes from here).
      const out = Deno.env.get("VMMCTL_SCREENSHOT");
      if (out) {
        await browser.canvasPixels(); // lets the page draw what it received
        await Deno.writeFile(out, await browser.screenshotPng());
      }
      await browser.typeKey("KeyQ", "q");
      await g.waitForScreen(/key: q scan 10/);
      const shot = await browser.canvasPixels();
      assert.deepEqual([shot.width, shot.height], [720, 400]);
      // The banner's first glyph ("S", light grey on black) has lit pixels in its cell.
      let lit = 0;
      for (let y = 0; y < 16; y++) {
        for (let x = 0; x < 9; x++) if (shot.rgba[(y * 720 + x) * 4] > 0x80) lit++;
      }
      assert.ok(lit > 10, `the browser shows the banner's first glyph (${lit} lit pixels)`);
      assert.equal(exitStatus(await g.outcome), 0x21);
    } finally {
      await browser.close();
      await g.stop();
      await Deno.remove(disk).catch(() => {});
    }
  },
});
