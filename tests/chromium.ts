/**
 * Headless Chromium (Debian's `chromium`) driven over the DevTools protocol
 * for browser tests: open a page, wait for it, take a screenshot of an
 * element and decode it, type keys. No npm package: the protocol is JSON
 * over one WebSocket.
 *
 * @module
 */

import { inflateSync } from "node:zlib";
import type { Frame } from "../devices/vga/render.ts";

/** Where Debian's chromium lives, if it is installed. */
export function chromiumPath(): string | undefined {
  for (const p of ["/usr/bin/chromium", "/usr/bin/chromium-browser"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* absent */ }
  }
  return undefined;
}

/** Decodes an 8-bit RGB or RGBA PNG (what Chromium's screenshots are) to RGBA. */
export function decodePng(png: Uint8Array): Frame {
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let at = 8;
  let width = 0, height = 0, colorType = 0;
  const idat: Uint8Array[] = [];
  while (at < png.length) {
    const len = v.getUint32(at);
    const type = new TextDecoder().decode(png.subarray(at + 4, at + 8));
    const body = png.subarray(at + 8, at + 8 + len);
    if (type === "IHDR") {
      width = v.getUint32(at + 8);
      height = v.getUint32(at + 12);
      if (body[8] !== 8 || body[12] !== 0) throw new Error("only 8-bit, non-interlaced PNGs");
      colorType = body[9];
    } else if (type === "IDAT") idat.push(body);
    at += 12 + len;
  }
  const bpp = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
  if (!bpp) throw new Error(`PNG colour type ${colorType} not supported`);
  const joined = new Uint8Array(idat.reduce((n, d) => n + d.length, 0));
  let o = 0;
  for (const d of idat) joined.set(d, o), o += d.length;
  const raw = new Uint8Array(inflateSync(joined));
  const stride = width * bpp;
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[y * stride + x - bpp] : 0;
      const b = y > 0 ? out[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y > 0 ? out[(y - 1) * stride + x - bpp] : 0;
      let p = line[x];
      if (filter === 1) p += a;
      else if (filter === 2) p += b;
      else if (filter === 3) p += (a + b) >> 1;
      else if (filter === 4) {
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        p += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      out[y * stride + x] = p & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[i * 4] = out[i * bpp];
    rgba[i * 4 + 1] = out[i * bpp + 1];
    rgba[i * 4 + 2] = out[i * bpp + 2];
    rgba[i * 4 + 3] = bpp === 4 ? out[i * bpp + 3] : 255;
  }
  return { width, height, rgba };
}

/** A page in a headless Chromium. */
export interface CdpSession {
  navigate(url: string): Promise<void>;
  /** Waits until the console page's status line matches. */
  waitForStatus(re: RegExp, timeoutMs?: number): Promise<void>;
  waitForCanvasSize(width: number, height: number, timeoutMs?: number): Promise<void>;
  /** A screenshot of the page's canvas, decoded. */
  canvasPixels(): Promise<Frame>;
  /** A screenshot of the whole page, as the PNG Chromium made. */
  screenshotPng(): Promise<Uint8Array>;
  /** Presses and releases a key (DOM code and key value). */
  typeKey(code: string, key: string): Promise<void>;
  close(): Promise<void>;
}

/** Starts Chromium with a fresh profile and opens a blank page. */
export async function cdpSession(path: string): Promise<CdpSession> {
  const profile = await Deno.makeTempDir({ prefix: "vmmctl-chromium-" });
  const child = new Deno.Command(path, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--force-device-scale-factor=1",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const port = await devtoolsPort(child.stderr);
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as {
    type: string;
    webSocketDebuggerUrl: string;
  }[];
  const page = targets.find((t) => t.type === "page");
  if (!page) throw new Error("Chromium opened no page");
  const ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
  let nextId = 1;
  const pending = new Map<number, (m: { result?: unknown; error?: unknown }) => void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id && pending.has(m.id)) pending.get(m.id)!(m);
  };
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, (m) => {
        pending.delete(id);
        if (m.error) reject(new Error(`${method}: ${JSON.stringify(m.error)}`));
        else resolve(m.result as Record<string, unknown>);
      });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const evaluate = async (expression: string) => {
    const r = await send("Runtime.evaluate", { expression, returnByValue: true });
    return (r.result as { value: unknown }).value;
  };
  const poll = async (what: string, test: () => Promise<boolean>, timeoutMs: number) => {
    const end = Date.now() + timeoutMs;
    while (!(await test())) {
      if (Date.now() > end) throw new Error(`browser: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await send("Emulation.setDeviceMetricsOverride", {
    width: 1024,
    height: 768,
    deviceScaleFactor: 1,
    mobile: false,
  });
  return {
    async navigate(url) {
      await send("Page.enable");
      await send("Page.navigate", { url });
    },
    waitForStatus: (re, timeoutMs = 20_000) =>
      poll(`status ${re}`, async () => {
        const t = await evaluate("document.getElementById('s')?.textContent ?? ''");
        return re.test(String(t));
      }, timeoutMs),
    waitForCanvasSize: (w, h, timeoutMs = 20_000) =>
      poll(`canvas ${w}x${h}`, async () => {
        const s = await evaluate(
          "(() => { const c = document.getElementById('c'); return c ? [c.width, c.height] : [] })()",
        );
        return JSON.stringify(s) === JSON.stringify([w, h]);
      }, timeoutMs),
    async canvasPixels() {
      // Give the page a moment to draw what it received, then shoot the canvas's box.
      await new Promise((r) => setTimeout(r, 300));
      const box = await evaluate(
        "(() => { const r = document.getElementById('c').getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()",
      ) as number[];
      const shot = await send("Page.captureScreenshot", {
        format: "png",
        clip: { x: box[0], y: box[1], width: box[2], height: box[3], scale: 1 },
      });
      const bin = atob(shot.data as string);
      return decodePng(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)));
    },
    async screenshotPng() {
      const shot = await send("Page.captureScreenshot", { format: "png" });
      const bin = atob(shot.data as string);
      return Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
    },
    async typeKey(code, key) {
      await evaluate("document.getElementById('c').focus()");
      for (const type of ["keyDown", "keyUp"]) {
        await send("Input.dispatchKeyEvent", { type, code, key });
      }
    },
    async close() {
      try {
        ws.close();
      } catch { /* closed */ }
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/** Reads Chromium's stderr until it prints its DevTools port. */
async function devtoolsPort(stderr: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stderr.getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    const m = /DevTools listening on ws:\/\/[^:]+:(\d+)\//.exec(text);
    if (m) {
      // Keep draining stderr so Chromium never blocks on a full pipe.
      (async () => {
        try {
          while (!(await reader.read()).done) { /* discard */ }
        } catch { /* closed */ }
      })();
      return Number(m[1]);
    }
  }
  throw new Error(`Chromium did not start its DevTools server:\n${text.slice(-2000)}`);
}
