/**
 * `vmmctl check FILE`: validate a VM config (TOML, or vm.conf(5) for a file
 * not ending in .toml) and print it normalized, like `vmd -n`.
 *
 * @module
 */

import { type Definition, isVmConfPath, readDefinitions } from "../../config/definitions.ts";
import { normalizedJson, normalizedToml } from "../../config/normalize.ts";
import { type Command, EXIT_FAILURE, UsageError } from "../command.ts";
import { reportDefinitions } from "./load.ts";

function jsonOf(d: Definition): unknown {
  return {
    name: d.name,
    where: d.where,
    enabled: d.enabled,
    config: d.config ? JSON.parse(normalizedJson(d.config)) : undefined,
    errors: d.errors,
    warnings: d.warnings,
  };
}

export const checkCommand: Command = {
  name: "check",
  summary: "validate a VM config file (TOML or vm.conf) and print it normalized",
  args: "FILE",
  description: [
    "Prints every error (with key path or line) and exits 1 when anything is invalid.",
    "A file not ending in .toml is read as vm.conf(5): each VM is printed as TOML.",
  ].join("\n"),
  flags: {
    json: { type: "boolean", description: "print the normalized config as JSON" },
  },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("check needs exactly one FILE");
    const path = positionals[0];
    const set = readDefinitions([path]);
    if (!isVmConfPath(path)) {
      const d = set.definitions[0];
      if (!d?.config) {
        for (const e of [...set.errors, ...(d?.errors ?? [])]) console.error(e);
        return Promise.resolve(EXIT_FAILURE);
      }
      console.log(flags.json ? normalizedJson(d.config) : normalizedToml(d.config).trimEnd());
      return Promise.resolve(0);
    }
    if (flags.json) {
      console.log(JSON.stringify(set.definitions.map(jsonOf), null, 2));
    } else {
      const out = set.definitions.filter((d) => d.config).map((d) =>
        `# vm "${d.name}" (${d.where})${d.enabled ? "" : ", disabled"}\n` +
        normalizedToml({ ...d.config!, source: undefined }).trimEnd()
      );
      if (out.length) console.log(out.join("\n\n"));
    }
    return Promise.resolve(reportDefinitions(set, `checked ${path}`));
  },
};
