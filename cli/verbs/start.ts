/**
 * `vmmctl start NAME [-cL] [-B device] [-b path] [-d disk] [-i count]
 * [-m size] [-n switch] [-r path] [-t name]`: vmctl's start. NAME is a loaded
 * definition (vm.conf or TOML), a config FILE, or, with flags, a new VM made
 * from the flags alone (vmctl's ad-hoc VMs); `-t` makes NAME an instance of a
 * defined VM, within what its `allow instance` permits. The flags are checked
 * with vmctl's rules and messages.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { type Definition, readDefinitions } from "../../config/definitions.ts";
import { normalizedToml } from "../../config/normalize.ts";
import { formatConfigError, parseConfig } from "../../config/parse.ts";
import type { DiskFormat, VmConfig } from "../../config/schema.ts";
import { MAX_DISKS, MAX_INTERFACES } from "../../config/schema.ts";
import { scaledMegabytes, SizeError } from "../../config/size.ts";
import { nameForId } from "../../config/users.ts";
import type { InstancePermissions } from "../../config/vmconf/parser.ts";
import { VMCONF_DEFAULT_MEMORY_BYTES } from "../../config/vmconf/convert.ts";
import { type Command, type FlagValues, UsageError } from "../command.ts";
import { attachConsole } from "../console/attach.ts";
import { resolveRunDir, RUNDIR_FLAG } from "../control/rundir.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import { startManaged } from "../vm_process/spawn.ts";
import { loadDefinitions } from "./load.ts";

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
 * The definition of VM `target`: a FILE (TOML, or a vm.conf defining one
 * VM), a NAME among the definitions `load` remembered, or NAME.toml in the
 * current directory; undefined when there is none.
 */
export function findDefinition(rundir: string, target: string): Definition | undefined {
  if (looksLikeFile(target)) {
    const set = readDefinitions([target]);
    if (set.errors.length) throw new ManagedError(set.errors.join("\n"));
    if (set.definitions.length !== 1) {
      throw new ManagedError(
        `${target} defines ${set.definitions.length} VMs: \`vmmctl load ${target}\`, ` +
          "then start one by name",
      );
    }
    return set.definitions[0];
  }
  const defined = loadDefinitions(rundir).definitions.find((d) => d.name === target);
  if (defined) return defined;
  const local = join(Deno.cwd(), `${target}.toml`);
  try {
    Deno.statSync(local);
  } catch {
    return undefined;
  }
  return readDefinitions([local]).definitions[0];
}

/** What vmctl's start flags ask for, checked and with paths resolved. */
export interface StartRequest {
  name: string;
  console: boolean;
  kernel?: string;
  bootDevice?: "disk" | "cdrom" | "net";
  cdrom?: string;
  disks: { path: string; format: DiskFormat }[];
  /** -i: at least this many interfaces. */
  interfaces?: number;
  /** -n SWITCH (a name) and -L (`"."`, a local interface), in order. */
  networks: string[];
  memoryBytes?: number;
  template?: string;
  /** vmctl's warnings ("size rounded to 512 megabytes"). */
  warnings: string[];
}

/** strerror(3)'s words for what realpath(3) fails with. */
function strerror(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "No such file or directory";
  if (e instanceof Deno.errors.PermissionDenied) return "Permission denied";
  if (e instanceof Deno.errors.NotADirectory) return "Not a directory";
  return e instanceof Error ? e.message : String(e);
}

function realpath(path: string, what: string): string {
  try {
    return Deno.realPathSync(path);
  } catch (e) {
    throw new ManagedError(`${what}: ${strerror(e)}`);
  }
}

/** Values of a flag that may be given once; vmctl's message when it came twice. */
function once(flags: FlagValues, name: string, what: string): string | undefined {
  const v = flags[name];
  if (!Array.isArray(v)) return typeof v === "string" ? v : undefined;
  if (v.length > 1) throw new ManagedError(`${what} specified multiple times`);
  return v[0];
}

