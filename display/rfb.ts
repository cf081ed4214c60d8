/**
 * An RFB 3.8 (VNC) server for the guest's screen: the handshake with
 * security type None (loopback and Unix sockets) or VNC authentication,
 * framebuffer updates in the Raw and zlib encodings (only the tiles that
 * changed), the DesktopSize pseudo-encoding when the guest changes mode,
 * and key and pointer events into the guest's PS/2 keyboard and mouse.
 *
 * A client is untrusted: every message is checked against its type's size
 * before use, lengths are capped (cut text is skipped, not stored), and a
 * malformed message closes that connection only.
 *
 * @module
 */

import { constants as zlibConstants, createDeflate } from "node:zlib";
import type { Frame } from "../devices/vga/render.ts";
import { keyByKeysym, type KeyCodes } from "../devices/ps2_keymap.ts";
import { changedRects, type Rect } from "./tiles.ts";
import { vncResponse } from "./vnc_auth.ts";

/** What the server shows. */
export interface DisplaySource {
  /** The current screen. */
  frame(): Frame;
}

/** Where client input goes. */
export interface InputSink {
  key(key: KeyCodes, down: boolean): void;
  /** An absolute position on the current frame and the buttons held (bit 0 left, 1 middle, 2 right: RFB order). */
  pointer(x: number, y: number, buttons: number): void;
}

/** Options of an {@link RfbServer}. */
export interface RfbOptions {
  source: DisplaySource;
  input: InputSink;
  /** Desktop name shown by clients. */
  name: string;
  /** VNC password (at most 8 characters are used, as in every VNC implementation). */
  password?: string;
  /** How often pending incremental updates are checked, in ms. */
  refreshMs?: number;
  log?: (line: string) => void;
}

/** RFB encodings. */
export const ENCODING = { RAW: 0, COPYRECT: 1, ZLIB: 6, DESKTOP_SIZE: -223 } as const;
/** Security types. */
export const SECURITY = { NONE: 1, VNC: 2 } as const;

/** The largest client-to-server message we keep in memory (SetEncodings with 64K entries). */
const MAX_MESSAGE = 4 + 65535 * 4;

/** A client's pixel format. */
interface PixelFormat {
  bpp: number;
  bigEndian: boolean;
  trueColour: boolean;
  max: [number, number, number];
  shift: [number, number, number];
}

const DEFAULT_FORMAT: PixelFormat = {
  bpp: 32,
  bigEndian: false,
  trueColour: true,
  max: [255, 255, 255],
  shift: [16, 8, 0],
};

class ProtocolError extends Error {}

