import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  DISPI,
  DISPI_ENABLED,
  DISPI_GETCAPS,
  DISPI_MAX_XRES,
  DISPI_NOCLEARMEM,
  Vga,
} from "./vga.ts";
import { renderVga, textScreen, vgaMode } from "./render.ts";
import { findFont8x16, loadFont, setTextMode3 } from "./text_mode.ts";

const out = (vga: Vga, port: number, v: number) => vga.ports.write(port - 0x3c0, Uint8Array.of(v));
const inb = (vga: Vga, port: number) => {
  const d = new Uint8Array(1);
  vga.ports.read(port - 0x3c0, d);
  return d[0];
};
const dispi = (vga: Vga, index: number, value?: number) => {
  vga.dispi.write(0, Uint8Array.of(index, 0));
  if (value !== undefined) vga.dispi.write(1, Uint8Array.of(value & 0xff, value >> 8));
  const d = new Uint8Array(2);
  vga.dispi.read(1, d);
  return d[0] | (d[1] << 8);
};

/** A font whose glyph `c` has row `r` = (c * 7 + r * 13) & 0xff: every glyph differs. */
function testFont(): Uint8Array {
  const f = new Uint8Array(4096);
  for (let c = 0; c < 256; c++) {
    for (let r = 0; r < 16; r++) f[c * 16 + r] = (c * 7 + r * 13) & 0xff;
  }
  return f;
}

Deno.test("vga: sequencer, graphics, CRTC and attribute registers read back through index/data", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  out(vga, 0x3c4, 2), out(vga, 0x3c5, 0xff);
  assertEquals(inb(vga, 0x3c5), 0x0f, "map mask keeps 4 bits");
  out(vga, 0x3ce, 8), out(vga, 0x3cf, 0x5a);
  assertEquals(inb(vga, 0x3cf), 0x5a);
  out(vga, 0x3d4, 0x0e), out(vga, 0x3d5, 0x12);
  assertEquals(inb(vga, 0x3d5), 0x12);
  out(vga, 0x3d4, 0x1f), out(vga, 0x3d5, 0x12);
  assertEquals(inb(vga, 0x3d5), 0xff, "CRTC index past the registers reads all ones");
  inb(vga, 0x3da); // reset the flip-flop
  out(vga, 0x3c0, 0x03), out(vga, 0x3c0, 0x3f);
  out(vga, 0x3c0, 0x03);
  assertEquals(inb(vga, 0x3c1), 0x3f);
  out(vga, 0x3c2, 0x67);
  assertEquals(inb(vga, 0x3cc), 0x67);
});

Deno.test("vga: CR11 bit 7 write-protects CR0-CR7", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  out(vga, 0x3d4, 0x01), out(vga, 0x3d5, 0x4f);
  out(vga, 0x3d4, 0x11), out(vga, 0x3d5, 0x80);
  out(vga, 0x3d4, 0x01), out(vga, 0x3d5, 0x10);
  assertEquals(inb(vga, 0x3d5), 0x4f);
});

Deno.test("vga: input status 1 toggles retrace so polling loops end, and resets the flip-flop", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  const a = inb(vga, 0x3da) & 0x08;
  const b = inb(vga, 0x3da) & 0x08;
  assert(a !== b);
  out(vga, 0x3c0, 0x05); // index
  inb(vga, 0x3da);
  out(vga, 0x3c0, 0x06); // index again, not data
  assertEquals(inb(vga, 0x3c0) & 0x1f, 6);
});

Deno.test("vga: DAC writes and reads auto-increment over R, G, B", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  out(vga, 0x3c8, 10);
  for (const v of [1, 2, 3, 4, 5, 0xff]) out(vga, 0x3c9, v);
  out(vga, 0x3c7, 10);
  assertEquals([0, 1, 2, 3, 4, 5].map(() => inb(vga, 0x3c9)), [1, 2, 3, 4, 5, 0x3f]);
  assertEquals(inb(vga, 0x3c7), 0, "DAC state: reading");
  assertEquals(inb(vga, 0x3c8), 12);
});

