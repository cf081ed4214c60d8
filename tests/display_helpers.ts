/**
 * Shared pieces of the graphical-console tests: a guest run with its serial
 * output and screen at hand, a minimal VNC client, pixel access.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { VmConfig } from "../config/schema.ts";
import type { Frame } from "../devices/vga/render.ts";
import type { DisplayHost } from "../display/display_host.ts";
import { VmHost } from "../machine/host.ts";
import type { Outcome } from "../machine/machine.ts";

/** A running VM with a display, its serial output as it arrives. */
export class DisplayGuest {
  serial = "";
  readonly host: VmHost;
  readonly outcome: Promise<Outcome>;
  #waiters: (() => void)[] = [];

  constructor(config: VmConfig, timeoutMs = 90_000) {
    this.host = new VmHost({
      config,
      serial: { serial: "none" },
      onSerialOutput: (b) => {
        this.serial += new TextDecoder().decode(b);
        for (const w of this.#waiters.splice(0)) w();
      },
    });
    const timer = setTimeout(() => this.host.stop(), timeoutMs);
    this.outcome = this.host.start().finally(() => clearTimeout(timer));
  }

  get display(): DisplayHost {
    return this.host.display!;
  }

  /** Resolves once the serial output matches `re`. */
  async waitFor(re: RegExp): Promise<RegExpMatchArray> {
    for (;;) {
      const m = this.serial.match(re);
      if (m) return m;
      const ended = await Promise.race([
        new Promise<false>((r) => this.#waiters.push(() => r(false))),
        this.outcome.then(() => true),
      ]);
      if (ended && !this.serial.match(re)) {
        const o = await this.outcome;
        throw new Error(`guest ended (${JSON.stringify(o)}) before ${re}; serial:\n${this.serial}`);
      }
    }
  }

  /** Resolves once the text-mode screen matches `re` (polled). */
  async waitForScreen(re: RegExp, timeoutMs = 120_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    let ended = false;
    this.outcome.then(() => (ended = true));
    for (;;) {
      const text = this.host.display?.screendumpText() ?? "";
      if (re.test(text)) return text;
      if (ended || Date.now() > end) {
        const how = ended ? `the VM ended: ${JSON.stringify(await this.outcome)}` : "timed out";
        throw new Error(`screen never matched ${re} (${how}):\n${text}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Stops the VM and waits for it. */
  async stop(): Promise<Outcome> {
    this.host.stop();
    return await this.outcome;
  }
}

/** The RGB of pixel (x, y). */
export function pixel(f: Frame, x: number, y: number): number[] {
  const i = (y * f.width + x) * 4;
  return [...f.rgba.subarray(i, i + 3)];
}

/** A VNC client for tests: the handshake (no authentication), the desktop size, key presses. */
export async function vncClient(endpoint: string): Promise<{
  width: number;
  height: number;
  /** Presses and releases the key of X11 keysym `keysym`. */
  key(keysym: number): Promise<void>;
  close(): void;
}> {
  const colon = endpoint.lastIndexOf(":");
  const conn = await Deno.connect({
    hostname: endpoint.slice(0, colon),
    port: Number(endpoint.slice(colon + 1)),
  });
  const buf: number[] = [];
  const read = async (n: number) => {
    while (buf.length < n) {
      const c = new Uint8Array(65536);
      const got = await conn.read(c);
      if (got === null) throw new Error("VNC server closed");
      buf.push(...c.subarray(0, got));
    }
    return Uint8Array.from(buf.splice(0, n));
  };
  await read(12);
  await conn.write(new TextEncoder().encode("RFB 003.008\n"));
  const [, type] = await read(2);
  assert.equal(type, 1, "no authentication on loopback");
  await conn.write(Uint8Array.of(1));
  await read(4);
  await conn.write(Uint8Array.of(1));
  const init = await read(24);
  const v = new DataView(init.buffer);
  await read(v.getUint32(20));
  return {
    width: v.getUint16(0),
    height: v.getUint16(2),
    async key(keysym) {
      for (const down of [1, 0]) {
        const k = new Uint8Array(8);
        k[0] = 4;
        k[1] = down;
        new DataView(k.buffer).setUint32(4, keysym);
        await conn.write(k);
      }
    },
    close: () => conn.close(),
  };
}