/** Reads exact byte counts from a connection, with a cap. */
class Reader {
  #buf = new Uint8Array(0);
  readonly #conn: Deno.Conn;
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }
  async exact(n: number): Promise<Uint8Array> {
    if (n > MAX_MESSAGE) throw new ProtocolError(`message of ${n} bytes is too large`);
    while (this.#buf.length < n) {
      const chunk = new Uint8Array(Math.max(4096, n - this.#buf.length));
      const got = await this.#conn.read(chunk);
      if (got === null) throw new ProtocolError("connection closed");
      const next = new Uint8Array(this.#buf.length + got);
      next.set(this.#buf);
      next.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = next;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }
  /** Discards `n` bytes without keeping them. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const take = Math.min(n, 65536);
      await this.exact(take);
      n -= take;
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** One zlib stream per connection, flushed after each rectangle (RFB's zlib encoding). */
class ZlibStream {
  readonly #deflate = createDeflate({ level: 6 });
  #chunks: Uint8Array[] = [];
  constructor() {
    this.#deflate.on("data", (c: Uint8Array) => this.#chunks.push(new Uint8Array(c)));
  }
  compress(data: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve) => {
      this.#deflate.write(data);
      this.#deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => {
        const out = concat(this.#chunks);
        this.#chunks = [];
        resolve(out);
      });
    });
  }
  close(): void {
    this.#deflate.destroy();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/** Pixels of `r` in `frame`, converted to the client's format. */
export function encodePixels(frame: Frame, r: Rect, pf: PixelFormat = DEFAULT_FORMAT): Uint8Array {
  const bytes = pf.bpp >> 3;
  const out = new Uint8Array(r.width * r.height * bytes);
  const v = new DataView(out.buffer);
  let o = 0;
  for (let y = r.y; y < r.y + r.height; y++) {
    let i = (y * frame.width + r.x) * 4;
    for (let x = 0; x < r.width; x++, i += 4) {
      const p = ((Math.round(frame.rgba[i] * pf.max[0] / 255) << pf.shift[0]) |
        (Math.round(frame.rgba[i + 1] * pf.max[1] / 255) << pf.shift[1]) |
        (Math.round(frame.rgba[i + 2] * pf.max[2] / 255) << pf.shift[2])) >>> 0;
      if (bytes === 4) v.setUint32(o, p, !pf.bigEndian);
      else if (bytes === 2) v.setUint16(o, p & 0xffff, !pf.bigEndian);
      else out[o] = p & 0xff;
      o += bytes;
    }
  }
  return out;
}

/** The RFB server; call {@link handle} for every accepted connection. */
export class RfbServer {
  readonly options: RfbOptions;
  readonly #log: (line: string) => void;
  constructor(options: RfbOptions) {
    this.options = options;
    this.#log = options.log ?? ((l) => console.error(l));
  }

  /** Serves one client until it disconnects or misbehaves; never throws. */
  async handle(conn: Deno.Conn): Promise<void> {
    const session = new Session(this.options, conn);
    try {
      await session.run();
    } catch (e) {
      if (!(e instanceof ProtocolError) || e.message !== "connection closed") {
        this.#log(`vnc: client closed: ${e instanceof Error ? e.message : e}`);
      }
    } finally {
      session.close();
    }
  }
}

class Session {
  readonly #o: RfbOptions;
  readonly #conn: Deno.Conn;
  readonly #in: Reader;
  #format: PixelFormat = DEFAULT_FORMAT;
  /** The client's encodings, in its order of preference. */
  #encodings: number[] = [];
  #last?: Frame;
  #zlib?: ZlibStream;
  #wanted: "none" | "incremental" | "full" = "none";
  #closed = false;

  constructor(o: RfbOptions, conn: Deno.Conn) {
    this.#o = o;
    this.#conn = conn;
    this.#in = new Reader(conn);
  }

  close(): void {
    this.#closed = true;
    this.#zlib?.close();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async run(): Promise<void> {
    const enc = new TextEncoder();
    await writeAll(this.#conn, enc.encode("RFB 003.008\n"));
    const version = new TextDecoder().decode(await this.#in.exact(12));
    const m = /^RFB (\d{3})\.(\d{3})\n$/.exec(version);
    if (!m || Number(m[1]) !== 3 || Number(m[2]) < 7) {
      throw new ProtocolError(`unsupported client version ${JSON.stringify(version)}`);
    }
    const type = this.#o.password !== undefined ? SECURITY.VNC : SECURITY.NONE;
    await writeAll(this.#conn, Uint8Array.of(1, type));
    const chosen = (await this.#in.exact(1))[0];
    if (chosen !== type) {
      await this.#fail(`security type ${chosen} was not offered`);
      return;
    }
    if (type === SECURITY.VNC) {
      const challenge = crypto.getRandomValues(new Uint8Array(16));
      await writeAll(this.#conn, challenge);
      const response = await this.#in.exact(16);
      const want = vncResponse(this.#o.password!, challenge);
      if (!timingSafeEqual(response, want)) {
        await this.#fail("authentication failed");
        return;
      }
    }
    await writeAll(this.#conn, new Uint8Array(4)); // SecurityResult: OK
    await this.#in.exact(1); // ClientInit: shared flag (every client may share)
    const f = this.#o.source.frame();
    const name = enc.encode(this.#o.name.slice(0, 255));
    const init = new Uint8Array(24 + name.length);
    const v = new DataView(init.buffer);
    v.setUint16(0, f.width);
    v.setUint16(2, f.height);
    init.set(formatBytes(DEFAULT_FORMAT), 4);
    v.setUint32(20, name.length);
    init.set(name, 24);
    await writeAll(this.#conn, init);
    this.#last = undefined;
    const pump = this.#pump();
    try {
      for (;;) await this.#message();
    } finally {
      this.#closed = true;
      await pump;
    }
  }

  async #fail(reason: string): Promise<void> {
    const r = new TextEncoder().encode(reason);
    const out = new Uint8Array(8 + r.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, 1);
    v.setUint32(4, r.length);
    out.set(r, 8);
    await writeAll(this.#conn, out);
    throw new ProtocolError(reason);
  }

  async #message(): Promise<void> {
    const type = (await this.#in.exact(1))[0];
    switch (type) {
      case 0: { // SetPixelFormat
        const b = await this.#in.exact(19);
        this.#format = parseFormat(b.subarray(3));
        this.#last = undefined;
        return;
      }
      case 2: { // SetEncodings
        const h = await this.#in.exact(3);
        const n = (h[1] << 8) | h[2];
        const list = await this.#in.exact(n * 4);
        const dv = new DataView(list.buffer);
        this.#encodings = Array.from({ length: n }, (_, i) => dv.getInt32(i * 4));
        return;
      }
      case 3: { // FramebufferUpdateRequest
        const b = await this.#in.exact(9);
        const incremental = b[0] !== 0;
        if (!incremental) this.#wanted = "full";
        else if (this.#wanted === "none") this.#wanted = "incremental";
        return;
      }
      case 4: { // KeyEvent
        const b = await this.#in.exact(7);
        const keysym = new DataView(b.buffer).getUint32(3);
        const key = keyByKeysym(keysym);
        if (key) this.#o.input.key(key, b[0] !== 0);
        return;
      }
      case 5: { // PointerEvent
        const b = await this.#in.exact(5);
        const dv = new DataView(b.buffer);
        this.#o.input.pointer(dv.getUint16(1), dv.getUint16(3), b[0]);
        return;
      }
      case 6: { // ClientCutText: skipped, never stored
        const b = await this.#in.exact(7);
        const len = new DataView(b.buffer).getUint32(3);
        if (len > 1 << 20) throw new ProtocolError(`cut text of ${len} bytes`);
        await this.#in.skip(len);
        return;
      }
      default:
        throw new ProtocolError(`unknown message type ${type}`);
    }
  }

  /** Answers update requests: at once for a full one, when something changed for an incremental one. */
  async #pump(): Promise<void> {
    const period = this.#o.refreshMs ?? 40;
    while (!this.#closed) {
      if (this.#wanted !== "none") {
        const frame = this.#o.source.frame();
        const full = this.#wanted === "full";
        const resized = this.#last &&
          (this.#last.width !== frame.width || this.#last.height !== frame.height);
        const rects = full
          ? [{ x: 0, y: 0, width: frame.width, height: frame.height }]
          : changedRects(
            this.#last,
            frame,
          );
        if (rects.length > 0 || resized) {
          this.#wanted = "none";
          try {
            await this.#send(frame, rects, resized === true);
          } catch {
            return;
          }
          this.#last = frame;
        }
      }
      await new Promise((r) => setTimeout(r, period));
    }
  }

  async #send(frame: Frame, rects: Rect[], resized: boolean): Promise<void> {
    const parts: Uint8Array[] = [];
    const desktopSize = resized && this.#encodings.includes(ENCODING.DESKTOP_SIZE);
    const header = new Uint8Array(4);
    parts.push(header);
    let count = 0;
    if (desktopSize) {
      parts.push(
        rectHeader({ x: 0, y: 0, width: frame.width, height: frame.height }, ENCODING.DESKTOP_SIZE),
      );
      count++;
      rects = [{ x: 0, y: 0, width: frame.width, height: frame.height }];
    }
    // The first of the encodings we have that the client lists; Raw when it lists none.
    const useZlib = this.#encodings.find((e) => e === ENCODING.RAW || e === ENCODING.ZLIB) ===
      ENCODING.ZLIB;
    for (const r of rects) {
      const pixels = encodePixels(frame, r, this.#format);
      if (useZlib) {
        this.#zlib ??= new ZlibStream();
        const z = await this.#zlib.compress(pixels);
        const len = new Uint8Array(4);
        new DataView(len.buffer).setUint32(0, z.length);
        parts.push(rectHeader(r, ENCODING.ZLIB), len, z);
      } else {
        parts.push(rectHeader(r, ENCODING.RAW), pixels);
      }
      count++;
    }
    new DataView(header.buffer).setUint16(2, count);
    await writeAll(this.#conn, concat(parts));
  }
}

function rectHeader(r: Rect, encoding: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint16(0, r.x);
  v.setUint16(2, r.y);
  v.setUint16(4, r.width);
  v.setUint16(6, r.height);
  v.setInt32(8, encoding);
  return b;
}

function formatBytes(pf: PixelFormat): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  b[0] = pf.bpp;
  b[1] = 24;
  b[2] = pf.bigEndian ? 1 : 0;
  b[3] = pf.trueColour ? 1 : 0;
  v.setUint16(4, pf.max[0]);
  v.setUint16(6, pf.max[1]);
  v.setUint16(8, pf.max[2]);
  b[10] = pf.shift[0];
  b[11] = pf.shift[1];
  b[12] = pf.shift[2];
  return b;
}

function parseFormat(b: Uint8Array): PixelFormat {
  const v = new DataView(b.buffer, b.byteOffset, 16);
  const pf: PixelFormat = {
    bpp: b[0],
    bigEndian: b[2] !== 0,
    trueColour: b[3] !== 0,
    max: [v.getUint16(4), v.getUint16(6), v.getUint16(8)],
    shift: [b[10], b[11], b[12]],
  };
  if (![8, 16, 32].includes(pf.bpp)) throw new ProtocolError(`pixel format of ${pf.bpp} bits`);
  if (!pf.trueColour) throw new ProtocolError("colour-map pixel formats are not supported");
  for (let i = 0; i < 3; i++) {
    if (pf.shift[i] >= pf.bpp || pf.max[i] === 0 || pf.max[i] >= 2 ** pf.bpp) {
      throw new ProtocolError("pixel format with impossible shifts or maxima");
    }
  }
  return pf;
}

function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}
