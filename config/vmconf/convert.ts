/**
 * vm.conf(5) -> vmmctl {@link VmConfig}: parses the text (see `parser.ts`)
 * and turns each `vm` block into a config, saying as a warning everything it
 * cannot carry over.
 *
 * @example
 * ```ts
 * import { importVmConf } from "./convert.ts";
 * const result = importVmConf('vm "web" {\n memory 1G\n disk "/var/vm/web.img"\n}\n', {
 *   path: "/etc/vm.conf",
 * });
 * result.vms[0].toml; // [vm] name = "web", memory = "1G", ...
 * ```
 * @module
 */

import { basename, dirname } from "node:path";
import { parseConfig } from "../parse.ts";
import { normalizedToml } from "../normalize.ts";
import type { VmConfig } from "../schema.ts";
import { Lexer } from "./lexer.ts";
import {
  type InstancePermissions,
  type SwitchDef,
  type VmConfGlobals,
  VmConfParser,
  type VmDef,
} from "./parser.ts";

/** vm.conf's default guest memory. */
export const VMCONF_DEFAULT_MEMORY_BYTES = 512 * 1024 * 1024;
/** What vmd boots when a VM has no `boot` line: its BIOS image. */
export const VMD_BIOS_PATH = "/etc/firmware/vmm-bios";

/** One converted `vm` block. */
export interface ImportedVm {
  name: string;
  /** Where the block starts. */
  file: string;
  line: number;
  config: VmConfig;
  /** The TOML file's text: a comment header, then the normalized config. */
  toml: string;
}

/** The result of {@link importVmConf}: converted VMs, warnings, and syntax/semantic errors. */
export interface VmConfImport {
  vms: ImportedVm[];
  /** `FILE:LINE: what could not be expressed`. */
  warnings: string[];
  /** `FILE:LINE: what is wrong`; VMs with errors are not in `vms`. */
  errors: string[];
}

/** Options for {@link importVmConf} and {@link readVmConf}. */
export interface ImportOptions {
  /** The file's path (for messages and relative paths). */
  path: string;
  /** Reads an included file (default: Deno.readTextFileSync). */
  readFile?: (path: string) => string;
  /** Check the files a VM uses (kernel, disks) on this host. Default false. */
  checkFiles?: boolean;
  /** Check that owners exist on this host. Default false. */
  checkUsers?: boolean;
}

/** One `vm` block read natively: its config when valid, else its errors; never dropped. */
export interface VmConfDefinition {
  name: string;
  file: string;
  line: number;
  /** `enable` (the default) or `disable`: whether vmd would start it at boot. */
  enabled: boolean;
  /** Set exactly when `errors` is empty. */
  config?: VmConfig;
  errors: string[];
  warnings: string[];
  /** `vm PARENT instance NAME`: the parent. */
  instanceOf?: string;
  /** `allow instance`: what instances of this VM may change. */
  allowInstance?: InstancePermissions;
}

/** A whole vm.conf read natively: every VM, the switches and the global settings. */
export interface VmConfRead {
  vms: VmConfDefinition[];
  switches: SwitchDef[];
  globals: VmConfGlobals;
  /** Errors outside any vm block (syntax, includes, switches). */
  errors: string[];
  /** Warnings outside any vm block. */
  warnings: string[];
}

/** The conversion of every block, with the flat lists of import and the per-VM records. */
interface Converted {
  parser: VmConfParser;
  flatErrors: string[];
  flatWarnings: string[];
  vms: (VmConfDefinition & { toml?: string })[];
}

