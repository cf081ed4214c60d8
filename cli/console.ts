/**
 * `vmmctl console NAME|ID`: attach this terminal to a managed VM's serial
 * console through its control socket. `~.` at the start of a line detaches
 * (the VM keeps running). One attached console per VM: a second attach is
 * refused with a message naming the VM (the pty in `status` can still be
 * opened with cu(1) or screen(1) at the same time).
 *
 * @module
 */

import { addCr } from "../machine/serial_sink.ts";
import { type Command, UsageError } from "./command.ts";
import { connectControl, readLine, sendLine, writeAll } from "./control.ts";
import { EscapeReader } from "./escape.ts";
import { findRunningVm, ManagedError, reportErrors, socketError } from "./managed.ts";
import { resolveRunDir, RUNDIR_FLAG, socketPath, type VmState } from "./rundir.ts";

function writeStdout(bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/**
 * Attaches stdin/stdout to VM `s`'s console until `~.` or the VM ends;
 * resolves with 0. Throws {@link ManagedError} when the console is taken.
 */
export async function attachConsole(rundir: string, s: VmState): Promise<number> {
  let conn: Deno.UnixConn;
  try {
    conn = await connectControl(socketPath(rundir, s.id));
  } catch (e) {
    throw socketError(rundir, s, e);
  }
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
  console.error(`Connected to VM "${s.name}" (id ${s.id}, tty ${s.tty}); ~. detaches`);
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
        const { forward, detach } = escape.feed(value);
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

export const consoleCommand: Command = {
  name: "console",
  summary: "attach this terminal to a running VM's serial console (~. detaches)",
  args: "NAME|ID",
  description:
    "Only one console session per VM: a second attach is refused until the first detaches.",
  flags: { rundir: RUNDIR_FLAG },
  async run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("console needs one NAME or ID");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return await reportErrors(async () =>
      await attachConsole(rundir, await findRunningVm(rundir, positionals[0]))
    );
  },
};
