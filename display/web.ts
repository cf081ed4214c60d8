/**
 * The web console: one small page that draws the guest's screen in a canvas
 * and sends keys and mouse events back, over one WebSocket.
 *
 * Wire format on the socket:
 * - server -> page, binary: a changed rectangle, 13 bytes of header
 *   (`1`, screen width, screen height, x, y, width, height as little-endian
 *   u16) then its RGBA pixels;
 * - page -> server, text: JSON `{"t":"key","code":"KeyA","down":true}`,
 *   `{"t":"ptr","x":10,"y":20,"b":1}` (buttons: bit 0 left, 1 middle,
 *   2 right) or `{"t":"ready"}` (drawn; send what changed next).
 *
 * Messages from the page are untrusted: longer than 1 KiB, not JSON, or of
 * an unknown shape, and the socket is closed.
 *
 * @module
 */

import { keyByCode } from "../devices/ps2_keymap.ts";
import type { Frame } from "../devices/vga/render.ts";
import type { DisplaySource, InputSink } from "./rfb.ts";
import { changedRects, cropRgba } from "./tiles.ts";

/** The page's largest acceptable message. */
const MAX_MESSAGE = 1024;

/** Options of a {@link WebConsole}. */
export interface WebConsoleOptions {
  source: DisplaySource;
  input: InputSink;
  /** Title of the page. */
  name: string;
  /** When set, HTTP Basic authentication with any user name and this password. */
  password?: string;
  refreshMs?: number;
  log?: (line: string) => void;
}

/** The HTTP handler of the web console (pass it to `Deno.serve`). */
export class WebConsole {
  readonly options: WebConsoleOptions;
  readonly #log: (line: string) => void;
  readonly #sockets = new Set<WebSocket>();
  constructor(options: WebConsoleOptions) {
    this.options = options;
    this.#log = options.log ?? ((l) => console.error(l));
  }