Deno.test("vga: planar write modes 0-3 with set/reset, logical ops, bit mask and latches", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  const v = vga.vram;
  out(vga, 0x3c4, 4), out(vga, 0x3c5, 0x06); // planar, no chain-4
  out(vga, 0x3c4, 2), out(vga, 0x3c5, 0x0f);
  out(vga, 0x3ce, 6), out(vga, 0x3cf, 0x05); // A0000 64K, graphics
  out(vga, 0x3ce, 8), out(vga, 0x3cf, 0xff);
  // Mode 0, no set/reset: the byte goes to every enabled plane.
  vga.window.write(0x10, Uint8Array.of(0xa5));
  assertEquals([...v.subarray(0x40, 0x44)], [0xa5, 0xa5, 0xa5, 0xa5]);
  // Set/reset on planes 0 and 2 (value 0b0001): plane 0 all ones, plane 2 zero.
  out(vga, 0x3ce, 0), out(vga, 0x3cf, 0x01);
  out(vga, 0x3ce, 1), out(vga, 0x3cf, 0x05);
  vga.window.write(0x11, Uint8Array.of(0x3c));
  assertEquals([...v.subarray(0x44, 0x48)], [0xff, 0x3c, 0x00, 0x3c]);
  out(vga, 0x3ce, 1), out(vga, 0x3cf, 0x00);
  // A read loads the latches; bit mask 0x0f keeps the latched high nibble; XOR op.
  vga.window.read(0x10, new Uint8Array(1));
  out(vga, 0x3ce, 8), out(vga, 0x3cf, 0x0f);
  out(vga, 0x3ce, 3), out(vga, 0x3cf, 0x18);
  vga.window.write(0x10, Uint8Array.of(0xff));
  assertEquals(v[0x40], 0xa0 | (0x05 ^ 0x0f));
  out(vga, 0x3ce, 3), out(vga, 0x3cf, 0x00);
  // Mode 1 copies the latches (from offset 0x10) to offset 0x12.
  vga.window.read(0x10, new Uint8Array(1));
  out(vga, 0x3ce, 5), out(vga, 0x3cf, 0x01);
  vga.window.write(0x12, Uint8Array.of(0));
  assertEquals([...v.subarray(0x48, 0x4c)], [...v.subarray(0x40, 0x44)]);
  // Mode 2: the data's low bits are a colour, one bit per plane.
  out(vga, 0x3ce, 5), out(vga, 0x3cf, 0x02);
  out(vga, 0x3ce, 8), out(vga, 0x3cf, 0xff);
  vga.window.write(0x13, Uint8Array.of(0x06));
  assertEquals([...v.subarray(0x4c, 0x50)], [0x00, 0xff, 0xff, 0x00]);
  // Mode 3: set/reset colour through (data & bit mask).
  out(vga, 0x3ce, 5), out(vga, 0x3cf, 0x03);
  out(vga, 0x3ce, 0), out(vga, 0x3cf, 0x0f);
  vga.window.read(0x14, new Uint8Array(1));
  vga.window.write(0x14, Uint8Array.of(0xf0));
  assertEquals([...v.subarray(0x50, 0x54)], [0xf0, 0xf0, 0xf0, 0xf0]);
});

Deno.test("vga: read mode 1 compares colours", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  out(vga, 0x3c4, 4), out(vga, 0x3c5, 0x06);
  out(vga, 0x3ce, 6), out(vga, 0x3cf, 0x05);
  vga.vram.set([0b1100, 0b1010, 0, 0], 4 * 3); // pixel colours per bit
  out(vga, 0x3ce, 5), out(vga, 0x3cf, 0x08);
  out(vga, 0x3ce, 2), out(vga, 0x3cf, 0x03); // colour 3 = planes 0 and 1 set
  out(vga, 0x3ce, 7), out(vga, 0x3cf, 0x0f);
  const d = new Uint8Array(1);
  vga.window.read(3, d);
  assertEquals(d[0], 0b1000);
});

