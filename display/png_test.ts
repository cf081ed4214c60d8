import assert from "node:assert/strict";
import { crc32, encodePng } from "./png.ts";

Deno.test("png: CRC-32 of the standard check string", () => {
  assert.equal((crc32(new TextEncoder().encode("123456789")) ^ 0xffffffff) >>> 0, 0xcbf43926);
});

Deno.test("png: a frame decodes back to the same pixels (checked by an independent decoder)", async () => {
  const width = 7, height = 5;
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < rgba.length; i++) rgba[i] = (i * 37) & 0xff;
  for (let i = 3; i < rgba.length; i += 4) rgba[i] = 255;
  const png = encodePng({ width, height, rgba });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/f.png`, png);
    // Python's zlib + struct as the reference decoder (always on Debian).
    const py = `
import struct, zlib, sys
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
i = 8; idat = b''
while i < len(d):
    n, = struct.unpack('>I', d[i:i+4]); t = d[i+4:i+8]; body = d[i+8:i+8+n]
    assert zlib.crc32(t + body) == struct.unpack('>I', d[i+8+n:i+12+n])[0], t
    if t == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
    if t == b'IDAT': idat += body
    i += 12 + n
raw = zlib.decompress(idat)
print(w, h, depth, ctype, raw.hex())`;
    const r = new Deno.Command("python3", { args: ["-c", py, `${dir}/f.png`] }).outputSync();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
    const [w, h, depth, ctype, hex] = new TextDecoder().decode(r.stdout).trim().split(" ");
    assert.deepEqual([+w, +h, +depth, +ctype], [width, height, 8, 2]);
    const raw = Uint8Array.from(hex.match(/../g)!.map((b) => parseInt(b, 16)));
    for (let y = 0; y < height; y++) {
      assert.equal(raw[y * (1 + width * 3)], 0);
      for (let x = 0; x < width; x++) {
        const a = y * (1 + width * 3) + 1 + x * 3;
        const b = (y * width + x) * 4;
        assert.deepEqual([...raw.subarray(a, a + 3)], [...rgba.subarray(b, b + 3)]);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("png: an empty or short frame is refused", () => {
  assert.throws(() => encodePng({ width: 0, height: 1, rgba: new Uint8Array(0) }), RangeError);
  assert.throws(() => encodePng({ width: 2, height: 2, rgba: new Uint8Array(4) }), RangeError);
});
