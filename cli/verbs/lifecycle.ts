/**
 * The small verbs on a running VM: `pause`, `unpause`, `reset`, `wait`, and
 * `send` / `receive` (registered, but there are no snapshots yet).
 *
 * @module
 */

import { type Command, UsageError } from "../command.ts";
import { findRunningVm, findVm, vmRequest } from "../control/client.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import {
  checkLiveness,
  listStates,
  removeVmFiles,
  resolveRunDir,
  RUNDIR_FLAG,
} from "../control/rundir.ts";
import { forgetDefinitions } from "./load.ts";
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
        console.error(`vmmctl: ${reply.message}`);
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
/** vmmctl's own: reboot one VM (vmctl has no such verb; its `reset` is below). */
export const rebootCommand = simpleVerb(
  "reboot",
  "reboot a VM: the machine is built again from its config, in the same process",
  "reset",
);

const RESET_MODES = ["all", "switches", "vms"] as const;

/**
 * vmctl's `reset [all|switches|vms]`: vms stops every VM at once and forgets
 * the loaded definitions, switches forgets the switches (vmmctl keeps no
 * switch state of its own yet), all does both. Like vmctl, quiet on success.
 */
export const resetCommand: Command = {
  name: "reset",
  summary:
    "reset the running state: all (default), switches, or vms (stop every VM, forget definitions)",
  args: "[all | switches | vms]",
  flags: { rundir: RUNDIR_FLAG },
  run(positionals, flags) {
    const mode = (positionals[0] ?? "all").toLowerCase();
    if (positionals.length > 1 || !(RESET_MODES as readonly string[]).includes(mode)) {
      throw new UsageError("reset takes all, switches or vms");
    }
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(async () => {
      if (mode === "switches") return 0;
      let status = 0;
      const live = [];
      for (const s of listStates(rundir)) {
        if (await checkLiveness(rundir, s) === "alive") live.push(s);
        else removeVmFiles(rundir, s.id);
      }
      await Promise.all(live.map(async (s) => {
        try {
          const waiting = await openWait(rundir, s);
          await vmRequest(rundir, s, { op: "stop", force: true, timeoutMs: 0 });
          await waiting.ended;
        } catch (e) {
          if (!(e instanceof ManagedError)) throw e;
          console.error(`vmmctl: ${e.message}`);
          status = 1;
        }
      }));
      forgetDefinitions(rundir);
      return status;
    });
  },
};

export const waitCommand: Command = {
  name: "wait",
  summary: "wait until a VM stops (exit 0; the guest's status goes to the log and --json)",
  args: "NAME|ID",
  flags: {
    json: { type: "boolean", description: "print how the VM ended as JSON on stdout" },
    rundir: RUNDIR_FLAG,
  },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("wait needs one NAME or ID");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(async () => {
      const s = findVm(rundir, positionals[0]);
      let end: { exitStatus?: number; outcome?: string };
      if (await checkLiveness(rundir, s) === "dead") {
        if (s.state !== "died") {
          removeVmFiles(rundir, s.id);
          throw new ManagedError(`vm ${s.name} is not running: its process (pid ${s.pid}) is gone`);
        }
        end = { exitStatus: s.exitStatus, outcome: s.outcome };
        Deno.stderr.writeSync(new TextEncoder().encode(`waiting for vm ${s.name}: `));
      } else {
        // vmctl's line is written in two parts: before and after the wait.
        Deno.stderr.writeSync(new TextEncoder().encode(`waiting for vm ${s.name}: `));
        end = await (await openWait(rundir, s)).ended;
      }
      console.error(`terminated vm ${s.id}`);
      if (flags.json) console.log(JSON.stringify({ id: s.id, name: s.name, ...end }));
      return 0;
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
