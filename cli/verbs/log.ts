/**
 * `vmmctl log brief|verbose` (vmctl's verbosity switch, for every running VM
 * and for VMs started later) and `vmmctl log NAME` (print a VM's log: vmmctl's
 * messages and a copy of its console output, the last lines by default).
 *
 * @module
 */

import { type Command, UsageError } from "../command.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import { vmRequest } from "../control/client.ts";
import {
  checkLiveness,
  ensureRunDir,
  listStates,
  logLevelPath,
  logPath,
  resolveRunDir,
  RUNDIR_FLAG,
} from "../control/rundir.ts";

/** The last `count` lines of `text` (all when count is 0). */
export function lastLines(text: string, count: number): string {
  if (count <= 0) return text;
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.slice(-count).join("\n") + "\n";
}

export const logCommand: Command = {
  name: "log",
  summary: "set running VMs' log verbosity (brief|verbose), or print a VM's log",
  args: "brief|verbose | NAME",
  description: "A VM's log has vmmctl's messages and a copy of its console output (bounded).",
  flags: {
    lines: {
      type: "string",
      short: "n",
      value: "COUNT",
      description: "print the last COUNT lines of the log (default 50; 0: all)",
    },
    rundir: RUNDIR_FLAG,
  },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("log needs brief, verbose or a VM NAME");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    const arg = positionals[0];
    return reportErrors(async () => {
      if (arg === "brief" || arg === "verbose") {
        ensureRunDir(rundir);
        Deno.writeTextFileSync(logLevelPath(rundir), arg + "\n");
        let status = 0;
        for (const s of listStates(rundir)) {
          if (await checkLiveness(rundir, s) !== "alive") continue;
          try {
            await vmRequest(rundir, s, { op: "log-level", level: arg });
          } catch (e) {
            if (!(e instanceof ManagedError)) throw e;
            console.error(`vmmctl: ${e.message}`);
            status = 1;
          }
        }
        console.log(`vmmctl: logging ${arg}`);
        return status;
      }
      const count = flags.lines === undefined ? 50 : Number(flags.lines);
      if (!Number.isInteger(count) || count < 0) {
        throw new UsageError(`--lines wants a count, got "${flags.lines}"`);
      }
      const byId = /^\d+$/.test(arg)
        ? listStates(rundir).find((s) => s.id === Number(arg))
        : undefined;
      const name = byId?.name ?? arg;
      let text: string;
      try {
        text = Deno.readTextFileSync(logPath(rundir, name));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          throw new ManagedError(
            /^\d+$/.test(arg) && !byId ? `no VM with id ${Number(arg)}` : `no VM named "${name}"`,
          );
        }
        if (e instanceof Deno.errors.PermissionDenied) {
          throw new ManagedError(`permission denied on ${logPath(rundir, name)}`);
        }
        throw e;
      }
      const bytes = new TextEncoder().encode(lastLines(text, count));
      for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
      return 0;
    });
  },
};
