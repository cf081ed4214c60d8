/**
 * `vmmctl screendump NAME|ID FILE`: what a VM's screen shows now, as a PNG
 * file (or, with `--text`, the text-mode screen as text; FILE "-" is
 * standard output). The VM process renders it and sends it over the control
 * socket; the file is written here, by the user who asked.
 *
 * @module
 */

import { type Command, UsageError } from "../command.ts";
import { connectVm, findRunningVm } from "../control/client.ts";
import { type ControlReply, readLine, sendLine } from "../control/protocol.ts";
import { resolveRunDir, RUNDIR_FLAG } from "../control/rundir.ts";
import { ManagedError, reportErrors } from "../errors.ts";

/** The largest screen dump accepted (a 2560x1600 PNG is far smaller). */
const MAX_DUMP_BYTES = 64 << 20;

export const screendumpCommand: Command = {
  name: "screendump",
  summary: "save what a VM's screen shows now: a PNG (or --text for a text-mode screen)",
  args: "NAME|ID FILE",
  description: 'FILE "-" writes to standard output. The VM needs [display] type = "vga".',
  flags: {
    rundir: RUNDIR_FLAG,
    text: { type: "boolean", description: "the text-mode screen as text, a line per row" },
  },
  run(positionals, flags) {
    if (positionals.length !== 2) throw new UsageError("screendump needs NAME|ID and FILE");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(async () => {
      const s = await findRunningVm(rundir, positionals[0]);
      const conn = await connectVm(rundir, s);
      let bytes: Uint8Array;
      try {
        await sendLine(conn, { op: "screendump", format: flags.text ? "text" : "png" });
        const line = await readLine(conn);
        if (!line) throw new ManagedError(`vm "${s.name}" closed the connection without a reply`);
        const reply = line.value as ControlReply;
        if (!reply.ok) throw new ManagedError(reply.error);
        const length = reply.length ?? 0;
        if (!Number.isSafeInteger(length) || length < 0 || length > MAX_DUMP_BYTES) {
          throw new ManagedError(`vm "${s.name}" sent a screen dump of ${length} bytes`);
        }
        bytes = new Uint8Array(length);
        bytes.set(line.rest.subarray(0, length));
        let got = Math.min(length, line.rest.length);
        while (got < length) {
          const n = await conn.read(bytes.subarray(got));
          if (n === null) throw new ManagedError(`vm "${s.name}": the screen dump was cut short`);
          got += n;
        }
      } finally {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      if (positionals[1] === "-") await Deno.stdout.write(bytes);
      else await Deno.writeFile(positionals[1], bytes);
      return 0;
    });
  },
};
