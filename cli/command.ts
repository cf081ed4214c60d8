/**
 * The shape of a subcommand and the shared argument parsing, so every
 * command gets the same `--help`, the same usage errors and exit statuses:
 * 0 success, 1 failure or usage error (as vmctl: scripts test for non-zero).
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";

/** Exit status for usage errors (unknown command, flag or missing argument): vmctl's 1. */
export const EXIT_USAGE = 1;
/** Exit status for failures (invalid config, VMM errors). */
export const EXIT_FAILURE = 1;

/** One flag of a subcommand. */
export interface Flag {
  type: "string" | "boolean";
  short?: string;
  /** Shown in help, e.g. "ACCEL". */
  value?: string;
  description: string;
  multiple?: boolean;
}

/** Parsed flags. */
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** A subcommand. */
export interface Command {
  name: string;
  /** One line for `vmmctl --help`. */
  summary: string;
  /** Positional arguments, e.g. "[FILE]". */
  args: string;
  /** Longer help text. */
  description?: string;
  flags: Record<string, Flag>;
  /** Rewrites argv before parsing (for syntax the shared parser lacks, e.g. `--block:NAME=PATH`). */
  preprocess?(argv: string[]): string[];
  run(positionals: string[], flags: FlagValues): Promise<number>;
}

/** A usage error: printed with the command's usage line, exit status 1. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parses `argv` for `command`; throws UsageError with a clear message. */
export function parseCommandArgs(
  command: Command,
  argv: string[],
): { positionals: string[]; flags: FlagValues; help: boolean } {
  const options: ParseArgsConfig["options"] = { help: { type: "boolean", short: "h" } };
  for (const [name, f] of Object.entries(command.flags)) {
    options[name] = {
      type: f.type,
      ...(f.short ? { short: f.short } : {}),
      ...(f.multiple ? { multiple: true } : {}),
    };
  }
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options,
      allowPositionals: true,
      strict: true,
    });
    const help = values.help === true;
    delete values.help;
    return { positionals, flags: values as FlagValues, help };
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const m = /Unknown option '([^']+)'/.exec(msg);
    if (m) throw new UsageError(`unknown option "${m[1]}" for "${command.name}"`);
    throw new UsageError(msg.replace(/\. To specify.*$/s, ""));
  }
}

/** `vmmctl CMD --help` text. */
export function commandHelp(command: Command): string {
  const lines = [`usage: vmmctl ${command.name}${command.args ? " " + command.args : ""}`, ""];
  lines.push(command.summary);
  if (command.description) lines.push("", command.description);
  const flags = Object.entries(command.flags);
  if (flags.length) {
    lines.push("", "options:");
    for (const [name, f] of flags) {
      const spec = `${f.short ? `-${f.short}, ` : "    "}--${name}${f.value ? " " + f.value : ""}`;
      lines.push(`  ${spec.padEnd(30)} ${f.description}`);
    }
  }
  lines.push(`  ${"-h, --help".padEnd(30)} show this help`);
  return lines.join("\n");
}

/** A one-line flag synopsis for the overview help. */
export function flagSynopsis(command: Command): string {
  return Object.entries(command.flags)
    .map(([name, f]) => `[${f.short ? "-" + f.short : "--" + name}${f.value ? " " + f.value : ""}]`)
    .join(" ");
}
