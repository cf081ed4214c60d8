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
import { reportErrors } from "../errors.ts";

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