  /** Answers one request. */
  handle = (req: Request): Response => {
    if (this.options.password !== undefined && !this.#authorized(req)) {
      return new Response("authentication required\n", {
        status: 401,
        headers: { "www-authenticate": 'Basic realm="vmmctl console"' },
      });
    }
    const url = new URL(req.url);
    if (url.pathname === "/ws") {
      if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        return new Response("WebSocket expected\n", { status: 400 });
      }
      const { socket, response } = Deno.upgradeWebSocket(req);
      this.#serve(socket);
      return response;
    }
    if (url.pathname === "/" || url.pathname === "/index.html") {
      return new Response(page(this.options.name), {
        headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" },
      });
    }
    return new Response("not found\n", { status: 404 });
  };

  #authorized(req: Request): boolean {
    const h = req.headers.get("authorization") ?? "";
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(h);
    if (!m) return false;
    let decoded: string;
    try {
      decoded = atob(m[1]);
    } catch {
      return false;
    }
    const pw = decoded.slice(decoded.indexOf(":") + 1);
    return pw === this.options.password;
  }

  #serve(socket: WebSocket): void {
    let last: Frame | undefined;
    let ready = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const o = this.options;
    socket.binaryType = "arraybuffer";
    const tick = () => {
      if (socket.readyState !== WebSocket.OPEN) return;
      if (ready) {
        const frame = o.source.frame();
        const rects = changedRects(last, frame);
        for (const r of rects) {
          const msg = new Uint8Array(13 + r.width * r.height * 4);
          const v = new DataView(msg.buffer);
          msg[0] = 1;
          [frame.width, frame.height, r.x, r.y, r.width, r.height].forEach((n, i) =>
            v.setUint16(1 + i * 2, n, true)
          );
          msg.set(cropRgba(frame, r), 13);
          socket.send(msg);
        }
        if (rects.length) ready = false;
        last = frame;
      }
      timer = setTimeout(tick, o.refreshMs ?? 40);
    };
    socket.onopen = () => tick();
    this.#sockets.add(socket);
    socket.onclose = () => {
      clearTimeout(timer);
      this.#sockets.delete(socket);
    };
    socket.onmessage = (e) => {
      if (typeof e.data !== "string" || e.data.length > MAX_MESSAGE) return this.#drop(socket);
      let m: unknown;
      try {
        m = JSON.parse(e.data);
      } catch {
        return this.#drop(socket);
      }
      if (!isRecord(m)) return this.#drop(socket);
      if (m.t === "ready") {
        ready = true;
      } else if (m.t === "key" && typeof m.code === "string" && typeof m.down === "boolean") {
        const key = keyByCode(m.code);
        if (key) o.input.key(key, m.down);
      } else if (
        m.t === "ptr" && isSmallInt(m.x) && isSmallInt(m.y) && isSmallInt(m.b) && m.b < 8
      ) {
        o.input.pointer(m.x, m.y, m.b);
      } else {
        return this.#drop(socket);
      }
    };
  }

  /** Closes every open console socket (the VM is going away). */
  closeAll(): void {
    for (const s of this.#sockets) s.close(1001, "VM stopped");
  }

  #drop(socket: WebSocket): void {
    this.#log("web console: malformed message from the page; closing its socket");
    socket.close(1008, "malformed message");
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isSmallInt(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 65536;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `value` as a JavaScript literal that is safe inside a <script> element. */
function scriptString(value: string): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

/** The console page: a canvas, a status line and about 60 lines of script. */
function page(name: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(name)} - vmmctl console</title>
<style>body{margin:0;background:#222;color:#ccc;font:13px sans-serif}
#s{padding:4px 8px}canvas{display:block;margin:0 auto;background:#000;outline:none}</style>
</head><body><div id="s">${escapeHtml(name)}: connecting</div>
<canvas id="c" width="640" height="400" tabindex="0"></canvas>
<script>
"use strict";
const c = document.getElementById("c"), g = c.getContext("2d"), s = document.getElementById("s");
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.binaryType = "arraybuffer";
let pending = 0, buttons = 0;
ws.onopen = () => { s.textContent = ${
    scriptString(name)
  } + ": connected (click the screen to type)"; c.focus(); };
ws.onclose = () => { s.textContent = ${scriptString(name)} + ": disconnected"; };
ws.onmessage = (e) => {
  const v = new DataView(e.data);
  if (v.getUint8(0) !== 1) return;
  const W = v.getUint16(1, true), H = v.getUint16(3, true);
  const x = v.getUint16(5, true), y = v.getUint16(7, true), w = v.getUint16(9, true), h = v.getUint16(11, true);
  if (c.width !== W || c.height !== H) { c.width = W; c.height = H; }
  g.putImageData(new ImageData(new Uint8ClampedArray(e.data, 13, w * h * 4), w, h), x, y);
  clearTimeout(pending);
  pending = setTimeout(() => ws.send('{"t":"ready"}'), 0);
};
const send = (m) => { if (ws.readyState === 1) ws.send(JSON.stringify(m)); };
c.addEventListener("keydown", (e) => { e.preventDefault(); send({ t: "key", code: e.code, down: true }); });
c.addEventListener("keyup", (e) => { e.preventDefault(); send({ t: "key", code: e.code, down: false }); });
const pos = (e) => {
  const r = c.getBoundingClientRect();
  return { x: Math.max(0, Math.round((e.clientX - r.left) * c.width / r.width)),
           y: Math.max(0, Math.round((e.clientY - r.top) * c.height / r.height)) };
};
const bit = (b) => (b === 0 ? 1 : b === 1 ? 2 : b === 2 ? 4 : 0);
c.addEventListener("mousemove", (e) => send({ t: "ptr", ...pos(e), b: buttons }));
c.addEventListener("mousedown", (e) => { c.focus(); buttons |= bit(e.button); send({ t: "ptr", ...pos(e), b: buttons }); });
c.addEventListener("mouseup", (e) => { buttons &= ~bit(e.button); send({ t: "ptr", ...pos(e), b: buttons }); });
c.addEventListener("contextmenu", (e) => e.preventDefault());
</script></body></html>
`;
}
