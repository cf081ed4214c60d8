/**
 * The host-thread half of the graphical console: owns the VGA's shared
 * memory, renders the screen on demand, runs the VNC and web console servers
 * the config asks for, and turns their clients' input into events for the
 * vCPU thread's PS/2 keyboard and mouse.
 *
 * Listen addresses are "HOST:PORT" (IPv6 as "[::1]:PORT") or a Unix socket
 * path (anything with a "/"). Loopback and Unix sockets need no password;
 * any other address requires one (the config checker refuses it otherwise)
 * and is logged as a warning, since VNC authentication is weak.
 *
 * @module
 */

import type { KeyCodes } from "../devices/ps2_keymap.ts";
import { type Frame, renderVga, textScreen } from "../devices/vga/render.ts";
import {
  createVgaShared,
  INPUT,
  openVgaShared,
  type VgaShared,
  type VgaViews,
} from "../devices/vga/shared.ts";
import { encodePng } from "./png.ts";
import { type InputSink, RfbServer } from "./rfb.ts";
import { WebConsole } from "./web.ts";
import { type DisplaySettings, type ListenAddress, parseListenAddress } from "./listen.ts";

/** The VNC client's button bits (left 1, middle 2, right 4) as PS/2 bits (left 1, right 2, middle 4). */
function ps2Buttons(rfb: number): number {
  return (rfb & 1) | ((rfb & 4) >> 1) | ((rfb & 2) << 1);
}

/** The display of one VM on the host thread. */
export class DisplayHost {
  readonly settings: DisplaySettings;
  readonly shared: VgaShared;
  readonly #views: VgaViews;
  readonly #name: string;
  readonly #wake: () => void;
  readonly #log: (line: string) => void;
  #listeners: Deno.Listener[] = [];
  #servers: Deno.HttpServer[] = [];
  #sessions: Promise<void>[] = [];
  #conns = new Set<Deno.Conn>();
  #consoles: WebConsole[] = [];
  #pointer = { x: 0, y: 0 };
  #cached?: { generation: number; frame: Frame; at: number };
  /** Where the servers listen, for `vmmctl console --vnc` and the log. */
  readonly endpoints: { vnc?: string; web?: string } = {};

  /**
   * @param wake makes the vCPU thread look at its input soon (a kick)
   */
  constructor(
    settings: DisplaySettings,
    name: string,
    wake: () => void,
    log: (line: string) => void = (l) => console.error(l),
  ) {
    this.settings = settings;
    this.#name = name;
    this.#wake = wake;
    this.#log = log;
    this.shared = createVgaShared((b) =>
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)))
    );
    this.#views = openVgaShared(this.shared);
  }

  /** The screen now (re-rendered when the VGA changed, at most every 10 ms). */
  frame(): Frame {
    const generation = Atomics.load(this.#views.state.generation, 0);
    const now = performance.now();
    const c = this.#cached;
    // VRAM mapped into the guest changes without the generation moving: re-render on time too.
    if (c && c.generation === generation && now - c.at < 10) return c.frame;
    const frame = renderVga(this.#views.state, this.#views.vram);
    this.#cached = { generation, frame, at: now };
    return frame;
  }

  /** The current screen as a PNG file. */
  screendumpPng(): Uint8Array {
    return encodePng(this.frame());
  }

  /** The text-mode screen as text, or undefined in a graphics mode. */
  screendumpText(): string | undefined {
    return textScreen(this.#views.state, this.#views.vram);
  }

  /** Input from console clients, as events for the vCPU thread. */
  readonly input: InputSink = {
    key: (key: KeyCodes, down: boolean) => {
      if (this.#views.input.push([INPUT.KEY, key.index, down ? 1 : 0, 0])) this.#wake();
    },
    pointer: (x: number, y: number, buttons: number) => {
      // PS/2 mice are relative: send the move since the last event (y grows upwards).
      const dx = x - this.#pointer.x;
      const dy = this.#pointer.y - y;
      this.#pointer = { x, y };
      if (this.#views.input.push([INPUT.MOUSE, dx, dy, ps2Buttons(buttons)])) this.#wake();
    },
  };

  /** Starts the configured servers; resolves once they listen. */
  start(): void {
    const { vnc, web, password } = this.settings;
    if (vnc) {
      const addr = parseListenAddress(vnc);
      this.#warnIfExposed("VNC", addr);
      const listener = addr.kind === "unix"
        ? Deno.listen({ transport: "unix", path: addr.path })
        : Deno.listen({ hostname: addr.hostname, port: addr.port });
      this.#listeners.push(listener);
      this.endpoints.vnc = describe(listener.addr);
      const rfb = new RfbServer({
        source: this,
        input: this.input,
        name: this.#name,
        password,
        log: this.#log,
      });
      (async () => {
        for await (const conn of listener) {
          this.#conns.add(conn);
          this.#sessions.push(rfb.handle(conn).finally(() => this.#conns.delete(conn)));
        }
      })().catch(() => {});
    }
    if (web) {
      const addr = parseListenAddress(web);
      this.#warnIfExposed("web console", addr);
      const console = new WebConsole({
        source: this,
        input: this.input,
        name: this.#name,
        password,
        log: this.#log,
      });
      const server = addr.kind === "unix"
        ? Deno.serve({ path: addr.path, onListen() {} }, console.handle)
        : Deno.serve({ hostname: addr.hostname, port: addr.port, onListen() {} }, console.handle);
      this.#servers.push(server);
      this.#consoles.push(console);
      const a = server.addr as Deno.Addr;
      this.endpoints.web = "hostname" in a ? `http://${describe(a)}/` : describe(a);
    }
  }

  #warnIfExposed(what: string, addr: ListenAddress): void {
    if (addr.kind === "tcp" && !addr.loopback) {
      this.#log(
        `vmmctl: warning: the ${what} listens on ${addr.hostname}:${addr.port}, beyond this host; ` +
          "VNC authentication is weak: prefer loopback and an SSH tunnel",
      );
    }
  }

  /** Stops the servers and closes their clients. */
  async close(): Promise<void> {
    for (const l of this.#listeners) {
      try {
        l.close();
      } catch { /* closed */ }
    }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    for (const c of this.#consoles) c.closeAll();
    await Promise.all(this.#servers.map((s) => s.shutdown()));
    await Promise.allSettled(this.#sessions);
  }
}

function fmtHost(h: string): string {
  return h.includes(":") ? `[${h}]` : h;
}

function describe(addr: Deno.Addr): string {
  if ("path" in addr) return addr.path;
  if ("hostname" in addr) return `${fmtHost(addr.hostname)}:${addr.port}`;
  return String(addr.transport);
}