function list(flags: FlagValues, name: string): string[] {
  const v = flags[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

/** Checks vmctl's start flags the way vmctl does, in its order, with its messages. */
export function parseStartRequest(name: string, flags: FlagValues): StartRequest {
  const req: StartRequest = {
    name,
    console: flags.console === true,
    disks: [],
    networks: [],
    warnings: [],
  };
  const kernel = once(flags, "kernel", "boot image");
  if (kernel !== undefined) req.kernel = realpath(kernel, "invalid boot image path");
  const device = once(flags, "boot-device", "boot device");
  if (device !== undefined) {
    if (device !== "disk" && device !== "cdrom" && device !== "net") {
      throw new ManagedError(`unknown boot device ${device}`);
    }
    req.bootDevice = device;
  }
  const iso = once(flags, "cdrom", "iso image");
  if (iso !== undefined) req.cdrom = realpath(iso, "invalid iso image path");
  const memory = once(flags, "memory", "memory");
  if (memory !== undefined) {
    try {
      const { megabytes, rounded } = scaledMegabytes(memory);
      if (rounded) req.warnings.push(`size rounded to ${megabytes} megabytes`);
      req.memoryBytes = megabytes * 1024 * 1024;
    } catch (e) {
      if (!(e instanceof SizeError)) throw e;
      const why = e.message.startsWith("size must")
        ? e.message
        : `invalid size: ${memory}: ${e.message}`;
      throw new ManagedError(`${why}\ninvalid memory size: ${memory}`);
    }
  }
  for (const d of list(flags, "disk")) {
    const m = /^(raw|qcow2):(.*)$/s.exec(d);
    const path = realpath(m ? m[2] : d, "invalid disk path");
    req.disks.push({ path, format: m ? m[1] as DiskFormat : "auto" });
  }
  const count = once(flags, "interfaces", "interfaces");
  if (count !== undefined) {
    if (!/^\d+$/.test(count) || Number(count) > 0x7fffffff) {
      const why = /^-?\d+$/.test(count)
        ? (count.startsWith("-") ? "too small" : "too large")
        : "invalid";
      throw new ManagedError(`invalid count "${count}": ${why}\ninvalid interface count: ${count}`);
    }
    req.interfaces = Number(count);
  }
  for (const n of list(flags, "switch")) req.networks.push(n);
  for (let i = 0; i < Number(flags.local === true ? 1 : 0); i++) req.networks.push(".");
  const template = once(flags, "template", "template");
  if (template !== undefined) {
    if (template.length >= 64) {
      throw new ManagedError(`instance vm name too long\ninvalid name: ${template}`);
    }
    req.template = template;
  }
  return req;
}

/** Whether any flag that makes or changes a VM was given (vmctl's VMOP_CREATE_* flags). */
function createsSomething(r: StartRequest): boolean {
  return r.kernel !== undefined || r.cdrom !== undefined || r.disks.length > 0 ||
    r.interfaces !== undefined || r.networks.length > 0 || r.memoryBytes !== undefined;
}

/** The config NAME starts with: a definition with the flags on top, an instance, or flags alone. */
export function startConfig(rundir: string, req: StartRequest): VmConfig {
  if (req.bootDevice === "net") {
    throw new ManagedError("-B net: network boot is not supported (no PXE ROM); use disk or cdrom");
  }
  const local = req.networks.includes(".");
  if (local) {
    throw new ManagedError(
      "-L: local interfaces (vmd's DHCP-served point-to-point networks) are not supported",
    );
  }
  if (req.networks.length) {
    throw new ManagedError(
      `-n ${req.networks[0]}: virtual switches are not supported yet; use -i with taps`,
    );
  }
  if (req.template !== undefined) return instanceConfig(rundir, req);
  const defined = findDefinition(rundir, req.name);
  if (defined) return withFlags(usable(defined), req);
  if (!createsSomething(req)) {
    throw new ManagedError(
      `no VM named "${req.name}" (not in the loaded definitions, no ${req.name}.toml here); ` +
        "give -b KERNEL, -d DISK or -r ISO (and -m, -i) to start one from flags",
    );
  }
  if (req.kernel === undefined && req.disks.length === 0 && req.cdrom === undefined) {
    throw new ManagedError("no kernel or disk/cdrom specified");
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(req.name)) throw new ManagedError("invalid VM name");
  if (req.name.length >= 64) throw new ManagedError("vm name too long");
  const config: VmConfig = {
    vm: {
      name: req.name,
      memoryBytes: VMCONF_DEFAULT_MEMORY_BYTES,
      vcpus: 1,
      accel: "auto",
      irqchip: "user",
    },
    // No kernel: the BIOS boots the disk (or the CD-ROM with -B cdrom).
    boot: req.kernel === undefined ? { cmdline: "" } : { kernel: req.kernel, cmdline: "" },
    disks: [],
    interfaces: [],
    console: { serial: "stdio" },
    debug: {},
  };
  return withFlags(config, req, { adHoc: true });
}

/** The permission of `allow instance` that a flag needs. */
function neededPermissions(req: StartRequest): (keyof Omit<InstancePermissions, "owners">)[] {
  const out: (keyof Omit<InstancePermissions, "owners">)[] = [];
  if (req.kernel !== undefined) out.push("boot");
  if (req.memoryBytes !== undefined) out.push("memory");
  if (req.disks.length) out.push("disk");
  if (req.interfaces !== undefined || req.networks.length) out.push("interface");
  if (req.cdrom !== undefined) out.push("cdrom");
  return out;
}

/**
 * `-t TEMPLATE`: NAME as an instance of a defined VM. Root may always; others
 * need the template's `allow instance` to name them (user or group) and to
 * permit every option they change. Like vmd, disks are not inherited (an
 * instance must not share its parent's disks) and the creator owns it.
 */
function instanceConfig(rundir: string, req: StartRequest): VmConfig {
  const set = loadDefinitions(rundir);
  const template = set.definitions.find((d) => d.name === req.template);
  if (!template) {
    throw new ManagedError(
      `start vm command failed: no vm "${req.template}" to make an instance of`,
    );
  }
  if (set.definitions.some((d) => d.name === req.name)) {
    throw new ManagedError(`start vm command failed: vm "${req.name}" is already defined`);
  }
  const parent = usable(template);
  const uid = Deno.uid() ?? 0;
  if (uid !== 0) {
    const allow = template.allowInstance;
    const user = nameForId("/etc/passwd", uid);
    const groups = userGroups(user);
    const permitted = allow?.owners.some((o) =>
      (o.user !== undefined && o.user === user) ||
      (o.user === undefined && o.group !== undefined && groups.has(o.group))
    );
    if (!allow || !permitted) {
      throw new ManagedError(
        `start vm command failed: Operation not permitted (vm "${req.template}" does not ` +
          `allow instances by ${user})`,
      );
    }
    const refused = neededPermissions(req).filter((p) => !allow[p]);
    if (refused.length) {
      throw new ManagedError(
        `start vm command failed: Operation not permitted (instances of "${req.template}" ` +
          `may not change ${refused.join(", ")})`,
      );
    }
  }
  const config: VmConfig = structuredClone(parent);
  config.vm.name = req.name;
  config.disks = [];
  // Taps and addresses are exclusive: an instance gets its own.
  config.interfaces = config.interfaces.map(() => ({ tap: "auto" }));
  delete config.vm.owner;
  if (uid !== 0) config.vm.owner = { user: nameForId("/etc/passwd", uid) };
  return withFlags(config, req, { adHoc: true });
}

/** The groups `user` is a member of (from /etc/group; primary groups too). */
function userGroups(user: string): Set<string> {
  const out = new Set<string>();
  let primary: string | undefined;
  try {
    for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
      const f = line.split(":");
      if (f[0] === user) primary = f[3];
    }
    for (const line of Deno.readTextFileSync("/etc/group").split("\n")) {
      const f = line.split(":");
      if (f.length < 4) continue;
      if (f[2] === primary || f[3].split(",").includes(user)) out.add(f[0]);
    }
  } catch {
    // no such files: no groups
  }
  return out;
}

/** `config` with the flags on top, validated like `vmmctl check` (files must exist). */
function withFlags(config: VmConfig, req: StartRequest, opts: { adHoc?: boolean } = {}): VmConfig {
  const c: VmConfig = structuredClone(config);
  if (req.kernel !== undefined) c.boot.kernel = req.kernel;
  if (req.memoryBytes !== undefined) c.vm.memoryBytes = req.memoryBytes;
  if (req.cdrom !== undefined) c.cdrom = { path: req.cdrom };
  if (req.bootDevice !== undefined) {
    if (req.bootDevice === "cdrom" && c.cdrom === undefined) {
      throw new ManagedError("-B cdrom: no CD-ROM image to boot: give one with -r");
    }
    c.boot.device = req.bootDevice as "disk" | "cdrom";
  }
  if (req.disks.length) {
    if (req.disks.length > MAX_DISKS) throw new ManagedError("too many disks");
    c.disks = req.disks.map((d) => ({ path: d.path, format: d.format, readonly: false }));
  }
  if (req.interfaces !== undefined) {
    if (req.interfaces > MAX_INTERFACES) throw new ManagedError("too many network interfaces");
    c.interfaces = c.interfaces.slice(0, req.interfaces);
    while (c.interfaces.length < req.interfaces) c.interfaces.push({ tap: "auto" });
  }
  if (opts.adHoc || createsSomething(req)) {
    if (c.disks.length === 0) req.warnings.push("starting without disks");
    if (c.interfaces.length === 0) req.warnings.push("starting without network interfaces");
  }
  if (JSON.stringify(c) === JSON.stringify(config) && !opts.adHoc) return config;
  const base = c.source ? dirname(c.source) : Deno.cwd();
  const { config: checked, errors } = parseConfig(normalizedToml(c), { baseDir: base });
  if (!checked) throw new ManagedError(errors.map((e) => formatConfigError(e)).join("\n"));
  checked.source = config.source;
  return checked;
}

export const startCommand: Command = {
  name: "start",
  summary: "start a VM in the background: a defined one, or one made from flags (vmctl's start)",
  args: "NAME",
  description: [
    "NAME is a loaded definition (vm.conf or TOML), a config FILE, or NAME.toml here;",
    "with -b, -d or -r (and -m, -i) a VM that is defined nowhere starts from the flags alone",
    "(without -b it boots through the BIOS: from its disk, or from -r's ISO with -B cdrom),",
    "with 512M of memory unless -m says otherwise. -t TEMPLATE makes NAME an instance",
    "of a defined VM (vm.conf's allow instance). Sizes are scan_scaled(3)'s: 512M, 1.5G.",
  ].join("\n"),
  flags: {
    console: { type: "boolean", short: "c", description: "attach the console after starting" },
    local: {
      type: "boolean",
      short: "L",
      description: "add a local interface (not supported: no DHCP-served local networks)",
    },
    "boot-device": {
      type: "string",
      short: "B",
      value: "DEVICE",
      multiple: true,
      description: "what the BIOS boots: disk or cdrom (net is not supported)",
    },
    kernel: {
      type: "string",
      short: "b",
      value: "PATH",
      multiple: true,
      description: "boot this kernel",
    },
    disk: {
      type: "string",
      short: "d",
      value: "[raw:|qcow2:]PATH",
      multiple: true,
      description: "disk image (repeat for more; replaces the definition's disks)",
    },
    interfaces: {
      type: "string",
      short: "i",
      value: "COUNT",
      multiple: true,
      description: "number of network interfaces (taps picked automatically)",
    },
    memory: {
      type: "string",
      short: "m",
      value: "SIZE",
      multiple: true,
      description: "guest memory, e.g. 512M (rounded down to megabytes)",
    },
    switch: {
      type: "string",
      short: "n",
      value: "SWITCH",
      multiple: true,
      description: "add an interface on a virtual switch (not supported yet)",
    },
    cdrom: {
      type: "string",
      short: "r",
      value: "PATH",
      multiple: true,
      description: "ISO image as a CD-ROM (boot it with -B cdrom)",
    },
    template: {
      type: "string",
      short: "t",
      value: "NAME",
      multiple: true,
      description: "start NAME as an instance of this defined VM",
    },
    rundir: RUNDIR_FLAG,
  },
  async run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("start needs one NAME");
    const rundir = resolveRunDir(flags.rundir as string | undefined);
    return await reportErrors(async () => {
      const req = parseStartRequest(positionals[0], flags);
      const config = startConfig(rundir, req);
      for (const w of req.warnings) console.error(`vmmctl: ${w}`);
      const state = await startManaged(config, { rundir });
      return req.console ? await attachConsole(rundir, state) : 0;
    });
  },
};