function convertAll(text: string, options: ImportOptions, mode: "import" | "native"): Converted {
  const read = options.readFile ?? ((p: string) => Deno.readTextFileSync(p));
  const lexer = new Lexer(text, options.path, read);
  const parser = new VmConfParser(lexer);
  parser.parse();
  for (const [name] of lexer.macros) {
    if (!lexer.usedMacros.has(name)) {
      parser.warnings.push(`${options.path}: macro "${name}" not used`);
    }
  }
  const flatErrors = parser.errors;
  const flatWarnings = parser.warnings;
  const records = new Map<VmDef, VmConfDefinition & { toml?: string }>();
  for (const vm of parser.vms) {
    records.set(vm, {
      name: vm.name,
      file: vm.file,
      line: vm.line,
      enabled: vm.enabled,
      errors: [...vm.errors],
      warnings: [],
      instanceOf: vm.instanceOf,
      allowInstance: vm.allowInstance,
    });
  }
  const fail = (vm: VmDef, message: string) => {
    flatErrors.push(message);
    records.get(vm)!.errors.push(message);
  };
  const byName = new Map<string, VmDef>();
  for (const vm of parser.vms) {
    if (parser.broken.has(vm)) continue;
    if (byName.has(vm.name)) {
      fail(vm, `${vm.file}:${vm.line}: vm "${vm.name}" defined more than once`);
      continue;
    }
    byName.set(vm.name, vm);
  }
  const switches = new Map(parser.switches.map((s) => [s.name, s]));
  for (const vm of byName.values()) {
    const record = records.get(vm)!;
    let def: VmDef = vm;
    if (vm.instanceOf) {
      const parent = byName.get(vm.instanceOf);
      if (!parent) {
        fail(
          vm,
          `${vm.file}:${vm.line}: vm "${vm.name}" is an instance of "${vm.instanceOf}", ` +
            "which is not defined",
        );
        continue;
      }
      if (mode === "import") {
        flatWarnings.push(
          `${vm.file}:${vm.line}: vm "${vm.name}": instance of "${parent.name}" converted as a ` +
            "copy of its settings with the instance's own on top (vmmctl has no instances)",
        );
      }
      def = mergeInstance(vm, parent);
    }
    const notes: string[] = [];
    const converted = convert(def, vm, switches, notes, mode);
    const check = parseConfig(normalizedToml(converted.config), {
      baseDir: dirname(vm.file),
      checkFiles: options.checkFiles ?? false,
      checkUsers: options.checkUsers ?? false,
    });
    if (!check.config) {
      for (const e of check.errors) {
        fail(vm, `${vm.file}:${vm.line}: vm "${vm.name}": ${e.path}: ${e.message}`);
      }
      continue;
    }
    flatWarnings.push(...notes);
    record.warnings.push(...notes);
    record.config = { ...check.config, source: vm.file };
    record.toml = converted.toml;
  }
  return { parser, flatErrors, flatWarnings, vms: [...records.values()] };
}

/** Parses vm.conf `text` and converts every `vm` block (`vmmctl import`). */
export function importVmConf(text: string, options: ImportOptions): VmConfImport {
  const c = convertAll(text, options, "import");
  return {
    vms: c.vms.filter((v) => v.config && v.toml).map((v) => ({
      name: v.name,
      file: v.file,
      line: v.line,
      config: v.config!,
      toml: v.toml!,
    })),
    warnings: c.flatWarnings,
    errors: c.flatErrors,
  };
}

/**
 * Reads vm.conf `text` as vmmctl's own config: every VM with its config or
 * its errors (a broken definition is kept, with what is wrong), the switches
 * and the global settings.
 */
export function readVmConf(text: string, options: ImportOptions): VmConfRead {
  const c = convertAll(text, options, "native");
  const inVm = new Set(c.vms.flatMap((v) => v.errors));
  const vmWarnings = new Set(c.vms.flatMap((v) => v.warnings));
  return {
    vms: c.vms.map(({ toml: _toml, ...v }) => v),
    switches: c.parser.switches,
    globals: c.parser.globals,
    errors: c.flatErrors.filter((e) => !inVm.has(e)),
    warnings: c.flatWarnings.filter((w) => !vmWarnings.has(w) && !c.parser.importOnly.has(w)),
  };
}

/** An instance: the parent's settings, overridden by the instance's own. */
function mergeInstance(vm: VmDef, parent: VmDef): VmDef {
  return {
    ...parent,
    ...Object.fromEntries(Object.entries(vm).filter(([, v]) => v !== undefined)),
    name: vm.name,
    disks: vm.disks.length ? vm.disks : parent.disks,
    interfaces: vm.interfaces.length ? vm.interfaces : parent.interfaces,
    allowInstance: undefined,
  } as VmDef;
}

