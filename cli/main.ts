/**
 * argv -> subcommand. The table of commands is the one place that lists
 * them; `vmmctl --help` is generated from it.
 *
 * @module
 */

import { checkCommand } from "./verbs/check.ts";
import { upCommand } from "./verbs/up.ts";
import { solo5Command } from "./verbs/solo5.ts";
import { createCommand } from "./verbs/create.ts";
import { startCommand } from "./verbs/start.ts";
import { stopCommand } from "./verbs/stop.ts";
import { showCommand, statusCommand } from "./verbs/status.ts";
import { consoleCommand } from "./verbs/console.ts";
import {
  pauseCommand,
  receiveCommand,
  resetCommand,
  sendCommand,
  unpauseCommand,
  waitCommand,
} from "./verbs/lifecycle.ts";
import { logCommand } from "./verbs/log.ts";
import { loadCommand, reloadCommand } from "./verbs/load.ts";
import { runVmProcess } from "./vm_process/process.ts";
import { VM_PROCESS_COMMAND } from "./vm_process/spawn.ts";
import { importCommand } from "./verbs/import.ts";
import {
  type Command,
  commandHelp,
  EXIT_FAILURE,
  EXIT_USAGE,
  flagSynopsis,
  parseCommandArgs,
  UsageError,
} from "./command.ts";

/** The version printed by `vmmctl --version`. */
export const VERSION = "0.1.0";

/** Every subcommand, in help order. */
export const COMMANDS: readonly Command[] = [
  upCommand,
  checkCommand,
  createCommand,
  startCommand,
  stopCommand,
  statusCommand,
  showCommand,
  consoleCommand,
  pauseCommand,
  unpauseCommand,
  resetCommand,
  waitCommand,
  logCommand,
  loadCommand,
  reloadCommand,
  importCommand,
  sendCommand,
  receiveCommand,
  solo5Command,
];

/** The overview printed by `vmmctl --help`. */
export function overviewHelp(): string {
  const lines = [
    "usage: vmmctl COMMAND [options] [args]",
    "",
    "vmmctl runs virtual machines on Linux KVM and OpenBSD vmm(4), configured by TOML files.",
    "",
    "commands:",
  ];
  for (const c of COMMANDS) {
    lines.push(`  ${c.name.padEnd(8)} ${c.summary}`);
    lines.push(
      `           vmmctl ${c.name} ${[flagSynopsis(c), c.args].filter(Boolean).join(" ")}`,
    );
  }
  lines.push("", "Run `vmmctl COMMAND --help` for a command's options.");
  return lines.join("\n");
}

/** Runs vmmctl with `argv`; resolves with the process exit status. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    if (name === "help" && rest[0]) return main([rest[0], "--help"]);
    console.log(overviewHelp());
    return name === undefined ? EXIT_USAGE : 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`vmmctl ${VERSION}`);
    return 0;
  }
  // The background process of a managed VM (started by `start`; not in the help).
  if (name === VM_PROCESS_COMMAND) return await runVmProcess(rest);
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`vmmctl: unknown command "${name}"; run \`vmmctl --help\` for the list`);
    return EXIT_USAGE;
  }
  try {
    const argv = command.preprocess ? command.preprocess(rest) : rest;
    const { positionals, flags, help } = parseCommandArgs(command, argv);
    if (help) {
      console.log(commandHelp(command));
      return 0;
    }
    return await command.run(positionals, flags);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`vmmctl ${command.name}: ${e.message}; see \`vmmctl ${command.name} --help\``);
      return EXIT_USAGE;
    }
    console.error(`vmmctl ${command.name}: ${e instanceof Error ? e.message : e}`);
    return EXIT_FAILURE;
  }
}
