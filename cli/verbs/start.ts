/**
 * `vmmctl start [-c] [-b kernel] [-d disk]... [-m memory] [-i count] [-n switch]
 * [-B device] NAME|FILE`: run a VM in the background (vmctl's start), and the
 * config lookup and flag overrides it shares with `up -d`.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { type Definition, readDefinitions } from "../../config/definitions.ts";
import { formatConfigError, parseConfig } from "../../config/parse.ts";
import { normalizedToml } from "../../config/normalize.ts";
import type { VmConfig } from "../../config/schema.ts";
import { parseSize, SizeError } from "../../config/size.ts";
import { type Command, type FlagValues, UsageError } from "../command.ts";
import { attachConsole } from "../console/attach.ts";
import { loadDefinitions } from "./load.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import { startManaged } from "../vm_process/spawn.ts";
import { resolveRunDir, RUNDIR_FLAG } from "../control/rundir.ts";

/** Whether `target` names a file rather than a VM: it has a "/" or ".toml", or exists. */
export function looksLikeFile(target: string): boolean {
  if (target.includes("/") || target.endsWith(".toml")) return true;
  try {
    return Deno.statSync(target).isFile;
  } catch {
    return false;
  }
}

/** A definition's config, or its errors as the thrown message. */
function usable(d: Definition): VmConfig {
  if (d.config) return d.config;
  throw new ManagedError(d.errors.join("\n"));
}

/**
 * The config of VM `target`: a FILE (TOML, or a vm.conf defining one VM), or
 * a NAME looked up in the definitions `load` remembered, then as NAME.toml in
 * the current directory.
 */
export function findConfig(rundir: string, target: string): VmConfig {
  if (looksLikeFile(target)) {
    const set = readDefinitions([target]);
    if (set.errors.length) throw new ManagedError(set.errors.join("\n"));
    if (set.definitions.length !== 1) {
      throw new ManagedError(
        `${target} defines ${set.definitions.length} VMs: \`vmmctl load ${target}\`, ` +
          "then start one by name",
      );
    }
    return usable(set.definitions[0]);
  }
  const defined = loadDefinitions(rundir).definitions.find((d) => d.name === target);
  if (defined) return usable(defined);
  const local = join(Deno.cwd(), `${target}.toml`);
  try {
    Deno.statSync(local);
  } catch {
    throw new ManagedError(
      `no VM named "${target}" (no ${target}.toml in the loaded definitions or the current directory)`,
    );
  }
  return usable(readDefinitions([local]).definitions[0]);
}

/**
 * Applies vmctl's start flags to `config` and validates the result like
 * `vmmctl check` (files must exist). -n and -B have no equivalent yet.
 */
export function applyStartFlags(config: VmConfig, flags: FlagValues): VmConfig {
  if (flags.switch !== undefined) {
    throw new ManagedError(
      "not supported yet: virtual switches (-n); give the VM an [[interface]] with a tap device",
    );
  }
  if (flags["boot-device"] !== undefined) {
    throw new ManagedError(
      "not supported yet: choosing a boot device (-B); vmmctl boots the kernel of -b or boot.kernel",
    );
  }
  const c: VmConfig = structuredClone(config);
  if (typeof flags.kernel === "string") c.boot.kernel = resolve(flags.kernel);
  if (Array.isArray(flags.disk)) {
    c.disks = flags.disk.map((d) => ({ path: resolve(d), format: "auto", readonly: false }));
  }
  if (typeof flags.memory === "string") {
    try {
      c.vm.memoryBytes = parseSize(/^\d+$/.test(flags.memory) ? `${flags.memory}M` : flags.memory);
    } catch (e) {
      if (e instanceof SizeError) throw new UsageError(`-m: ${e.message}`);
      throw e;
    }
  }
  if (typeof flags.interfaces === "string") {
    const n = Number(flags.interfaces);
    if (!/^\d+$/.test(flags.interfaces)) {
      throw new UsageError(`-i wants a count of interfaces, got "${flags.interfaces}"`);
    }
    c.interfaces = Array.from({ length: n }, () => ({ tap: "auto" }));
  }
  if (JSON.stringify(c) === JSON.stringify(config)) return config;
  const base = c.source ? dirname(c.source) : Deno.cwd();
  const { config: checked, errors } = parseConfig(normalizedToml(c), { baseDir: base });
  if (!checked) {
    throw new ManagedError(errors.map((e) => formatConfigError(e)).join("\n"));
  }
  checked.source = config.source;
  return checked;
}

export const startCommand: Command = {
  name: "start",
  summary: "start a VM in the background (console on a pty, controlled through a socket)",
  args: "NAME|FILE",
  description: [
    "NAME is looked up as NAME.toml in the definitions `load` remembered, then in the",
    "current directory. Flags override the config: -m 1G, -b bzImage, -d disk.img ...",
    'vmmctl has no virtual switches or boot devices yet: -n and -B say "not supported yet".',
  ].join("\n"),
  flags: {
    console: { type: "boolean", short: "c", description: "attach the console after starting" },
    kernel: { type: "string", short: "b", value: "PATH", description: "boot this kernel" },
    disk: {
      type: "string",
      short: "d",
      value: "PATH",
      multiple: true,
      description: "disk image (repeat for more; replaces the config's disks)",
    },
    memory: {
      type: "string",
      short: "m",
      value: "SIZE",
      description: "guest memory (M if no unit)",
    },
    interfaces: {
      type: "string",
      short: "i",
      value: "COUNT",
      description: "number of network interfaces (taps picked automatically)",
    },
    switch: {
      type: "string",
      short: "n",
      value: "SWITCH",
      description: "attach to a virtual switch (not supported yet)",
    },
    "boot-device": {
      type: "string",
      short: "B",
      value: "DEVICE",
      description: "boot from disk|cdrom|net (not supported yet)",
    },
    rundir: RUNDIR_FLAG,
  },
  async run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("start needs one NAME or FILE");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return await reportErrors(async () => {
      const config = applyStartFlags(findConfig(rundir, positionals[0]), flags);
      const state = await startManaged(config, { rundir });
      return flags.console ? await attachConsole(rundir, state) : 0;
    });
  },
};
