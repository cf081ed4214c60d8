/**
 * Turns the VGA's registers and memory into pixels: text modes (with the
 * font the BIOS loaded into plane 2), 16-colour planar modes, chain-4
 * 256-colour modes (13h) and DISPI linear modes of 8, 15, 16, 24 and 32 bits.
 *
 * Pure functions of (state, VRAM): the display thread calls them at its
 * refresh rate; nothing here changes the device.
 *
 * @module
 */

import { DISPI, DISPI_8BIT_DAC, DISPI_ENABLED } from "./vga.ts";
import { MISC, type VgaState } from "./state.ts";

/** A rendered screen: `rgba` holds `width * height * 4` bytes. */
export interface Frame {
  width: number;
  height: number;
  rgba: Uint8Array;
}

/** The display mode the registers describe. */
export type VgaMode =
  | {
    kind: "text";
    cols: number;
    rows: number;
    charWidth: number;
    charHeight: number;
    /** Memory offset (in character cells) of the top-left cell. */
    start: number;
    /** Cells from one row to the next in memory. */
    pitch: number;
  }
  | {
    kind: "planar16";
    width: number;
    height: number;
    start: number;
    stride: number;
    lineRepeat: number;
  }
  | {
    kind: "chain4";
    width: number;
    height: number;
    start: number;
    stride: number;
    lineRepeat: number;
  }
  | { kind: "dispi"; width: number; height: number; bpp: number; origin: number; stride: number }
  | { kind: "off" };

/** Largest text screen we draw (guards against nonsense CRTC values). */
const MAX_TEXT_COLS = 132;
const MAX_TEXT_ROWS = 60;
const MAX_LEGACY_WIDTH = 800;
const MAX_LEGACY_HEIGHT = 600;

/** Decodes the current mode from the registers. */
export function vgaMode(s: VgaState): VgaMode {
  const d = s.dispi;
  if (d[DISPI.ENABLE] & DISPI_ENABLED) {
    const bpp = d[DISPI.BPP];
    if (bpp === 4) return { kind: "off" };
    const bytes = (bpp + 7) >> 3;
    const stride = (d[DISPI.VIRT_WIDTH] || d[DISPI.XRES]) * bytes;
    return {
      kind: "dispi",
      width: d[DISPI.XRES],
      height: d[DISPI.YRES],
      bpp,
      origin: d[DISPI.Y_OFFSET] * stride + d[DISPI.X_OFFSET] * bytes,
      stride,
    };
  }
  // Screen off (SR1 bit 5) or the palette not handed to the display (AR index bit 5).
  if ((s.seq[1] & 0x20) || !(s.misc[MISC.AR_INDEX] & 0x20)) return { kind: "off" };
  const c = s.crtc;
  const vde = (c[0x12] | ((c[7] & 0x02) << 7) | ((c[7] & 0x40) << 3)) + 1;
  const maxScan = (c[9] & 0x1f) + 1;
  const start = (c[0x0c] << 8) | c[0x0d];
  const graphics = (s.ar[0x10] & 0x01) !== 0;
  if (!graphics) {
    const charHeight = maxScan;
    const cols = Math.min(MAX_TEXT_COLS, c[1] + 1);
    const rows = Math.min(MAX_TEXT_ROWS, Math.floor(vde / charHeight));
    if (cols < 1 || rows < 1) return { kind: "off" };
    return {
      kind: "text",
      cols,
      rows,
      charWidth: s.seq[1] & 0x01 ? 8 : 9,
      charHeight,
      start,
      pitch: c[0x13] * 2,
    };
  }
  const lineRepeat = maxScan * (c[9] & 0x80 ? 2 : 1);
  const height = Math.min(MAX_LEGACY_HEIGHT, Math.floor(vde / lineRepeat));
  // CR14 bit 6: doubleword addressing; CR17 bit 6 clear: word addressing.
  const unit = c[0x14] & 0x40 ? 4 : c[0x17] & 0x40 ? 1 : 2;
  const stride = c[0x13] * 2 * unit;
  if (s.gr[5] & 0x40) {
    const width = Math.min(MAX_LEGACY_WIDTH, (c[1] + 1) * 4);
    return { kind: "chain4", width, height, start: start * 4, stride, lineRepeat };
  }
  const width = Math.min(MAX_LEGACY_WIDTH, (c[1] + 1) * 8);
  return { kind: "planar16", width, height, start, stride: c[0x13] * 2, lineRepeat };
}

/** RGB of DAC entry `i` (8 bits per component). */
function dacColor(s: VgaState, i: number, out: Uint8Array, at: number): void {
  const eight = (s.dispi[DISPI.ENABLE] & DISPI_8BIT_DAC) !== 0;
  for (let k = 0; k < 3; k++) {
    const v = s.dac[i * 3 + k];
    out[at + k] = eight ? v : ((v << 2) | (v >> 4)) & 0xff;
  }
  out[at + 3] = 0xff;
}

