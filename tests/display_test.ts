/**
 * The graphical console end to end: the vga guest (guests/vga.asm) writes
 * text into the VGA text buffer, reads keys from the i8042 and paints a DISPI
 * framebuffer; the test looks at the screen through the display host, a VNC
 * client and (when Debian's chromium is installed) a real browser on the web
 * console, and types keys through each.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { AccelChoice } from "../accel/select.ts";
import { keyByCode } from "../devices/ps2_keymap.ts";
import { exitStatus } from "../machine/machine.ts";
import { guestPath } from "../guests/images.ts";
import { guestConfig, kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { cdpSession, chromiumPath } from "./chromium.ts";
import { DisplayGuest, pixel, vncClient } from "./display_helpers.ts";

/** The vga guest with a display (and a web console when asked). */
function vgaGuest(accel: AccelChoice, web = false): DisplayGuest {
  const config = guestConfig({ kernel: guestPath("vga"), accel });
  config.display = {
    type: "vga",
    serial: false,
    vnc: "127.0.0.1:0",
    ...(web ? { web: "127.0.0.1:0" } : {}),
  };
  return new DisplayGuest(config);
}

/** The EGA blue and bright white of attribute 0x1F, as the renderer scales 6-bit DAC values. */
const EGA_BLUE = [0, 0, 0xaa];
const WHITE = [0xff, 0xff, 0xff];

async function textAndKeys(accel: AccelChoice): Promise<void> {
  const g = vgaGuest(accel);
  try {
    await g.waitFor(/vga: text ready/);
    const text = g.display.screendumpText()!;
    assert.equal(text.split("\n")[2], "vmmctl VGA text");
    const f = g.display.frame();
    assert.deepEqual([f.width, f.height], [720, 400]);
    // Row 2 cell 0 is "v" in white on blue: its first pixel column is background.
    assert.deepEqual(pixel(f, 0, 32), EGA_BLUE);
    const lit = Array.from({ length: 16 * 9 }, (_, i) => pixel(f, i % 9, 32 + Math.floor(i / 9)));
    assert.ok(lit.some((p) => p.join() === WHITE.join()), "the glyph has foreground pixels");
    await g.waitFor(/framebuffer at ([0-9a-f]{8})/);
    const a = keyByCode("KeyA")!;
    g.display.input.key(a, true);
    g.display.input.key(a, false);
    await g.waitFor(/vga: key 1e 9e/);
    await g.waitFor(/vga: graphics ready/);
    const gfx = g.display.frame();
    assert.deepEqual([gfx.width, gfx.height], [320, 240]);
    assert.deepEqual(pixel(gfx, 10, 10), [255, 0, 0]);
    assert.deepEqual(pixel(gfx, 310, 10), [0, 255, 0]);
    assert.deepEqual(pixel(gfx, 10, 230), [0, 0, 255]);
    assert.deepEqual(pixel(gfx, 310, 230), [255, 255, 255]);
    assert.deepEqual(pixel(gfx, 10, 120), [0, 0, 0], "DISPI cleared the rest");
    // The second key through VNC: a key event on the wire reaches the guest.
    await vncKey(g.display.endpoints.vnc!, 0x20 /* space */);
    await g.waitFor(/vga: key 39 b9/);
    assert.equal(exitStatus(await g.outcome), 35);
  } finally {
    g.host.stop();
    await g.outcome;
  }
}

/** Connects to a VNC server, checks the desktop size, presses and releases `keysym`. */
async function vncKey(endpoint: string, keysym: number): Promise<void> {
  const vnc = await vncClient(endpoint);
  try {
    assert.deepEqual([vnc.width, vnc.height], [320, 240]);
    await vnc.key(keysym);
  } finally {
    vnc.close();
  }
}

Deno.test({
  name: "display: the vga guest's text screen, keys and DISPI framebuffer under KVM",
  ignore: !kvmAvailable(),
  fn: () => textAndKeys("kvm"),
});

Deno.test({
  name: "display: the same through the OpenBSD back-end (framebuffer trapped as MMIO)",
  ignore: !kvmAvailable(),
  fn: () => textAndKeys("openbsd-on-kvm"),
});

Deno.test({
  name: "display: a real browser shows the web console and types into the guest",
  ignore: !kvmAvailable() || chromiumPath() === undefined,
  async fn() {
    const g = vgaGuest("kvm", true);
    const browser = await cdpSession(chromiumPath()!);
    try {
      await g.waitFor(/vga: text ready/);
      await browser.navigate(g.display.endpoints.web!);
      await browser.waitForStatus(/connected/);
      // The canvas at 1:1 on a known background: text row 2 starts 32 px down.
      const shot = await browser.canvasPixels();
      assert.deepEqual([shot.width, shot.height], [720, 400]);
      assert.deepEqual(pixel(shot, 0, 32), EGA_BLUE);
      assert.deepEqual(pixel(shot, 0, 0), [0, 0, 0]);
      await browser.typeKey("KeyA", "a");
      await g.waitFor(/vga: key 1e 9e/);
      await g.waitFor(/vga: graphics ready/);
      await browser.waitForCanvasSize(320, 240);
      const gfx = await browser.canvasPixels();
      assert.deepEqual(pixel(gfx, 10, 10), [255, 0, 0]);
      assert.deepEqual(pixel(gfx, 310, 230), [255, 255, 255]);
      await browser.typeKey("Space", " ");
      await g.waitFor(/vga: key 39 b9/);
      assert.equal(exitStatus(await g.outcome), 35);
    } finally {
      await browser.close();
      g.host.stop();
      await g.outcome;
    }
  },
});

if (!kvmAvailable()) console.error(`display tests: ${NO_KVM_MESSAGE}`);

Deno.test({
  name: "display: vmmctl start, console --vnc, screendump (text and PNG) of a managed VM",
  ignore: !kvmAvailable(),
  async fn() {
    const { setUp, vmmctl } = await import("./vmctl_helpers.ts");
    const { rundir, dir, cleanup } = await setUp();
    try {
      const config = `${dir}/screen.toml`;
      await Deno.writeTextFile(
        config,
        [
          "[vm]",
          'name = "screen"',
          'memory = "16M"',
          'accel = "kvm"',
          "[boot]",
          `kernel = "${guestPath("vga")}"`,
          "[display]",
          'type = "vga"',
          'vnc = "127.0.0.1:0"',
        ].join("\n") + "\n",
      );
      const started = await vmmctl(rundir, ["start", config]);
      assert.equal(started.code, 0, started.stderr);
      let where = "";
      let text = "";
      for (let i = 0; i < 200 && !/vmmctl VGA text/.test(text); i++) {
        await new Promise((r) => setTimeout(r, 100));
        const c = await vmmctl(rundir, ["console", "--vnc", "screen"]);
        where = c.stdout;
        const t = await vmmctl(rundir, ["screendump", "--text", "screen", "-"]);
        text = t.stdout;
      }
      assert.match(where, /^vnc 127\.0\.0\.1:\d+$/m);
      assert.equal(text.split("\n")[2], "vmmctl VGA text");
      const png = `${dir}/screen.png`;
      const p = await vmmctl(rundir, ["screendump", "screen", png]);
      assert.equal(p.code, 0, p.stderr);
      const { decodePng } = await import("./chromium.ts");
      const f = decodePng(await Deno.readFile(png));
      assert.deepEqual([f.width, f.height], [720, 400]);
      assert.deepEqual(pixel(f, 0, 32), EGA_BLUE);
      const none = await vmmctl(rundir, ["screendump", "nosuchvm", png]);
      assert.notEqual(none.code, 0);
    } finally {
      await cleanup();
    }
  },
});
