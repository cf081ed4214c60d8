/**
 * `vmmctl check FILE`: validate a VM config and print it normalized.
 *
 * @module
 */

import { formatConfigError, loadConfigFile } from "../../config/parse.ts";
import { normalizedJson, normalizedToml } from "../../config/normalize.ts";
import { type Command, EXIT_FAILURE, UsageError } from "../command.ts";

export const checkCommand: Command = {
  name: "check",
  summary: "validate a VM config file and print it normalized",
  args: "FILE",
  description: "Prints every error (with key path and line) and exits 1 when the file is invalid.",
  flags: {
    json: { type: "boolean", description: "print the normalized config as JSON" },
  },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("check needs exactly one FILE");
    const { config, errors } = loadConfigFile(positionals[0]);
    if (!config) {
      for (const e of errors) console.error(`${positionals[0]}: ${formatConfigError(e)}`);
      return Promise.resolve(EXIT_FAILURE);
    }
    console.log(flags.json ? normalizedJson(config) : normalizedToml(config).trimEnd());
    return Promise.resolve(0);
  },
};