/** The 16 attribute colours through the attribute palette and the DAC. */
function attributePalette(s: VgaState): Uint8Array {
  const pal = new Uint8Array(16 * 4);
  const ar10 = s.ar[0x10];
  const ar14 = s.ar[0x14];
  for (let c = 0; c < 16; c++) {
    let i = s.ar[c] & 0x3f;
    if (ar10 & 0x80) i = (i & 0x0f) | ((ar14 & 0x03) << 4);
    i |= (ar14 & 0x0c) << 4;
    dacColor(s, i & s.misc[MISC.PEL_MASK], pal, c * 4);
  }
  return pal;
}

/** Offset in plane 2 of the font for character map select value `sel` (3 bits). */
function fontBase(sel: number): number {
  return [0x0000, 0x4000, 0x8000, 0xc000, 0x2000, 0x6000, 0xa000, 0xe000][sel & 7];
}

/** Renders the screen the registers and VRAM describe. */
export function renderVga(s: VgaState, vram: Uint8Array): Frame {
  const mode = vgaMode(s);
  switch (mode.kind) {
    case "text":
      return renderText(s, vram, mode);
    case "planar16":
      return renderPlanar(s, vram, mode);
    case "chain4":
      return renderChain4(s, vram, mode);
    case "dispi":
      return renderDispi(s, vram, mode);
    case "off":
      return { width: 640, height: 480, rgba: blackFrame(640, 480) };
  }
}

function blackFrame(w: number, h: number): Uint8Array {
  const px = new Uint8Array(w * h * 4);
  for (let i = 3; i < px.length; i += 4) px[i] = 0xff;
  return px;
}

function renderText(
  s: VgaState,
  vram: Uint8Array,
  m: Extract<VgaMode, { kind: "text" }>,
): Frame {
  const width = m.cols * m.charWidth;
  const height = m.rows * m.charHeight;
  const px = new Uint8Array(width * height * 4);
  const pal = attributePalette(s);
  const ar10 = s.ar[0x10];
  const blinkMode = (ar10 & 0x08) !== 0;
  const lineGraphics = (ar10 & 0x04) !== 0;
  const sr3 = s.seq[3];
  const mapA = fontBase(((sr3 >> 5) & 1) << 2 | ((sr3 >> 2) & 3));
  const mapB = fontBase(((sr3 >> 4) & 1) << 2 | (sr3 & 3));
  const c = s.crtc;
  const cursorOn = !(c[0x0a] & 0x20);
  const cursorAt = ((c[0x0e] << 8) | c[0x0f]) - m.start;
  const cursorFrom = c[0x0a] & 0x1f;
  const cursorTo = c[0x0b] & 0x1f;
  for (let row = 0; row < m.rows; row++) {
    for (let col = 0; col < m.cols; col++) {
      const cell = (m.start + row * m.pitch + col) & 0xffff;
      const ch = vram[4 * cell];
      const attr = vram[4 * cell + 1];
      const fg = attr & 0x0f;
      const bg = blinkMode ? (attr >> 4) & 0x07 : attr >> 4;
      const font = (attr & 0x08 ? mapA : mapB) + ch * 32;
      const isCursor = cursorOn && row * m.cols + col === cursorAt;
      for (let y = 0; y < m.charHeight; y++) {
        let bits = vram[4 * ((font + y) & 0xffff) + 2];
        if (isCursor && y >= cursorFrom && y <= cursorTo) bits = 0xff;
        const ninth = m.charWidth === 9 && lineGraphics && ch >= 0xc0 && ch <= 0xdf ? bits & 1 : 0;
        let at = ((row * m.charHeight + y) * width + col * m.charWidth) * 4;
        for (let x = 0; x < m.charWidth; x++) {
          const on = x < 8 ? (bits >> (7 - x)) & 1 : ninth;
          const p = (on ? fg : bg) * 4;
          px[at] = pal[p];
          px[at + 1] = pal[p + 1];
          px[at + 2] = pal[p + 2];
          px[at + 3] = 0xff;
          at += 4;
        }
      }
    }
  }
  return { width, height, rgba: px };
}

