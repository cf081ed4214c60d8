/**
 * The small verbs on a running VM: `pause`, `unpause`, `reset`, `wait`, and
 * `send` / `receive` (registered, but there are no snapshots yet).
 *
 * @module
 */

import { type Command, UsageError } from "../command.ts";
import { findRunningVm, findVm, vmRequest } from "../control/client.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import { checkLiveness, removeVmFiles, resolveRunDir, RUNDIR_FLAG } from "../control/rundir.ts";
import { openWait } from "../control/client.ts";

function simpleVerb(
  name: string,
  summary: string,
  op: "pause" | "unpause" | "reset",
): Command {
  return {
    name,
    summary,
    args: "NAME|ID",
    flags: { rundir: RUNDIR_FLAG },
    run(positionals, flags) {
      if (positionals.length !== 1) throw new UsageError(`${name} needs one NAME or ID`);
      const rundir = resolveRunDir(flags.rundir as string | undefined);
      return reportErrors(async () => {
        const s = await findRunningVm(rundir, positionals[0]);
        const reply = await vmRequest(rundir, s, { op });
        console.log(`vmmctl: ${reply.message}`);
        return 0;
      });
    },
  };
}

export const pauseCommand = simpleVerb(
  "pause",
  "pause a VM: its vCPUs stop until unpause",
  "pause",
);
export const unpauseCommand = simpleVerb("unpause", "resume a paused VM", "unpause");
export const resetCommand = simpleVerb(
  "reset",
  "reboot a VM: the machine is built again from its config, in the same process",
  "reset",
);

export const waitCommand: Command = {
  name: "wait",
  summary: "wait until a VM stops; exit with its exit status",
  args: "NAME|ID",
  flags: { rundir: RUNDIR_FLAG },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("wait needs one NAME or ID");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(async () => {
      const s = findVm(rundir, positionals[0]);
      if (await checkLiveness(rundir, s) === "dead") {
        if (s.state === "died") return s.exitStatus ?? 1;
        removeVmFiles(rundir, s.id);
        throw new ManagedError(`VM "${s.name}" is not running: its process (pid ${s.pid}) is gone`);
      }
      const end = await (await openWait(rundir, s)).ended;
      if (end.exitStatus === undefined) {
        throw new ManagedError(
          `VM "${s.name}" ended without an exit status (its process was killed?)`,
        );
      }
      if (end.outcome) console.error(`vmmctl: VM "${s.name}": ${end.outcome}`);
      return end.exitStatus;
    });
  },
};

const NO_SNAPSHOTS = "not supported yet: snapshots do not exist";

function snapshotVerb(name: string, args: string, summary: string): Command {
  return {
    name,
    summary: `${summary} (not supported yet: snapshots do not exist)`,
    args,
    flags: {},
    run() {
      console.error(`vmmctl: ${name}: ${NO_SNAPSHOTS}`);
      return Promise.resolve(1);
    },
  };
}

export const sendCommand = snapshotVerb("send", "NAME|ID", "write a VM's snapshot to stdout");
export const receiveCommand = snapshotVerb(
  "receive",
  "NAME",
  "start a VM from a snapshot on stdin",
);