Deno.test("vga: odd/even addressing puts characters in plane 0 and attributes in plane 1", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  setTextMode3(vga);
  vga.window.write(0x18000 + 2 * 5, Uint8Array.of(0x41, 0x1e));
  assertEquals(vga.vram[4 * 5], 0x41);
  assertEquals(vga.vram[4 * 5 + 1], 0x1e);
  const d = new Uint8Array(2);
  vga.window.read(0x18000 + 2 * 5, d);
  assertEquals([...d], [0x41, 0x1e]);
  // The mono window (B0000) is not decoded in colour text mode.
  vga.window.write(0x10000, Uint8Array.of(0x99));
  vga.window.read(0x10000, d.subarray(0, 1));
  assertEquals(d[0], 0xff);
});

Deno.test("vga: mode 3 text renders pixel for pixel from the font, attribute and EGA palette", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  const font = testFont();
  setTextMode3(vga, font);
  const mode = vgaMode(vga.state);
  assertEquals(mode.kind === "text" && [mode.cols, mode.rows, mode.charWidth, mode.charHeight], [
    80,
    25,
    9,
    16,
  ]);
  const cells: [number, number, number][] = [[0, 0x48, 0x1f], [1, 0x69, 0x4e], [81, 0xc4, 0x07]];
  for (const [cell, ch, attr] of cells) {
    vga.window.write(0x18000 + cell * 2, Uint8Array.of(ch, attr));
  }
  // Hide the cursor so only cells are compared.
  vga.ports.write(0x3d4 - 0x3c0, Uint8Array.of(0x0a, 0x20));
  const frame = renderVga(vga.state, vga.vram);
  assertEquals([frame.width, frame.height], [720, 400]);
  // Reference: the EGA colours (6-bit DAC values scaled) of a 16-colour CGA palette.
  const ega = (c: number): number[] => {
    const i = [0, 1, 2, 3, 4, 5, 0x14, 7, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f][c];
    const k = (hi: number, lo: number) => {
      const v = ((i >> hi) & 1) * 0x2a + ((i >> lo) & 1) * 0x15;
      return (v << 2) | (v >> 4);
    };
    return [k(2, 5), k(1, 4), k(0, 3), 255];
  };
  for (const [cell, ch, attr] of cells) {
    const row = Math.floor(cell / 80);
    const col = cell % 80;
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 9; x++) {
        const bits = font[ch * 16 + y];
        const on = x < 8 ? (bits >> (7 - x)) & 1 : ch >= 0xc0 && ch <= 0xdf ? bits & 1 : 0;
        const want = ega(on ? attr & 15 : (attr >> 4) & 7);
        const at = ((row * 16 + y) * 720 + col * 9 + x) * 4;
        assertEquals([...frame.rgba.subarray(at, at + 4)], want, `cell ${cell} (${x},${y})`);
      }
    }
  }
  assertEquals(textScreen(vga.state, vga.vram), "Hi\n \u2500\n");
});

Deno.test("vga: the cursor is drawn between its start and end lines in the cell's foreground", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  setTextMode3(vga, new Uint8Array(4096));
  vga.window.write(0x18000, Uint8Array.of(0x20, 0x0f));
  for (const [i, v] of [[0x0a, 14], [0x0b, 15], [0x0e, 0], [0x0f, 0]]) {
    vga.ports.write(0x3d4 - 0x3c0, Uint8Array.of(i, v));
  }
  const f = renderVga(vga.state, vga.vram);
  const px = (
    x: number,
    y: number,
  ) => [...f.rgba.subarray((y * f.width + x) * 4, (y * f.width + x) * 4 + 3)];
  assertEquals(px(3, 13), [0, 0, 0]);
  assertEquals(px(3, 14), [255, 255, 255]);
});