function renderPlanar(
  s: VgaState,
  vram: Uint8Array,
  m: Extract<VgaMode, { kind: "planar16" }>,
): Frame {
  const { width, height } = m;
  const px = new Uint8Array(width * height * 4);
  const pal = attributePalette(s);
  const enable = s.ar[0x12] & 0x0f;
  for (let y = 0; y < height; y++) {
    const line = m.start + y * m.stride;
    for (let x = 0; x < width; x++) {
      const off = (line + (x >> 3)) & 0xffff;
      const bit = 7 - (x & 7);
      let color = 0;
      for (let p = 0; p < 4; p++) color |= ((vram[4 * off + p] >> bit) & 1) << p;
      const q = (color & enable) * 4;
      const at = (y * width + x) * 4;
      px[at] = pal[q];
      px[at + 1] = pal[q + 1];
      px[at + 2] = pal[q + 2];
      px[at + 3] = 0xff;
    }
  }
  return { width, height, rgba: px };
}

function renderChain4(
  s: VgaState,
  vram: Uint8Array,
  m: Extract<VgaMode, { kind: "chain4" }>,
): Frame {
  const { width, height } = m;
  const px = new Uint8Array(width * height * 4);
  const dac = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) dacColor(s, i & s.misc[MISC.PEL_MASK], dac, i * 4);
  for (let y = 0; y < height; y++) {
    const line = m.start + y * m.stride;
    for (let x = 0; x < width; x++) {
      const q = vram[(line + x) & 0x3ffff] * 4;
      const at = (y * width + x) * 4;
      px[at] = dac[q];
      px[at + 1] = dac[q + 1];
      px[at + 2] = dac[q + 2];
      px[at + 3] = 0xff;
    }
  }
  return { width, height, rgba: px };
}

function renderDispi(
  s: VgaState,
  vram: Uint8Array,
  m: Extract<VgaMode, { kind: "dispi" }>,
): Frame {
  const { width, height, bpp } = m;
  const px = new Uint8Array(width * height * 4);
  const bytes = (bpp + 7) >> 3;
  if (m.origin + (height - 1) * m.stride + width * bytes > vram.length) {
    return { width, height, rgba: blackFrame(width, height) };
  }
  const dac = new Uint8Array(256 * 4);
  if (bpp === 8) { for (let i = 0; i < 256; i++) dacColor(s, i, dac, i * 4); }
  for (let y = 0; y < height; y++) {
    let src = m.origin + y * m.stride;
    let at = y * width * 4;
    for (let x = 0; x < width; x++) {
      switch (bpp) {
        case 8: {
          const q = vram[src] * 4;
          px[at] = dac[q];
          px[at + 1] = dac[q + 1];
          px[at + 2] = dac[q + 2];
          break;
        }
        case 15: {
          const v = vram[src] | (vram[src + 1] << 8);
          px[at] = ((v >> 10) & 0x1f) * 255 / 31;
          px[at + 1] = ((v >> 5) & 0x1f) * 255 / 31;
          px[at + 2] = (v & 0x1f) * 255 / 31;
          break;
        }
        case 16: {
          const v = vram[src] | (vram[src + 1] << 8);
          px[at] = ((v >> 11) & 0x1f) * 255 / 31;
          px[at + 1] = ((v >> 5) & 0x3f) * 255 / 63;
          px[at + 2] = (v & 0x1f) * 255 / 31;
          break;
        }
        default:
          px[at] = vram[src + 2];
          px[at + 1] = vram[src + 1];
          px[at + 2] = vram[src];
      }
      px[at + 3] = 0xff;
      src += bytes;
      at += 4;
    }
  }
  return { width, height, rgba: px };
}

/** The text screen as lines of text (code page 437 mapped to Unicode where it matters). */
export function textScreen(s: VgaState, vram: Uint8Array): string | undefined {
  const m = vgaMode(s);
  if (m.kind !== "text") return undefined;
  const lines: string[] = [];
  for (let row = 0; row < m.rows; row++) {
    let line = "";
    for (let col = 0; col < m.cols; col++) {
      const ch = vram[4 * ((m.start + row * m.pitch + col) & 0xffff)];
      line += ch >= 0x20 && ch < 0x7f ? String.fromCharCode(ch) : CP437_HIGH[ch] ?? " ";
    }
    lines.push(line.trimEnd());
  }
  while (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines.join("\n") + "\n";
}

/** Box-drawing and block characters a BIOS screen uses, as Unicode. */
const CP437_HIGH: Record<number, string> = {
  0xb0: "░",
  0xb1: "▒",
  0xb2: "▓",
  0xb3: "│",
  0xb4: "┤",
  0xbf: "┐",
  0xc0: "└",
  0xc1: "┴",
  0xc2: "┬",
  0xc3: "├",
  0xc4: "─",
  0xc5: "┼",
  0xc8: "╚",
  0xc9: "╔",
  0xba: "║",
  0xbb: "╗",
  0xbc: "╝",
  0xcd: "═",
  0xd9: "┘",
  0xda: "┌",
  0xdb: "█",
  0xdc: "▄",
  0xdf: "▀",
  0xfe: "■",
};