function convert(
  def: VmDef,
  at: VmDef,
  switches: Map<string, SwitchDef>,
  warnings: string[],
  mode: "import" | "native",
): { config: VmConfig; toml: string } {
  const where = (line: number) => `${at.file}:${line}: vm "${at.name}"`;
  const notes: string[] = [];
  const note = (line: number, message: string) => {
    warnings.push(`${where(line)}: ${message}`);
    notes.push(message);
  };
  // No boot line: vmd boots its BIOS, and so does vmmctl (SeaBIOS, found at run time). A boot
  // line naming the BIOS image is a BIOS boot with that firmware.
  const bootPath = def.boot?.path;
  const isBios = bootPath !== undefined && basename(bootPath) === basename(VMD_BIOS_PATH);
  const boot: VmConfig["boot"] = { cmdline: "" };
  if (bootPath !== undefined && !isBios) boot.kernel = bootPath;
  if (isBios && bootPath !== VMD_BIOS_PATH) boot.bios = bootPath;
  if (def.bootDevice) {
    const device = def.bootDevice.device;
    if (boot.kernel !== undefined) {
      note(
        def.bootDevice.line,
        `boot device ${device}: not converted: the VM boots its kernel directly, not the BIOS`,
      );
    } else if (device === "cdrom" || device === "disk") {
      boot.device = device;
    } else {
      note(def.bootDevice.line, `boot device ${device}: not converted: vmmctl has no network boot`);
    }
  }
  if (def.allowInstance !== undefined && mode === "import") {
    note(def.allowInstance.line, "allow instance: not converted: vmmctl has no instances");
  }
  if (def.sev !== undefined) {
    note(def.sev, "sev: not converted: vmmctl runs no AMD SEV-encrypted guests");
  }
  if (def.enabled && mode === "import") {
    note(
      def.line,
      "enabled (vmd starts it at boot): vmmctl does not start VMs by itself; " +
        "use `vmmctl load DIR` and `vmmctl start NAME`",
    );
  }
  let owner: VmConfig["vm"]["owner"];
  if (def.owner) {
    if (def.owner.user === "" && def.owner.group !== undefined) {
      owner = { user: "root", group: def.owner.group };
      note(def.owner.line, `owner ":${def.owner.group}": converted as "root:${def.owner.group}"`);
    } else {
      owner = { user: def.owner.user, group: def.owner.group };
    }
  }
  const interfaces: VmConfig["interfaces"] = [];
  for (const i of def.interfaces) {
    const tap = i.tap && i.tap !== "tap" ? i.tap : "auto";
    interfaces.push(i.lladdr ? { tap, lladdr: i.lladdr } : { tap });
    const n = interfaces.length - 1;
    if (i.local) {
      note(i.line, `interface ${n}: "local": not converted: vmmctl has no local interfaces`);
    }
    if (i.switchName !== undefined) {
      const sw = switches.get(i.switchName);
      const bridge = sw?.iface ? ` (its interface ${sw.iface})` : "";
      note(
        i.line,
        `interface ${n}: switch "${i.switchName}": vmmctl has no switches; the VM gets tap ` +
          `"${tap}": add it to the bridge${bridge} yourself`,
      );
    }
    if (i.group !== undefined) {
      note(
        i.line,
        `interface ${n}: group "${i.group}": not converted (set it on the tap yourself)`,
      );
    }
    if (i.rdomain !== undefined) {
      note(
        i.line,
        `interface ${n}: rdomain ${i.rdomain}: not converted (set it on the tap yourself)`,
      );
    }
    if (i.locked) {
      note(i.line, `interface ${n}: locked lladdr: not converted: vmmctl does not filter frames`);
    }
    if (i.randomLladdr) {
      note(i.line, `interface ${n}: lladdr without an address: vmmctl picks one, as vmd does`);
    }
    if (i.down) note(i.line, `interface ${n}: down: not converted: the tap is brought up`);
  }
  // `interfaces N` asks for at least N interfaces.
  while (interfaces.length < (def.nifs ?? 0)) interfaces.push({ tap: "auto" });
  const config: VmConfig = {
    vm: {
      name: def.name,
      memoryBytes: def.memoryBytes ?? VMCONF_DEFAULT_MEMORY_BYTES,
      vcpus: 1,
      accel: "auto",
      irqchip: "user",
      ...(owner ? { owner } : {}),
    },
    boot,
    disks: def.disks.map((d) => ({ path: d.path, format: d.format ?? "auto", readonly: false })),
    interfaces,
    console: { serial: "stdio" },
    debug: {},
    ...(def.cdrom ? { cdrom: { path: def.cdrom.path } } : {}),
  };
  const header = [
    `# Imported from ${at.file}:${at.line} (vm "${at.name}") by vmmctl import.`,
    ...(def.enabled ? [] : ["# Disabled in vm.conf."]),
    ...notes.map((n) => `# Note: ${n}`),
    "",
  ];
  return { config, toml: header.join("\n") + normalizedToml(config) };
}
