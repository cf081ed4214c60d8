/**
 * Where a console server listens, and the `[display]` settings: shared by
 * the config checker and the display servers, so both read an address the
 * same way.
 *
 * @module
 */

/** The `[display]` section, normalized. */
export interface DisplaySettings {
  type: "vga";
  /** VNC listen address. */
  vnc?: string;
  /** Web console listen address. */
  web?: string;
  /** Password for VNC authentication and the web page (required off loopback). */
  password?: string;
  /** The BIOS also mirrors its screen to the serial console. */
  serial: boolean;
}

/** A parsed listen address. */
export type ListenAddress =
  | { kind: "tcp"; hostname: string; port: number; loopback: boolean }
  | { kind: "unix"; path: string };

/** Parses "HOST:PORT", "[V6]:PORT" or a Unix socket path; throws with a readable message. */
export function parseListenAddress(text: string): ListenAddress {
  if (text.includes("/")) return { kind: "unix", path: text };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) {
    throw new Error(`cannot parse "${text}": expected HOST:PORT or a socket path`);
  }
  const hostname = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`"${text}": the port must be at most 65535`);
  const loopback = hostname === "localhost" || hostname === "::1" ||
    /^127\.\d+\.\d+\.\d+$/.test(hostname);
  return { kind: "tcp", hostname, port, loopback };
}
