/**
 * VM definitions from either config format, the way vmd holds its vm.conf:
 * a vm.conf(5) file (macros, includes, switches, many VMs), one TOML file
 * (one VM), or a directory of `*.toml`. A definition with errors is kept with
 * its errors, so `load`, `check` and `status` can show it.
 *
 * @example
 * ```ts
 * import { readDefinitions } from "./definitions.ts";
 * const set = readDefinitions(["/etc/vm.conf"]);
 * for (const d of set.definitions) console.log(d.name, d.errors.length ? "invalid" : "ok");
 * ```
 * @module
 */

import { basename, join, resolve } from "node:path";
import { formatConfigError, loadConfigFile } from "./parse.ts";
import type { VmConfig } from "./schema.ts";
import { readVmConf } from "./vmconf/convert.ts";
import type { InstancePermissions, SwitchDef, VmConfGlobals } from "./vmconf/parser.ts";

/** vmd's configuration file. */
export const DEFAULT_VMCONF_PATH = "/etc/vm.conf";

/** The config formats vmmctl reads. */
export type DefinitionFormat = "toml" | "vm.conf";

/** One VM definition; `config` is set exactly when `errors` is empty. */
export interface Definition {
  name: string;
  format: DefinitionFormat;
  /** Where it is defined: `FILE` (TOML) or `FILE:LINE` (vm.conf). */
  where: string;
  /** vm.conf's `enable`/`disable` (whether a daemon starts it); TOML VMs are started on demand. */
  enabled: boolean;
  config?: VmConfig;
  errors: string[];
  warnings: string[];
  /** vm.conf `vm PARENT instance NAME`: the parent. */
  instanceOf?: string;
  /** vm.conf `allow instance`: what instances of this VM may change. */
  allowInstance?: InstancePermissions;
}

/** Every definition under some paths, with vm.conf's switches and global settings. */
export interface DefinitionSet {
  definitions: Definition[];
  switches: SwitchDef[];
  globals: VmConfGlobals;
  /** Problems not tied to one VM: unreadable paths, syntax outside vm blocks, duplicate names. */
  errors: string[];
  warnings: string[];
}

/** Options for {@link readDefinitions}. */
export interface ReadOptions {
  /** Check files and owners on this host (default true): what `load` and `check` want. */
  checkHost?: boolean;
}

/** Whether `path` is read as vm.conf(5): any file whose name does not end in `.toml`. */
export function isVmConfPath(path: string): boolean {
  return !path.endsWith(".toml");
}

/** The files a path stands for: a directory's `*.toml` (sorted), or the path itself. */
export function definitionFiles(path: string): string[] {
  const st = Deno.statSync(path);
  if (!st.isDirectory) return [path];
  return [...Deno.readDirSync(path)]
    .filter((e) => e.isFile && e.name.endsWith(".toml"))
    .map((e) => join(path, e.name))
    .sort();
}

/** Reads every definition under `paths`, in order; a VM name defined twice is an error. */
export function readDefinitions(
  paths: readonly string[],
  options: ReadOptions = {},
): DefinitionSet {
  const check = options.checkHost ?? true;
  const set: DefinitionSet = {
    definitions: [],
    switches: [],
    globals: {},
    errors: [],
    warnings: [],
  };
  for (const p of paths.map((x) => resolve(x))) {
    let files: string[];
    try {
      files = definitionFiles(p);
    } catch (e) {
      set.errors.push(`${p}: ${e instanceof Deno.errors.NotFound ? "no such file" : String(e)}`);
      continue;
    }
    for (const f of files) {
      if (isVmConfPath(f)) readVmConfFile(f, check, set);
      else set.definitions.push(tomlDefinition(f, check));
    }
  }
  const seen = new Map<string, Definition>();
  for (const d of set.definitions) {
    const first = seen.get(d.name);
    if (first === undefined) {
      seen.set(d.name, d);
      continue;
    }
    d.errors.push(`vm "${d.name}" is already defined at ${first.where}`);
    d.config = undefined;
  }
  return set;
}

function tomlDefinition(file: string, checkHost: boolean): Definition {
  const { config, errors } = loadConfigFile(file, { checkUsers: checkHost });
  return {
    name: config?.vm.name ?? basename(file, ".toml"),
    format: "toml",
    where: file,
    enabled: false,
    config,
    errors: errors.map((e) => `${file}: ${formatConfigError(e)}`),
    warnings: [],
  };
}

function readVmConfFile(file: string, checkHost: boolean, set: DefinitionSet): void {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(Deno.readFileSync(file));
  } catch (e) {
    set.errors.push(`${file}: cannot read: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  const read = readVmConf(text, { path: file, checkFiles: checkHost, checkUsers: checkHost });
  set.errors.push(...read.errors);
  set.warnings.push(...read.warnings);
  set.switches.push(...read.switches);
  Object.assign(set.globals, read.globals);
  for (const vm of read.vms) {
    set.definitions.push({
      name: vm.name,
      format: "vm.conf",
      where: `${vm.file}:${vm.line}`,
      enabled: vm.enabled,
      config: vm.config,
      errors: vm.errors,
      warnings: vm.warnings,
      instanceOf: vm.instanceOf,
      allowInstance: vm.allowInstance,
    });
  }
}

/** All of a set's messages, errors first, as `vmmctl` prints them for `load` and `check`. */
export function definitionMessages(set: DefinitionSet): { errors: string[]; warnings: string[] } {
  return {
    errors: [...set.errors, ...set.definitions.flatMap((d) => d.errors)],
    warnings: [...set.warnings, ...set.definitions.flatMap((d) => d.warnings)],
  };
}
