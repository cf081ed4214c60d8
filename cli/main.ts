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
import { screendumpCommand } from "./verbs/screendump.ts";
import {
  pauseCommand,
  rebootCommand,
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
import { verbose } from "./verbose.ts";
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
  screendumpCommand,
  pauseCommand,
  unpauseCommand,
  resetCommand,
  rebootCommand,
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
    "usage: vmmctl [-v] COMMAND [options] [args]",
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
  lines.push(
    "",
    "A unique prefix of a command is that command (stat, con, sh). -v: more messages.",
    "Run `vmmctl help COMMAND` (or `vmmctl COMMAND --help`) for a command's options.",
  );
  return lines.join("\n");
}

/**
 * The command `word` names: its full name, or a prefix of exactly one name
 * (vmctl's abbreviations: `stat`, `con`, `sh`). Throws UsageError when the
 * prefix fits several.
 */
export function findCommand(word: string): Command | undefined {
  const exact = COMMANDS.find((c) => c.name === word);
  if (exact) return exact;
  const fits = word === "" ? [] : COMMANDS.filter((c) => c.name.startsWith(word));
  if (fits.length > 1) {
    throw new UsageError(
      `ambiguous argument: ${word} (${fits.map((c) => c.name).join(", ")})`,
    );
  }
  return fits[0];
}

/** Runs vmmctl with `argv`; resolves with the process exit status. */
export async function main(argv: string[]): Promise<number> {
  let i = 0;
  // Global options before the command, as vmctl's `vmctl [-v] command`.
  for (; i < argv.length && /^-v+$/.test(argv[i]); i++) verbose.level += argv[i].length - 1;
  const [name, ...rest] = argv.slice(i);
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    if (name === "help" && rest[0]) return main([rest[0], "--help"]);
    if (name === undefined) {
      console.error(overviewHelp());
      return EXIT_USAGE;
    }
    console.log(overviewHelp());
    return 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`vmmctl ${VERSION}`);
    return 0;
  }
  // The background process of a managed VM (started by `start`; not in the help).
  if (name === VM_PROCESS_COMMAND) return await runVmProcess(rest);
  let command: Command | undefined;
  try {
    command = findCommand(name);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`vmmctl: ${e.message}; run \`vmmctl --help\` for the list`);
    return EXIT_USAGE;
  }
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
      console.error(`vmmctl ${command.name}: ${e.message}`);
      console.error(
        `usage: vmmctl [-v] ${command.name} ${
          [flagSynopsis(command), command.args].filter(Boolean).join(" ")
        }`,
      );
      return EXIT_USAGE;
    }
    console.error(`vmmctl ${command.name}: ${e instanceof Error ? e.message : e}`);
    return EXIT_FAILURE;
  }
}
