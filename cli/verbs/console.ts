/**
 * `vmmctl console NAME|ID`: attach this terminal to a managed VM's serial
 * console through its control socket. `~.` at the start of a line detaches
 * (the VM keeps running). One attached console per VM: a second attach is
 * refused with a message naming the VM (the pty in `status` can still be
 * opened with cu(1) or screen(1) at the same time).
 *
 * @module
 */

import { type Command, UsageError } from "../command.ts";
import { attachConsole } from "../console/attach.ts";
import { findRunningVm } from "../control/client.ts";
import { resolveRunDir, RUNDIR_FLAG } from "../control/rundir.ts";
import { ManagedError, reportErrors } from "../errors.ts";

export const consoleCommand: Command = {
  name: "console",
  summary: "attach this terminal to a running VM's serial console (~. detaches)",
  args: "NAME|ID",
  description:
    "Only one console session per VM: a second attach is refused until the first detaches.",
  flags: {
    rundir: RUNDIR_FLAG,
    vnc: {
      type: "boolean",
      description: "print where the VM's graphical console listens (VNC and web) instead",
    },
  },
  async run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("console needs one NAME or ID");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return await reportErrors(async () => {
      const s = await findRunningVm(rundir, positionals[0]);
      if (!flags.vnc) return await attachConsole(rundir, s);
      if (!s.display?.vnc && !s.display?.web) {
        throw new ManagedError(`vm "${s.name}" has no graphical console ([display] vnc or web)`);
      }
      if (s.display.vnc) console.log(`vnc ${s.display.vnc}`);
      if (s.display.web) console.log(`web ${s.display.web}`);
      return 0;
    });
  },
};
