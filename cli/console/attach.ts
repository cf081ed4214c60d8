/**
 * Attaching this terminal to a managed VM's serial console through its
 * control socket, with the escapes of console/escape.ts.
 *
 * @module
 */

import { addCr } from "../../machine/serial_sink.ts";
import { ManagedError } from "../errors.ts";
import { connectVm } from "../control/client.ts";
import { readLine, sendLine, writeAll } from "../control/protocol.ts";
import type { VmState } from "../control/rundir.ts";
import { ESCAPE_HELP, EscapeReader } from "./escape.ts";

function writeStdout(bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/**
 * Attaches stdin/stdout to VM `s`'s console until `~.` or the VM ends;
 * resolves with 0. Throws {@link ManagedError} when the console is taken.
 */
export async function attachConsole(rundir: string, s: VmState): Promise<number> {
  const conn = await connectVm(rundir, s);
  await sendLine(conn, { op: "console" });
  const line = await readLine(conn);
  if (!line) {
    conn.close();
    throw new ManagedError(`VM "${s.name}" ended before its console could be attached`);
  }
  const reply = line.value as { ok: boolean; error?: string };
  if (!reply.ok) {
    conn.close();
    throw new ManagedError(reply.error ?? "console refused");
  }
  const interactive = Deno.stdin.isTerminal();
  const crlf = Deno.stdout.isTerminal() ? { last: 0 } : undefined;
  const out = (b: Uint8Array) => writeStdout(crlf ? addCr(b, crlf) : b);
  console.error(
    `Connected to VM "${s.name}" (id ${s.id}, tty ${s.tty}); ~. detaches, ~? lists the escapes`,
  );
  if (line.rest.length) out(line.rest);
  if (interactive) Deno.stdin.setRaw(true);
  let detached = false;
  const reader = Deno.stdin.readable.getReader();
  const input = (async () => {
    const escape = new EscapeReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !value) return;
        const { forward, detach, help, brk } = escape.feed(value);
        if (help) console.error(`\r\n${ESCAPE_HELP}\r`);
        if (brk) console.error("\r\n[vmmctl: no break: the UART has no break condition]\r");
        if (forward.length) await writeAll(conn, forward);
        if (detach) {
          detached = true;
          conn.close();
          return;
        }
      }
    } catch {
      // the VM went away (conn closed) or stdin failed: output decides the end
    }
  })();
  try {
    const buf = new Uint8Array(4096);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        break; // closed by ~.
      }
      if (n === null) break;
      out(buf.subarray(0, n));
    }
  } finally {
    if (interactive) Deno.stdin.setRaw(false);
    reader.cancel().catch(() => {});
    void input;
  }
  if (!detached) {
    try {
      conn.close();
    } catch {
      // already closed
    }
    console.error(`\r\n[VM "${s.name}" ended]`);
  } else {
    console.error(`\r\n[detached from VM "${s.name}"]`);
  }
  return 0;
}
