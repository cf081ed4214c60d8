/**
 * The control-socket protocol between vmmctl clients and a managed VM's
 * process: one JSON request line, one JSON reply line per connection. After a
 * successful `console` reply the connection carries raw console bytes both
 * ways; a `wait` reply comes when the VM has ended.
 *
 * Who may connect is decided by the socket file's owner and mode (0600, or
 * 0660 for a config owner with a group), like vmd's control socket.
 *
 * @example
 * ```ts
 * import { controlRequest } from "./protocol.ts";
 * const reply = await controlRequest("/run/vmmctl/1.sock", { op: "pause" });
 * if (!reply.ok) console.error(reply.error);
 * ```
 * @module
 */

import type { LogLevel } from "./rundir.ts";

/** A request to a VM process. */
export type ControlRequest =
  | { op: "info" }
  | { op: "pause" }
  | { op: "unpause" }
  | { op: "reset" }
  | {
    op: "stop";
    /** End the VM at once instead of asking the guest. */
    force: boolean;
    /** Force after this long when the guest has not powered off. */
    timeoutMs: number;
    /** Typed on the console as the power-off request when the VM has no vmmci device. */
    keys?: string;
  }
  | { op: "wait" }
  | { op: "console" }
  | { op: "log-level"; level: LogLevel }
  /** The screen of a VM with a display; `length` bytes follow the reply line. */
  | { op: "screendump"; format: "png" | "text" };

/** A VM process's reply. */
export type ControlReply =
  | {
    ok: true;
    /** What happened, for the user ("requested to shut down VM 2"). */
    message?: string;
    /** For `wait`: the VM process's exit status and how the VM ended. */
    exitStatus?: number;
    /** For `screendump`: how many raw bytes follow the reply line. */
    length?: number;
    outcome?: string;
  }
  | { ok: false; error: string };

const NEWLINE = 0x0a;
/** Longest request or reply line accepted. */
export const MAX_LINE_BYTES = 64 * 1024;

/** Writes all of `bytes` to `w`. */
export async function writeAll(w: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}

/** Sends one JSON line. */
export function sendLine(conn: Deno.Conn, value: unknown): Promise<void> {
  return writeAll(conn, new TextEncoder().encode(JSON.stringify(value) + "\n"));
}

/**
 * Reads one line from `conn`; returns the parsed JSON and whatever bytes came
 * after the newline (the start of a console stream). Undefined at end of file.
 */
export async function readLine(
  conn: Deno.Conn,
): Promise<{ value: unknown; rest: Uint8Array } | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return undefined;
    const chunk = buf.slice(0, n);
    const nl = chunk.indexOf(NEWLINE);
    if (nl < 0) {
      chunks.push(chunk);
      total += n;
      if (total > MAX_LINE_BYTES) throw new Error("control line too long");
      continue;
    }
    chunks.push(chunk.subarray(0, nl));
    const line = new Uint8Array(total + nl);
    let off = 0;
    for (const c of chunks) {
      line.set(c, off);
      off += c.length;
    }
    return { value: JSON.parse(new TextDecoder().decode(line)), rest: chunk.slice(nl + 1) };
  }
}

/** Connects to a VM's control socket (throws Deno.errors.* as Deno.connect does). */
export function connectControl(path: string): Promise<Deno.UnixConn> {
  return Deno.connect({ transport: "unix", path });
}

/**
 * Sends `request` and returns the reply. A connection that closes without a
 * reply (the VM process ended) gives `{ ok: false }` with a clear error.
 */
export async function controlRequest(
  path: string,
  request: ControlRequest,
): Promise<ControlReply> {
  const conn = await connectControl(path);
  try {
    await sendLine(conn, request);
    const line = await readLine(conn);
    if (!line) return { ok: false, error: "the VM process closed the connection without a reply" };
    return line.value as ControlReply;
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}
