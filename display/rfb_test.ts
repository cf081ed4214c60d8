import assert from "node:assert/strict";
import { inflateSync } from "node:zlib";
import type { Frame } from "../devices/vga/render.ts";
import type { KeyCodes } from "../devices/ps2_keymap.ts";
import { ENCODING, RfbServer } from "./rfb.ts";
import { vncResponse } from "./vnc_auth.ts";

/** A minimal RFB client written for the test: handshake, requests, events. */
class TestClient {
  #buf = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn) {}
  static async connect(port: number): Promise<TestClient> {
    return new TestClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }
  async read(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      const c = new Uint8Array(65536);
      const got = await this.conn.read(c);
      if (got === null) throw new Error("closed");
      const next = new Uint8Array(this.#buf.length + got);
      next.set(this.#buf);
      next.set(c.subarray(0, got), this.#buf.length);
      this.#buf = next;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }
  async closed(): Promise<boolean> {
    try {
      for (;;) await this.read(this.#buf.length + 1);
    } catch {
      return true;
    }
  }
  async write(bytes: Uint8Array | number[]): Promise<void> {
    const b = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }
  async handshake(password?: string): Promise<{ width: number; height: number; name: string }> {
    assert.equal(new TextDecoder().decode(await this.read(12)), "RFB 003.008\n");
    await this.write(new TextEncoder().encode("RFB 003.008\n"));
    const [n, type] = await this.read(2);
    assert.equal(n, 1);
    await this.write([type]);
    if (type === 2) await this.write(vncResponse(password ?? "", await this.read(16)));
    const result = new DataView((await this.read(4)).buffer).getUint32(0);
    if (result !== 0) {
      const len = new DataView((await this.read(4)).buffer).getUint32(0);
      throw new Error(new TextDecoder().decode(await this.read(len)));
    }
    await this.write([1]);
    const init = await this.read(24);
    const v = new DataView(init.buffer);
    const name = new TextDecoder().decode(await this.read(v.getUint32(20)));
    assert.equal(init[4], 32, "32 bits per pixel");
    return { width: v.getUint16(0), height: v.getUint16(2), name };
  }
  async setEncodings(list: number[]): Promise<void> {
    const b = new Uint8Array(4 + list.length * 4);
    const v = new DataView(b.buffer);
    b[0] = 2;
    v.setUint16(2, list.length);
    list.forEach((e, i) => v.setInt32(4 + i * 4, e));
    await this.write(b);
  }
  async request(incremental: boolean, w: number, h: number): Promise<void> {
    const b = new Uint8Array(10);
    const v = new DataView(b.buffer);
    b[0] = 3;
    b[1] = incremental ? 1 : 0;
    v.setUint16(6, w);
    v.setUint16(8, h);
    await this.write(b);
  }
  /** Reads one FramebufferUpdate; raw and zlib rectangles are decoded to 32-bit pixels. */
  async update(inflater?: { data: Uint8Array[] }): Promise<
    { x: number; y: number; w: number; h: number; enc: number; pixels: Uint8Array }[]
  > {
    const head = await this.read(4);
    assert.equal(head[0], 0, "FramebufferUpdate");
    const n = new DataView(head.buffer).getUint16(2);
    const rects = [];
    for (let i = 0; i < n; i++) {
      const r = new DataView((await this.read(12)).buffer);
      const x = r.getUint16(0), y = r.getUint16(2), w = r.getUint16(4), h = r.getUint16(6);
      const enc = r.getInt32(8);
      let pixels: Uint8Array = new Uint8Array(0);
      if (enc === ENCODING.RAW) pixels = await this.read(w * h * 4);
      if (enc === ENCODING.ZLIB) {
        const len = new DataView((await this.read(4)).buffer).getUint32(0);
        inflater!.data.push(await this.read(len));
        // The stream is continuous: inflate everything so far, keep the new tail.
        const all = new Uint8Array(inflater!.data.reduce((k, d) => k + d.length, 0));
        let at = 0;
        for (const d of inflater!.data) all.set(d, at), at += d.length;
        const out = new Uint8Array(inflateSync(all, { finishFlush: 2 }));
        pixels = out.subarray(out.length - w * h * 4);
      }
      rects.push({ x, y, w, h, enc, pixels });
    }
    return rects;
  }
}

function gradient(w: number, h: number): Frame {
  const rgba = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) rgba.set([i & 0xff, (i >> 8) & 0xff, 0x40, 0xff], i * 4);
  return { width: w, height: h, rgba };
}

function startServer(frame: { current: Frame }, password?: string) {
  const keys: [string, boolean][] = [];
  const pointers: [number, number, number][] = [];
  const logs: string[] = [];
  const server = new RfbServer({
    source: { frame: () => frame.current },
    input: {
      key: (k: KeyCodes, down: boolean) => keys.push([k.code, down]),
      pointer: (x, y, b) => pointers.push([x, y, b]),
    },
    name: "test-vm",
    password,
    refreshMs: 5,
    log: (l) => logs.push(l),
  });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served: Promise<void>[] = [];
  (async () => {
    for await (const conn of listener) served.push(server.handle(conn));
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    keys,
    pointers,
    logs,
    async close() {
      listener.close();
      await Promise.all(served);
    },
  };
}

Deno.test("rfb: handshake, full update in raw, then only the changed tile", async () => {
  const frame = { current: gradient(64, 48) };
  const s = startServer(frame);
  const c = await TestClient.connect(s.port);
  try {
    assert.deepEqual(await c.handshake(), { width: 64, height: 48, name: "test-vm" });
    await c.setEncodings([ENCODING.RAW]);
    await c.request(false, 64, 48);
    const [full] = await c.update();
    assert.deepEqual([full.x, full.y, full.w, full.h, full.enc], [0, 0, 64, 48, ENCODING.RAW]);
    // Default format: little-endian 32-bit, red at bit 16: bytes B, G, R, 0.
    const i = 5 * 64 + 7;
    assert.deepEqual([...full.pixels.subarray(i * 4, i * 4 + 3)], [
      0x40,
      (i >> 8) & 0xff,
      i & 0xff,
    ]);
    const next = { ...frame.current, rgba: frame.current.rgba.slice() };
    next.rgba.set([1, 2, 3, 255], (20 * 64 + 40) * 4);
    frame.current = next;
    await c.request(true, 64, 48);
    const rects = await c.update();
    assert.deepEqual(rects.map((r) => [r.x, r.y, r.w, r.h]), [[32, 16, 16, 16]]);
    const j = (20 - 16) * 16 + (40 - 32);
    assert.deepEqual([...rects[0].pixels.subarray(j * 4, j * 4 + 3)], [3, 2, 1]);
  } finally {
    c.conn.close();
    await s.close();
  }
});

Deno.test("rfb: zlib encoding over one continuous stream, and DesktopSize on a mode change", async () => {
  const frame = { current: gradient(32, 32) };
  const s = startServer(frame);
  const c = await TestClient.connect(s.port);
  const z = { data: [] as Uint8Array[] };
  try {
    await c.handshake();
    await c.setEncodings([ENCODING.ZLIB, ENCODING.RAW, ENCODING.DESKTOP_SIZE]);
    await c.request(false, 32, 32);
    const [r1] = await c.update(z);
    assert.equal(r1.enc, ENCODING.ZLIB);
    assert.deepEqual([...r1.pixels.subarray(0, 4)], [0x40, 0, 0, 0]);
    frame.current = gradient(48, 16);
    await c.request(true, 32, 32);
    const rects = await c.update(z);
    assert.deepEqual(rects[0].enc, ENCODING.DESKTOP_SIZE);
    assert.deepEqual([rects[0].w, rects[0].h], [48, 16]);
    assert.deepEqual([rects[1].w, rects[1].h, rects[1].enc], [48, 16, ENCODING.ZLIB]);
    const k = 47;
    assert.deepEqual([...rects[1].pixels.subarray(k * 4, k * 4 + 3)], [0x40, 0, 47]);
  } finally {
    c.conn.close();
    await s.close();
  }
});

Deno.test("rfb: key and pointer events reach the input sink", async () => {
  const frame = { current: gradient(16, 16) };
  const s = startServer(frame);
  const c = await TestClient.connect(s.port);
  try {
    await c.handshake();
    const key = (down: number, sym: number) => {
      const b = new Uint8Array(8);
      b[0] = 4;
      b[1] = down;
      new DataView(b.buffer).setUint32(4, sym);
      return c.write(b);
    };
    await key(1, 0x41); // "A" (shifted a): the A key
    await key(0, 0x61);
    await key(1, 0xff0d); // Return
    await key(1, 0x12345678); // no such key: dropped
    await c.write([5, 1, 0, 10, 0, 12]);
    await c.request(false, 16, 16);
    await c.update();
    assert.deepEqual(s.keys, [["KeyA", true], ["KeyA", false], ["Enter", true]]);
    assert.deepEqual(s.pointers, [[10, 12, 1]]);
  } finally {
    c.conn.close();
    await s.close();
  }
});

Deno.test("rfb: VNC authentication accepts the password and refuses another", async () => {
  const frame = { current: gradient(16, 16) };
  const s = startServer(frame, "sesame");
  try {
    const good = await TestClient.connect(s.port);
    assert.equal((await good.handshake("sesame")).name, "test-vm");
    good.conn.close();
    const bad = await TestClient.connect(s.port);
    await assert.rejects(() => bad.handshake("wrong"), /authentication failed/);
    bad.conn.close();
  } finally {
    await s.close();
  }
});

Deno.test("rfb: hostile clients are disconnected without harm to the server", async () => {
  const frame = { current: gradient(16, 16) };
  const s = startServer(frame);
  try {
    const cases: number[][] = [
      [9], // unknown message type
      [6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // 4 GiB of cut text
      [0, 0, 0, 0, 12, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0], // 12 bits per pixel
      [0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 40, 8, 0, 0, 0, 0], // shift past the pixel
      [0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // colour map
    ];
    for (const bytes of cases) {
      const c = await TestClient.connect(s.port);
      await c.handshake();
      await c.write(bytes);
      assert.ok(await c.closed(), `closed after ${bytes.slice(0, 4)}`);
      c.conn.close();
    }
    // A bad version string.
    const v = await TestClient.connect(s.port);
    await v.read(12);
    await v.write(new TextEncoder().encode("HELLO WORLD\n"));
    assert.ok(await v.closed());
    v.conn.close();
    // The server still serves a well-behaved client.
    const ok = await TestClient.connect(s.port);
    await ok.handshake();
    await ok.request(false, 16, 16);
    assert.equal((await ok.update()).length, 1);
    ok.conn.close();
  } finally {
    await s.close();
  }
});
