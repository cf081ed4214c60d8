/**
 * Puts a VGA into the state a PC BIOS leaves it in before a kernel starts:
 * 80x25 colour text (mode 3) with an 8x16 font in plane 2. A guest booted
 * directly (no BIOS) expects this, as Linux's vgacon and OpenBSD's vga(4) do.
 *
 * The register values are the standard mode-3 settings of the IBM VGA. The
 * font comes from a VGA BIOS image on the host (SeaBIOS's, from Debian's
 * `seabios` package): we find its 8x16 table rather than ship a font.
 *
 * Everything goes through the device's own ports and window, the way a BIOS
 * would program it, so this is also a test of those paths.
 *
 * @module
 */

import type { Vga } from "./vga.ts";

/** Where Debian's SeaBIOS VGA BIOS lives (it holds the font we use). */
export const DEFAULT_VGA_BIOS = "/usr/share/seabios/vgabios-stdvga.bin";

const MODE3_MISC = 0x67;
const MODE3_SEQ = [0x03, 0x00, 0x03, 0x00, 0x02];
const MODE3_CRTC = [
  0x5f,
  0x4f,
  0x50,
  0x82,
  0x55,
  0x81,
  0xbf,
  0x1f,
  0x00,
  0x4f,
  0x0d,
  0x0e,
  0x00,
  0x00,
  0x00,
  0x50,
  0x9c,
  0x0e,
  0x8f,
  0x28,
  0x1f,
  0x96,
  0xb9,
  0xa3,
  0xff,
];
const MODE3_GR = [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff];
const MODE3_AR = [
  0x00,
  0x01,
  0x02,
  0x03,
  0x04,
  0x05,
  0x14,
  0x07,
  0x38,
  0x39,
  0x3a,
  0x3b,
  0x3c,
  0x3d,
  0x3e,
  0x3f,
  0x0c,
  0x00,
  0x0f,
  0x08,
  0x00,
];

/** The EGA colour of DAC entry `i` (0-63): two intensity bits per component. */
function egaColor(i: number): [number, number, number] {
  const c = (hi: number, lo: number) => ((i >> hi) & 1) * 0x2a + ((i >> lo) & 1) * 0x15;
  return [c(2, 5), c(1, 4), c(0, 3)];
}

/** Finds the 8x16 font (256 glyphs of 16 bytes) in a VGA BIOS image. */
export function findFont8x16(rom: Uint8Array): Uint8Array | undefined {
  // Glyph 0 is blank and glyph 1 is the IBM smiley face in every PC font.
  const smiley = [0x00, 0x00, 0x7e, 0x81, 0xa5, 0x81, 0x81, 0xbd, 0x99, 0x81, 0x81, 0x7e];
  outer: for (let i = 0; i + 4096 <= rom.length; i++) {
    for (let k = 0; k < 16; k++) if (rom[i + k] !== 0) continue outer;
    for (let k = 0; k < smiley.length; k++) if (rom[i + 16 + k] !== smiley[k]) continue outer;
    return rom.slice(i, i + 4096);
  }
  return undefined;
}

/** Reads the host's VGA BIOS and returns its font, or undefined when there is none. */
export function hostFont8x16(path = DEFAULT_VGA_BIOS): Uint8Array | undefined {
  try {
    const info = Deno.statSync(path);
    if (!info.isFile || info.size > 1 << 20) return undefined;
    return findFont8x16(Deno.readFileSync(path));
  } catch {
    return undefined;
  }
}

/** Programs mode 3 and loads `font` (4096 bytes) into plane 2. */
export function setTextMode3(vga: Vga, font?: Uint8Array): void {
  const out = (port: number, v: number) => vga.ports.write(port - 0x3c0, Uint8Array.of(v));
  const inb = (port: number) => {
    const d = new Uint8Array(1);
    vga.ports.read(port - 0x3c0, d);
    return d[0];
  };
  out(0x3c2, MODE3_MISC);
  MODE3_SEQ.forEach((v, i) => (out(0x3c4, i), out(0x3c5, v)));
  out(0x3d4, 0x11), out(0x3d5, 0x00); // unlock CR0-CR7
  MODE3_CRTC.forEach((v, i) => (out(0x3d4, i), out(0x3d5, v)));
  MODE3_GR.forEach((v, i) => (out(0x3ce, i), out(0x3cf, v)));
  inb(0x3da);
  MODE3_AR.forEach((v, i) => (out(0x3c0, i), out(0x3c0, v)));
  out(0x3c8, 0);
  for (let i = 0; i < 256; i++) for (const c of egaColor(i & 0x3f)) out(0x3c9, c);
  if (font) loadFont(vga, font);
  // Clear the screen to grey on black, then hand the palette to the display.
  const blank = Uint8Array.of(0x20, 0x07);
  for (let cell = 0; cell < 80 * 25; cell++) vga.window.write(0x18000 + cell * 2, blank);
  inb(0x3da);
  out(0x3c0, 0x20);
}

/** Writes `font` (16 bytes a glyph) into plane 2 at 32 bytes a glyph, as a BIOS does. */
export function loadFont(vga: Vga, font: Uint8Array): void {
  const out = (port: number, v: number) => vga.ports.write(port - 0x3c0, Uint8Array.of(v));
  out(0x3c4, 2), out(0x3c5, 0x04); // write plane 2 only
  out(0x3c4, 4), out(0x3c5, 0x06); // odd/even off
  out(0x3ce, 4), out(0x3cf, 0x02);
  out(0x3ce, 5), out(0x3cf, 0x00);
  out(0x3ce, 6), out(0x3cf, 0x04); // A0000, 64 KiB
  const glyphs = Math.min(256, font.length >> 4);
  for (let ch = 0; ch < glyphs; ch++) {
    vga.window.write(ch * 32, font.subarray(ch * 16, ch * 16 + 16));
  }
  out(0x3c4, 2), out(0x3c5, 0x03);
  out(0x3c4, 4), out(0x3c5, 0x02);
  out(0x3ce, 4), out(0x3cf, 0x00);
  out(0x3ce, 5), out(0x3cf, 0x10);
  out(0x3ce, 6), out(0x3cf, 0x0e);
}
