/**
 * `vmmctl load FILE|DIR` and `vmmctl reload`: VM definitions, like vmd's
 * loaded vm.conf. `load` reads a vm.conf(5) file, a TOML file or a directory
 * of `*.toml` and remembers the path in the run directory; `reload` re-reads
 * every remembered path, or /etc/vm.conf when nothing was loaded. `start
 * NAME` and `status` use the definitions; a definition with errors is kept
 * and shown with them.
 *
 * @module
 */

import { resolve } from "node:path";
import {
  DEFAULT_VMCONF_PATH,
  definitionFiles,
  definitionMessages,
  type DefinitionSet,
  readDefinitions,
} from "../../config/definitions.ts";
import { type Command, EXIT_FAILURE, UsageError } from "../command.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import {
  defsPath,
  ensureRunDir,
  errorText,
  listStates,
  reservedIds,
  resolveRunDir,
  RUNDIR_FLAG,
} from "../control/rundir.ts";

/** The remembered definition paths (`defs.json`). */
export interface RememberedPaths {
  /** Absolute paths of vm.conf files, TOML files and directories of `*.toml`. */
  paths: string[];
}

/** The remembered paths; none when nothing was loaded. */
export function rememberedPaths(rundir: string): RememberedPaths {
  try {
    const d = JSON.parse(Deno.readTextFileSync(defsPath(rundir))) as RememberedPaths;
    return { paths: Array.isArray(d.paths) ? d.paths.filter((p) => typeof p === "string") : [] };
  } catch {
    return { paths: [] };
  }
}

/**
 * Remembers `paths` and numbers the VMs they define: a name keeps its id
 * across reloads, a new one gets the lowest id neither reserved nor running.
 */
function remember(rundir: string, paths: string[], set: DefinitionSet): void {
  ensureRunDir(rundir);
  const old = reservedIds(rundir);
  const running = new Map(listStates(rundir).map((s) => [s.name, s.id]));
  const ids: Record<string, number> = {};
  const taken = new Set<number>();
  const names = [...new Set(set.definitions.map((d) => d.name))];
  for (const n of names) {
    const id = running.get(n) ?? old.get(n);
    if (id !== undefined && !taken.has(id)) {
      ids[n] = id;
      taken.add(id);
    }
  }
  for (const s of listStates(rundir)) taken.add(s.id);
  let next = 1;
  for (const n of names) {
    if (ids[n] !== undefined) continue;
    while (taken.has(next)) next++;
    ids[n] = next;
    taken.add(next);
  }
  Deno.writeTextFileSync(defsPath(rundir), JSON.stringify({ paths, ids }, null, 2) + "\n");
}

/** Forgets every loaded path (`reset vms`). */
export function forgetDefinitions(rundir: string): void {
  try {
    Deno.removeSync(defsPath(rundir));
  } catch {
    // nothing loaded
  }
}

/** The definitions of every remembered path (paths gone since are skipped quietly). */
export function loadDefinitions(rundir: string): DefinitionSet {
  const paths = rememberedPaths(rundir).paths.filter((p) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false;
    }
  });
  return readDefinitions(paths);
}

/** Prints a set's errors and warnings and a summary on stderr; 1 when anything is wrong. */
export function reportDefinitions(set: DefinitionSet, what: string): number {
  const { errors, warnings } = definitionMessages(set);
  for (const e of errors) console.error(e);
  for (const w of warnings) console.error(`vmmctl: warning: ${w}`);
  const bad = set.definitions.filter((d) => d.errors.length > 0).length;
  console.error(
    `vmmctl: ${what}: ${set.definitions.length} VM definitions` +
      (bad ? `, ${bad} with errors` : ""),
  );
  return errors.length ? EXIT_FAILURE : 0;
}

function mustExist(path: string): void {
  try {
    definitionFiles(path);
  } catch (e) {
    throw new ManagedError(`cannot read "${path}": ${errorText(e)}`);
  }
}

export const loadCommand: Command = {
  name: "load",
  summary: "load VM definitions from a vm.conf file, a TOML file or a directory of *.toml",
  args: "FILE|DIR",
  description: [
    "The path is remembered: `start NAME` finds the VM, `status` lists it, `reload`",
    "re-reads it. A file not ending in .toml is read as vm.conf(5).",
  ].join("\n"),
  flags: { rundir: RUNDIR_FLAG },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("load needs one FILE or DIR");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(() => {
      const path = resolve(positionals[0]);
      mustExist(path);
      const set = readDefinitions([path]);
      const paths = rememberedPaths(rundir).paths;
      if (!paths.includes(path)) paths.push(path);
      remember(rundir, paths, readDefinitions(paths));
      return Promise.resolve(reportDefinitions(set, `loaded ${path}`));
    });
  },
};

export const reloadCommand: Command = {
  name: "reload",
  summary: `re-read the loaded VM definitions (${DEFAULT_VMCONF_PATH} when nothing was loaded)`,
  args: "",
  flags: { rundir: RUNDIR_FLAG },
  run(positionals, flags) {
    if (positionals.length !== 0) throw new UsageError("reload takes no arguments");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return reportErrors(() => {
      let paths = rememberedPaths(rundir).paths;
      if (paths.length === 0) {
        mustExist(DEFAULT_VMCONF_PATH);
        paths = [DEFAULT_VMCONF_PATH];
      }
      const set = readDefinitions(paths);
      remember(rundir, paths, set);
      return Promise.resolve(reportDefinitions(set, `reloaded ${paths.join(", ")}`));
    });
  },
};
