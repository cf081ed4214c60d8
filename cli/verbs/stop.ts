/**
 * `vmmctl stop [-f] [-w] [--timeout SEC] [--keys TEXT] NAME|ID | -a`: stop
 * managed VMs like vmctl. Without -f the guest is asked to power off (a vmmci
 * request once the machine has that device; today the only request channel
 * is `--keys`, text typed on the console) and forced off after the timeout;
 * -f ends the VM at once; -w waits until it is gone.
 *
 * @module
 */

import { type Command, UsageError } from "../command.ts";
import { findRunningVm, openWait, vmRequest } from "../control/client.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import {
  checkLiveness,
  listStates,
  resolveRunDir,
  RUNDIR_FLAG,
  type VmState,
} from "../control/rundir.ts";

/** Default grace period of `stop` before the VM is forced off. */
const DEFAULT_STOP_TIMEOUT_MS = 30_000;

export const stopCommand: Command = {
  name: "stop",
  summary: "stop a VM: ask the guest to power off (vmmci), -f: at once",
  args: "NAME|ID | -a",
  description: [
    "Without -f the guest gets a vmmci shutdown request when it runs a vmmci driver",
    "(OpenBSD guests do), or --keys TEXT typed on its console (e.g. 'poweroff\\r');",
    "one that has not powered off after --timeout seconds (default 30) is forced off.",
    "A guest with neither is powered off at once, as vmd does. -f returns once the VM",
    "is gone; -w waits for that after a graceful request too.",
  ].join("\n"),
  flags: {
    force: { type: "boolean", short: "f", description: "end the VM at once" },
    wait: { type: "boolean", short: "w", description: "wait until the VM is gone" },
    all: { type: "boolean", short: "a", description: "stop every running VM" },
    timeout: {
      type: "string",
      value: "SECONDS",
      description: "grace period before forcing (default 30)",
    },
    keys: {
      type: "string",
      value: "TEXT",
      description: "type TEXT on the console as the power-off request",
    },
    rundir: RUNDIR_FLAG,
  },
  run(positionals, flags) {
    const all = flags.all === true;
    if (all ? positionals.length !== 0 : positionals.length !== 1) {
      throw new UsageError("stop needs one NAME or ID, or -a");
    }
    let timeoutMs = DEFAULT_STOP_TIMEOUT_MS;
    if (flags.timeout !== undefined) {
      const t = Number(flags.timeout);
      if (!(t >= 0) || !Number.isFinite(t)) {
        throw new UsageError(`--timeout wants seconds, got "${flags.timeout}"`);
      }
      timeoutMs = t * 1000;
    }
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(async () => {
      let targets: VmState[];
      if (all) {
        targets = [];
        for (const s of listStates(rundir)) {
          if (await checkLiveness(rundir, s) === "alive") targets.push(s);
        }
      } else {
        targets = [await findRunningVm(rundir, positionals[0])];
      }
      let status = 0;
      for (const s of targets) {
        const force = flags.force === true;
        try {
          // Wait first, so a VM that ends at once cannot be missed; -f always waits.
          const waiting = flags.wait || force ? await openWait(rundir, s) : undefined;
          const reply = await vmRequest(rundir, s, {
            op: "stop",
            force,
            timeoutMs,
            keys: flags.keys as string | undefined,
          });
          if (waiting) await waiting.ended;
          const said = flags.wait ? `terminated vm ${s.id}` : reply.message;
          console.error(`stopping vm ${s.name}: ${said}`);
        } catch (e) {
          if (!(e instanceof ManagedError)) throw e;
          console.error(`vmmctl: ${e.message}`);
          status = 1;
        }
      }
      return status;
    });
  },
};
