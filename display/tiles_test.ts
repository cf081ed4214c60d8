import assert from "node:assert/strict";
import { changedRects, cropRgba, TILE } from "./tiles.ts";

const frame = (w: number, h: number) => ({ width: w, height: h, rgba: new Uint8Array(w * h * 4) });

Deno.test("tiles: a write marks only its tile; neighbours in a row merge; a resize is everything", () => {
  const a = frame(64, 40);
  assert.deepEqual(changedRects(a, { ...a, rgba: a.rgba.slice() }), []);
  const b = { ...a, rgba: a.rgba.slice() };
  b.rgba[(17 * 64 + 33) * 4 + 1] = 9; // tile (2, 1)
  assert.deepEqual(changedRects(a, b), [{ x: 32, y: 16, width: TILE, height: TILE }]);
  b.rgba[(20 * 64 + 50) * 4] = 9; // tile (3, 1): merges with (2, 1)
  b.rgba[(39 * 64 + 0) * 4] = 9; // the short last row of tiles
  assert.deepEqual(changedRects(a, b), [
    { x: 32, y: 16, width: 32, height: 16 },
    { x: 0, y: 32, width: 16, height: 8 },
  ]);
  assert.deepEqual(changedRects(a, frame(32, 40)), [{ x: 0, y: 0, width: 32, height: 40 }]);
  assert.deepEqual(changedRects(undefined, a), [{ x: 0, y: 0, width: 64, height: 40 }]);
});

Deno.test("tiles: cropRgba copies a rectangle row by row", () => {
  const f = frame(4, 3);
  for (let i = 0; i < f.rgba.length; i++) f.rgba[i] = i;
  const c = cropRgba(f, { x: 1, y: 1, width: 2, height: 2 });
  assert.deepEqual([...c.subarray(0, 4)], [20, 21, 22, 23]);
  assert.deepEqual([...c.subarray(8, 12)], [36, 37, 38, 39]);
});
