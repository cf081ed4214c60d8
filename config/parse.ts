/**
 * TOML VM config text -> validated, normalized {@link VmConfig}, reporting
 * every problem at once with its key path and line:
 * `vm.memory (line 3): cannot parse size "512Q": unknown unit "Q"`.
 * The checks themselves are in `validate.ts`, the printed forms in `normalize.ts`.
 *
 * @example
 * ```ts
 * import { formatConfigError, loadConfigFile } from "./parse.ts";
 * const { config, errors } = loadConfigFile("vm.toml");
 * if (config === undefined) {
 *   for (const e of errors) console.error(formatConfigError(e));
 * }
 * ```
 * @module
 */

import { parse, TomlError } from "smol-toml";
import { dirname, resolve } from "node:path";
import { findKeyLines } from "./key_lines.ts";
import type { VmConfig } from "./schema.ts";
import { type ConfigError, describeFsError, Validator } from "./validate.ts";

export type { ConfigError } from "./validate.ts";

/** Options for {@link parseConfig}. */
export interface ParseConfigOptions {
  /** Folder that relative paths in the config resolve against (the config file's folder). */
  baseDir: string;
  /** Absolute path of the config file, copied to `VmConfig.source`. */
  source?: string;
  /** Check that referenced files exist and are readable (and writable for disks). Default true. */
  checkFiles?: boolean;
  /** Check that the owner's user and group exist on this host. Default false. */
  checkUsers?: boolean;
}

/** The result of parsing: `config` is set exactly when `errors` is empty. */
export interface ParseConfigResult {
  config?: VmConfig;
  errors: ConfigError[];
}

/**
 * Formats an error as one line: `vm.memory (line 3): cannot parse size "512Q": unknown unit "Q"`,
 * or `boot.kernel: required` when the line is unknown.
 */
export function formatConfigError(e: ConfigError): string {
  return e.line === undefined
    ? `${e.path}: ${e.message}`
    : `${e.path} (line ${e.line}): ${e.message}`;
}

/**
 * Parses and validates config text. Collects every error in one pass; errors
 * are ordered by line, errors without a line (missing keys) last.
 *
 * @param text the TOML text
 * @param options where relative paths resolve, the source path, whether to check files
 */
export function parseConfig(text: string, options: ParseConfigOptions): ParseConfigResult {
  let root: Record<string, unknown>;
  try {
    root = parse(text, { integersAsBigInt: true }) as Record<string, unknown>;
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const reason = e.message.replace(/^Invalid TOML document: /, "").split("\n")[0];
    return {
      errors: [{ path: "(toml)", line: e.line, message: `${reason} (column ${e.column})` }],
    };
  }
  const validator = new Validator(findKeyLines(text), resolve(options.baseDir), {
    checkFiles: options.checkFiles ?? true,
    checkUsers: options.checkUsers,
  });
  const config = validator.validate(root);
  const errors = validator.sortedErrors();
  if (errors.length > 0) return { errors };
  if (options.source !== undefined) config.source = resolve(options.source);
  return { config, errors };
}

/**
 * Reads and parses a config file; relative paths inside resolve against its
 * folder. A file that cannot be read is one error with path `(file)`.
 *
 * @param path the config file, absolute or relative to the current directory
 */
export function loadConfigFile(
  path: string,
  options: Pick<ParseConfigOptions, "checkUsers"> = {},
): ParseConfigResult {
  const absolute = resolve(path);
  const fail = (message: string): ParseConfigResult => ({
    errors: [{ path: "(file)", message: `file ${JSON.stringify(absolute)} ${message}` }],
  });
  let bytes: Uint8Array;
  try {
    if (Deno.statSync(absolute).isDirectory) return fail("is a directory");
    bytes = Deno.readFileSync(absolute);
  } catch (e) {
    return fail(describeFsError(e, "read"));
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return fail("is not valid UTF-8");
  }
  return parseConfig(text, { baseDir: dirname(absolute), source: absolute, ...options });
}