Deno.test("vga: the font found in a BIOS image is the one loaded into plane 2", () => {
  const rom = new Uint8Array(20000);
  const font = testFont();
  font.fill(0, 0, 16);
  font.set(
    [0x00, 0x00, 0x7e, 0x81, 0xa5, 0x81, 0x81, 0xbd, 0x99, 0x81, 0x81, 0x7e, 0, 0, 0, 0],
    16,
  );
  rom.set(font, 1234);
  assertEquals(findFont8x16(rom), font);
  assertEquals(findFont8x16(new Uint8Array(8000)), undefined);
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  setTextMode3(vga);
  loadFont(vga, font);
  assertEquals(vga.vram[4 * (0x41 * 32 + 3) + 2], font[0x41 * 16 + 3]);
  assertEquals(vga.vram[4 * 3], 0x20, "plane 0 untouched by the font load");
});

Deno.test("vga: DISPI registers, caps, mode checks and the linear 32-bit framebuffer", () => {
  const vga = new Vga({ vram: new Uint8Array(16 << 20) });
  assertEquals(dispi(vga, DISPI.ID), 0xb0c5);
  assertEquals(dispi(vga, DISPI.VIDEO_MEMORY_64K), 256);
  dispi(vga, DISPI.ENABLE, DISPI_GETCAPS);
  assertEquals(dispi(vga, DISPI.XRES), DISPI_MAX_XRES);
  dispi(vga, DISPI.ENABLE, 0);
  assertEquals(dispi(vga, DISPI.XRES, 1921), 640, "width not a multiple of 8 is ignored");
  assertEquals(dispi(vga, DISPI.BPP, 12), 8, "unsupported depth is ignored");
  dispi(vga, DISPI.XRES, 1920);
  dispi(vga, DISPI.YRES, 1080);
  dispi(vga, DISPI.BPP, 32);
  vga.vram.fill(0x77, 0, 64);
  dispi(vga, DISPI.ENABLE, DISPI_ENABLED | DISPI_NOCLEARMEM);
  assertEquals(vga.vram[0], 0x77, "NOCLEARMEM keeps VRAM");
  assertEquals(dispi(vga, DISPI.XRES, 800), 1920, "geometry is fixed while enabled");
  assertEquals(dispi(vga, DISPI.VIRT_HEIGHT), Math.floor((16 << 20) / (1920 * 4)));
  // Pixel (3, 2) = B, G, R, X.
  vga.vram.set([0x10, 0x20, 0x30, 0], (2 * 1920 + 3) * 4);
  const f = renderVga(vga.state, vga.vram);
  assertEquals([f.width, f.height], [1920, 1080]);
  const at = (2 * 1920 + 3) * 4;
  assertEquals([...f.rgba.subarray(at, at + 4)], [0x30, 0x20, 0x10, 0xff]);
  // Y offset scrolls: row 2 of VRAM becomes row 0.
  dispi(vga, DISPI.Y_OFFSET, 2);
  const g = renderVga(vga.state, vga.vram);
  assertEquals([...g.rgba.subarray(12, 16)], [0x30, 0x20, 0x10, 0xff]);
  // A huge Y offset is clamped inside VRAM.
  dispi(vga, DISPI.Y_OFFSET, 0xffff);
  assert(dispi(vga, DISPI.Y_OFFSET) * 1920 * 4 + 1080 * 1920 * 4 <= vga.vram.length);
  // A mode larger than VRAM is refused.
  const small = new Vga({ vram: new Uint8Array(1 << 20) });
  dispi(small, DISPI.XRES, 1920), dispi(small, DISPI.YRES, 1080), dispi(small, DISPI.BPP, 32);
  dispi(small, DISPI.ENABLE, DISPI_ENABLED);
  assertEquals(dispi(small, DISPI.ENABLE) & DISPI_ENABLED, 0);
});

