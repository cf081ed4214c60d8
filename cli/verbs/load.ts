/**
 * `vmmctl load FILE|DIR` and `vmmctl reload`: VM definitions, like vmd's
 * loaded vm.conf. `load` validates the configs (a directory's `*.toml`, or one
 * file) and remembers the path in the run directory; `reload` re-reads every
 * remembered path. `start NAME` and `status` use the definitions.
 *
 * @module
 */

import { basename, join, resolve } from "node:path";
import { formatConfigError, loadConfigFile } from "../../config/parse.ts";
import type { VmConfig } from "../../config/schema.ts";
import { type Command, EXIT_FAILURE, UsageError } from "../command.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import {
  defsPath,
  ensureRunDir,
  errorText,
  resolveRunDir,
  RUNDIR_FLAG,
} from "../control/rundir.ts";

/** The remembered definition paths (`defs.json`). */
export interface Definitions {
  /** Absolute paths of directories (their `*.toml`) and single config files. */
  paths: string[];
}

/** What the remembered definitions hold now. */
export interface LoadedDefinitions {
  configs: VmConfig[];
  /** Files that failed validation, with the name the file suggests and the errors. */
  invalid: { path: string; name: string; errors: string[] }[];
}

/** The remembered paths; none when nothing was loaded. */
export function readDefinitions(rundir: string): Definitions {
  try {
    const d = JSON.parse(Deno.readTextFileSync(defsPath(rundir))) as Definitions;
    return { paths: Array.isArray(d.paths) ? d.paths.filter((p) => typeof p === "string") : [] };
  } catch {
    return { paths: [] };
  }
}

function configFiles(path: string): string[] {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    throw new ManagedError(`cannot read "${path}": ${errorText(e)}`);
  }
  if (!st.isDirectory) return [path];
  return [...Deno.readDirSync(path)]
    .filter((e) => e.isFile && e.name.endsWith(".toml"))
    .map((e) => join(path, e.name))
    .sort();
}

/** Reads and validates every config under `paths` (missing paths are skipped). */
export function readConfigs(paths: readonly string[]): LoadedDefinitions {
  const out: LoadedDefinitions = { configs: [], invalid: [] };
  for (const p of paths) {
    let files: string[];
    try {
      files = configFiles(p);
    } catch {
      continue;
    }
    for (const f of files) {
      const { config, errors } = loadConfigFile(f);
      if (config) out.configs.push(config);
      else {
        out.invalid.push({
          path: f,
          name: basename(f, ".toml"),
          errors: errors.map((e) => `${f}: ${formatConfigError(e)}`),
        });
      }
    }
  }
  return out;
}

/** The configs of every remembered definition path. */
export function loadDefinitions(rundir: string): LoadedDefinitions {
  return readConfigs(readDefinitions(rundir).paths);
}

function report(loaded: LoadedDefinitions, what: string): number {
  for (const bad of loaded.invalid) for (const e of bad.errors) console.error(e);
  const names = loaded.configs.map((c) => c.vm.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) console.error(`vmmctl: VM name "${dup}" is defined more than once`);
  console.log(
    `vmmctl: ${what}: ${loaded.configs.length} VM definitions` +
      (loaded.invalid.length ? `, ${loaded.invalid.length} invalid` : ""),
  );
  return loaded.invalid.length || dup !== undefined ? EXIT_FAILURE : 0;
}

export const loadCommand: Command = {
  name: "load",
  summary: "load VM definitions from a config file or a directory of *.toml",
  args: "FILE|DIR",
  description:
    "The path is remembered: `start NAME` finds the VM, `status` lists it, `reload` re-reads it.",
  flags: { rundir: RUNDIR_FLAG },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("load needs one FILE or DIR");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(() => {
      const path = resolve(positionals[0]);
      configFiles(path); // must exist now
      const loaded = readConfigs([path]);
      ensureRunDir(rundir);
      const defs = readDefinitions(rundir);
      if (!defs.paths.includes(path)) defs.paths.push(path);
      Deno.writeTextFileSync(defsPath(rundir), JSON.stringify(defs, null, 2) + "\n");
      return Promise.resolve(report(loaded, `loaded ${path}`));
    });
  },
};

export const reloadCommand: Command = {
  name: "reload",
  summary: "re-read the VM definitions that load remembered",
  args: "",
  flags: { rundir: RUNDIR_FLAG },
  run(positionals, flags) {
    if (positionals.length !== 0) throw new UsageError("reload takes no arguments");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    const defs = readDefinitions(rundir);
    if (defs.paths.length === 0) {
      console.error("vmmctl: nothing loaded yet: run `vmmctl load FILE|DIR` first");
      return Promise.resolve(EXIT_FAILURE);
    }
    return Promise.resolve(report(readConfigs(defs.paths), `reloaded ${defs.paths.join(", ")}`));
  },
};
