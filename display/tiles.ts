/**
 * Finds what changed between two frames, tile by tile, so a console client
 * gets only the parts of the screen that moved.
 *
 * @example
 * ```ts
 * import { changedRects } from "./tiles.ts";
 * const a = { width: 32, height: 16, rgba: new Uint8Array(32 * 16 * 4) };
 * const b = { width: 32, height: 16, rgba: a.rgba.slice() };
 * b.rgba[(3 * 32 + 20) * 4] = 1;
 * changedRects(a, b); // [{ x: 16, y: 0, width: 16, height: 16 }]
 * ```
 * @module
 */

import type { Frame } from "../devices/vga/render.ts";

/** Tile edge in pixels. */
export const TILE = 16;

/** A rectangle of the screen. */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The tiles of `next` that differ from `prev`, merged into runs along each
 * tile row. A size change makes the whole of `next` one rectangle.
 */
export function changedRects(prev: Frame | undefined, next: Frame): Rect[] {
  const { width, height } = next;
  if (!prev || prev.width !== width || prev.height !== height) {
    return [{ x: 0, y: 0, width, height }];
  }
  const a = new Uint32Array(prev.rgba.buffer, prev.rgba.byteOffset, width * height);
  const b = new Uint32Array(next.rgba.buffer, next.rgba.byteOffset, width * height);
  const rects: Rect[] = [];
  for (let ty = 0; ty < height; ty += TILE) {
    const th = Math.min(TILE, height - ty);
    let runStart = -1;
    for (let tx = 0; tx <= width; tx += TILE) {
      const dirty = tx < width && tileDiffers(a, b, width, tx, ty, Math.min(TILE, width - tx), th);
      if (dirty && runStart < 0) runStart = tx;
      if (!dirty && runStart >= 0) {
        rects.push({ x: runStart, y: ty, width: Math.min(tx, width) - runStart, height: th });
        runStart = -1;
      }
    }
  }
  return rects;
}

function tileDiffers(
  a: Uint32Array,
  b: Uint32Array,
  stride: number,
  x: number,
  y: number,
  w: number,
  h: number,
): boolean {
  for (let row = y; row < y + h; row++) {
    const base = row * stride + x;
    for (let i = base; i < base + w; i++) if (a[i] !== b[i]) return true;
  }
  return false;
}

/** Copies rectangle `r` of `frame` out as tightly packed RGBA. */
export function cropRgba(frame: Frame, r: Rect): Uint8Array {
  const out = new Uint8Array(r.width * r.height * 4);
  for (let y = 0; y < r.height; y++) {
    const from = ((r.y + y) * frame.width + r.x) * 4;
    out.set(frame.rgba.subarray(from, from + r.width * 4), y * r.width * 4);
  }
  return out;
}