Deno.test("vga: DISPI banked access through the window and 8/16-bit depths", () => {
  const vga = new Vga({ vram: new Uint8Array(4 << 20) });
  dispi(vga, DISPI.XRES, 640), dispi(vga, DISPI.YRES, 480), dispi(vga, DISPI.BPP, 16);
  dispi(vga, DISPI.ENABLE, DISPI_ENABLED);
  dispi(vga, DISPI.BANK, 3);
  vga.window.write(0x10, Uint8Array.of(0x1f, 0xf8)); // RGB565 0xf81f (magenta) lands at 3*64K+0x10
  assertEquals(vga.vram[3 * 65536 + 0x10], 0x1f);
  dispi(vga, DISPI.BANK, 0xffff);
  assertEquals(dispi(vga, DISPI.BANK), 3, "bank beyond VRAM is ignored");
  const f = renderVga(vga.state, vga.vram);
  const pix = (3 * 65536 + 0x10) / 2;
  assertEquals([...f.rgba.subarray(pix * 4, pix * 4 + 4)], [255, 0, 255, 255]);
});

Deno.test("vga: chain-4 mode 13h renders 320x200 through the DAC", () => {
  const vga = new Vga({ vram: new Uint8Array(1 << 20) });
  // Mode 13h register values.
  out(vga, 0x3c2, 0x63);
  [0x03, 0x01, 0x0f, 0x00, 0x0e].forEach((v, i) => (out(vga, 0x3c4, i), out(vga, 0x3c5, v)));
  out(vga, 0x3d4, 0x11), out(vga, 0x3d5, 0x0e);
  [
    0x5f,
    0x4f,
    0x50,
    0x82,
    0x54,
    0x80,
    0xbf,
    0x1f,
    0x00,
    0x41,
    0x00,
    0x00,
    0x00,
    0x00,
    0x00,
    0x00,
    0x9c,
    0x0e,
    0x8f,
    0x28,
    0x40,
    0x96,
    0xb9,
    0xa3,
    0xff,
  ].forEach((v, i) => (out(vga, 0x3d4, i), out(vga, 0x3d5, v)));
  [0, 0, 0, 0, 0, 0x40, 0x05, 0x0f, 0xff].forEach((
    v,
    i,
  ) => (out(vga, 0x3ce, i), out(vga, 0x3cf, v)));
  inb(vga, 0x3da);
  for (let i = 0; i < 16; i++) out(vga, 0x3c0, i), out(vga, 0x3c0, i);
  out(vga, 0x3c0, 0x10), out(vga, 0x3c0, 0x41);
  out(vga, 0x3c0, 0x20);
  out(vga, 0x3c8, 7), out(vga, 0x3c9, 63), out(vga, 0x3c9, 0), out(vga, 0x3c9, 32);
  vga.window.write(5 * 320 + 9, Uint8Array.of(7));
  const f = renderVga(vga.state, vga.vram);
  assertEquals([f.width, f.height], [320, 200]);
  const at = (5 * 320 + 9) * 4;
  assertEquals([...f.rgba.subarray(at, at + 4)], [255, 0, 130, 255]);
});

Deno.test("vga: hostile register values never throw or read outside VRAM", () => {
  const vga = new Vga({ vram: new Uint8Array(256 * 1024) });
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) >> 8;
  for (let i = 0; i < 20000; i++) {
    const port = rnd() % 32;
    const w = [1, 2, 4][rnd() % 3];
    const d = new Uint8Array(w).map(() => rnd() & 0xff);
    if (rnd() & 1) vga.ports.write(port, d);
    else vga.ports.read(port, d);
    if (i % 7 === 0) vga.dispi.write(rnd() & 1, Uint8Array.of(rnd() & 0x0f, rnd() & 0xff));
    if (i % 5 === 0) vga.window.write(rnd() % 0x20000, Uint8Array.of(rnd() & 0xff));
    if (i % 50 === 0) {
      const f = renderVga(vga.state, vga.vram);
      assertEquals(f.rgba.length, f.width * f.height * 4);
    }
  }
});
