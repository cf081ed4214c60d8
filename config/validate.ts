/**
 * The checks of a parsed TOML VM config: walks the tree, builds the
 * normalized {@link VmConfig} and collects every error with its key path and
 * line, so one run reports all problems.
 *
 * @module
 */

import { TomlDate } from "smol-toml";
import { dirname, resolve } from "node:path";
import { formatPath, type PathSegment } from "./key_lines.ts";
import {
  ACCEL_NAMES,
  type AccelName,
  BOOT_DEVICES,
  BOOT_ON_FAIL,
  type BootDevice,
  type BootOnFail,
  DISK_FORMATS,
  type DiskConfig,
  type DiskFormat,
  type InterfaceConfig,
  IRQCHIP_NAMES,
  type IrqchipName,
  KEY_ALIASES,
  MAX_DEVICE_NAME_LENGTH,
  MAX_IO_PORT,
  MAX_MEMORY_BYTES,
  MAX_MEMORY_BYTES_OPENBSD,
  MAX_TAP_NAME_LENGTH,
  MAX_VCPUS,
  MAX_VM_NAME_LENGTH,
  MEMORY_ALIGN_BYTES,
  MIN_MEMORY_BYTES,
  MIN_VCPUS,
  SECTION_ALIASES,
  SECTION_NAMES,
  type SectionName,
  SECTIONS,
  SERIAL_VALUES,
  type VmConfig,
} from "./schema.ts";
import { formatSize, parseSize, SizeError } from "./size.ts";
import { serialFileProblem } from "../loaders/image_file.ts";
import { DEBUG_EXIT_BYTES, portClash, virtioFunctionCount } from "../core/ports.ts";
import { suggestName } from "./suggest.ts";
import { idForName } from "./users.ts";
import { type DisplaySettings, type ListenAddress, parseListenAddress } from "../display/listen.ts";

/** One problem found in a config. */
export interface ConfigError {
  /** Key path like `vm.memory` or `disk[1].path`; `(toml)` for syntax errors, `(file)` for I/O. */
  path: string;
  /** 1-based line in the config text, when known. */
  line?: number;
  /** What is wrong, starting in lower case: `must be between 1 and 64, got 65`. */
  message: string;
}

/** Describes a TOML value for type errors: `string "two"`, `integer 5`, `table`. */
function describeValue(value: unknown): string {
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (typeof value === "bigint") return `integer ${value}`;
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "float nan";
    if (!Number.isFinite(value)) return `float ${value > 0 ? "inf" : "-inf"}`;
    return `float ${Number.isInteger(value) ? value.toFixed(1) : value}`;
  }
  if (typeof value === "boolean") return `boolean ${value}`;
  if (value instanceof TomlDate) return `date-time ${value.toISOString()}`;
  if (Array.isArray(value)) return "array";
  return "table";
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

/** Message tail for a filesystem error: `does not exist`, `is not readable`, ... */
export function describeFsError(e: unknown, access: "read" | "write"): string {
  if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
    return "does not exist";
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    return access === "read" ? "is not readable" : "is not writable";
  }
  if (e instanceof Deno.errors.NotCapable) {
    return `cannot be checked: vmmctl was not granted --allow-${access} for it`;
  }
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  return `cannot be opened: ${e instanceof Error ? e.message : String(e)}`;
}

const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const DEVICE_NAME = /^[A-Za-z0-9_-]+$/;
const OWNER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;
const TAP_NAME = new RegExp(`^[A-Za-z0-9_.-]{1,${MAX_TAP_NAME_LENGTH}}$`);
const LLADDR = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

/** Walks the parsed TOML tree, building the config and collecting errors. */
export class Validator {
  #errors: ConfigError[] = [];
  #lines: Map<string, number>;
  #baseDir: string;
  #checkFiles: boolean;
  /** Device names seen so far (disks and interfaces share one namespace), with their owner. */
  #deviceNames = new Map<string, string>();

  #checkUsers: boolean;

  constructor(
    lines: Map<string, number>,
    baseDir: string,
    options: { checkFiles: boolean; checkUsers?: boolean },
  ) {
    this.#lines = lines;
    this.#baseDir = baseDir;
    this.#checkFiles = options.checkFiles;
    this.#checkUsers = options.checkUsers ?? false;
  }

  sortedErrors(): ConfigError[] {
    const atEnd = Number.MAX_SAFE_INTEGER;
    return this.#errors
      .map((e, order) => ({ e, order }))
      .sort((x, y) => (x.e.line ?? atEnd) - (y.e.line ?? atEnd) || x.order - y.order)
      .map(({ e }) => e);
  }

  #error(path: readonly PathSegment[], message: string, linePath = path): void {
    const name = formatPath(path);
    const line = this.#lines.get(formatPath(linePath));
    this.#errors.push(line === undefined ? { path: name, message } : { path: name, line, message });
  }

  validate(root: Record<string, unknown>): VmConfig {
    for (const key of Object.keys(root)) {
      if (!(SECTION_NAMES as readonly string[]).includes(key)) {
        const suggestion = suggestName(key, SECTION_NAMES, SECTION_ALIASES);
        this.#error(
          [key],
          suggestion === undefined
            ? "unknown section"
            : `unknown section; did you mean ${JSON.stringify(suggestion)}?`,
        );
      }
    }
    const vm = this.#vm(this.#section(root, "vm"));
    const boot = this.#boot(this.#section(root, "boot"));
    const disks = this.#entries(root, "disk").map((t, i) => this.#disk(t, i));
    const interfaces = this.#entries(root, "interface").map((t, i) => this.#interface(t, i));
    const serial = this.#console(this.#section(root, "console"));
    const debug = this.#debug(this.#section(root, "debug"));
    const display = this.#display(this.#section(root, "display"));
    const config: VmConfig = { vm, boot, disks, interfaces, console: serial, debug };
    if (display) config.display = display;
    if (root.cdrom !== undefined) {
      const table = this.#section(root, "cdrom");
      const path = this.#required(this.#path(table, ["cdrom"], "path", "read"), table, [
        "cdrom",
        "path",
      ]);
      if (path !== undefined) config.cdrom = { path };
    }
    if (boot.device === "cdrom" && root.cdrom === undefined) {
      this.#error(["boot", "device"], 'is "cdrom" but there is no [cdrom] section');
    }
    this.#checkDuplicateDisks(config.disks);
    this.#checkDuplicateInterfaces(config.interfaces);
    this.#checkExitPort(config);
    return config;
  }

  /** A `[name]` section as a table (empty when absent), reporting unknown keys. */
  #section(root: Record<string, unknown>, name: SectionName): Record<string, unknown> {
    const value = root[name];
    if (value === undefined) return {};
    if (!isTable(value)) {
      this.#error([name], `expected a table, got ${describeValue(value)}`);
      return {};
    }
    this.#unknownKeys(value, [name], name);
    return value;
  }

  /** The tables of a `[[name]]` section, reporting shape errors, count and unknown keys. */
  #entries(root: Record<string, unknown>, name: "disk" | "interface"): Record<string, unknown>[] {
    const value = root[name];
    if (value === undefined) return [];
    if (!Array.isArray(value)) {
      const got = isTable(value) ? "a table" : describeValue(value);
      this.#error([name], `expected an array of tables ([[${name}]]), got ${got}`);
      return [];
    }
    const max = SECTIONS[name].maxEntries;
    if (value.length > max) {
      this.#error(
        [name],
        `at most ${max} entries are allowed, got ${value.length}`,
        [name, max],
      );
    }
    const tables: Record<string, unknown>[] = [];
    value.forEach((entry, index) => {
      if (isTable(entry)) {
        this.#unknownKeys(entry, [name, index], name);
        tables.push(entry);
      } else {
        this.#error([name, index], `expected a table, got ${describeValue(entry)}`);
        tables.push({});
      }
    });
    return tables;
  }

  #unknownKeys(table: Record<string, unknown>, path: PathSegment[], section: SectionName): void {
    const known = Object.keys(SECTIONS[section].keys);
    for (const key of Object.keys(table)) {
      if (known.includes(key)) continue;
      const suggestion = suggestName(key, known, KEY_ALIASES[section]);
      this.#error(
        [...path, key],
        suggestion === undefined
          ? "unknown key"
          : `unknown key; did you mean ${JSON.stringify(suggestion)}?`,
      );
    }
  }

  // ---- typed getters: each reports its own type error and returns undefined ----

  #string(table: Record<string, unknown>, path: PathSegment[], key: string): string | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== "string") {
      this.#error([...path, key], `expected a string, got ${describeValue(value)}`);
      return undefined;
    }
    if (value.includes("\0")) {
      this.#error([...path, key], "must not contain a NUL character");
      return undefined;
    }
    return value;
  }

  #integer(table: Record<string, unknown>, path: PathSegment[], key: string): bigint | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== "bigint") {
      this.#error([...path, key], `expected an integer, got ${describeValue(value)}`);
      return undefined;
    }
    return value;
  }

  #boolean(table: Record<string, unknown>, path: PathSegment[], key: string): boolean | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") {
      this.#error([...path, key], `expected a boolean, got ${describeValue(value)}`);
      return undefined;
    }
    return value;
  }

  #required<T>(value: T | undefined, table: Record<string, unknown>, path: PathSegment[]): T {
    const key = path[path.length - 1] as string;
    if (value === undefined && table[key] === undefined) this.#error(path, "required");
    return value as T;
  }

  #enum<T extends string>(
    table: Record<string, unknown>,
    path: PathSegment[],
    key: string,
    allowed: readonly T[],
    fallback: T,
  ): T {
    const value = this.#string(table, path, key);
    if (value === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      this.#error(
        [...path, key],
        `must be one of ${allowed.join(", ")}; got ${JSON.stringify(value)}`,
      );
      return fallback;
    }
    return value as T;
  }

  #range(
    path: PathSegment[],
    value: bigint | undefined,
    min: number,
    max: number,
    show: (n: number) => string = String,
  ): number | undefined {
    if (value === undefined) return undefined;
    if (value < BigInt(min) || value > BigInt(max)) {
      const got =
        value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
          ? show(Number(value))
          : String(value);
      this.#error(path, `must be between ${show(min)} and ${show(max)}, got ${got}`);
      return undefined;
    }
    return Number(value);
  }

  // ---- sections ----

  #vm(table: Record<string, unknown>): VmConfig["vm"] {
    const path: PathSegment[] = ["vm"];
    const defaults = SECTIONS.vm.keys;
    const name = this.#required(this.#string(table, path, "name"), table, ["vm", "name"]);
    if (name !== undefined) this.#checkVmName(name);
    const accel = this.#enum<AccelName>(table, path, "accel", ACCEL_NAMES, defaults.accel.default);
    const irqchip = this.#enum<IrqchipName>(
      table,
      path,
      "irqchip",
      IRQCHIP_NAMES,
      defaults.irqchip.default,
    );
    const vcpus = this.#range(
      ["vm", "vcpus"],
      this.#integer(table, path, "vcpus"),
      MIN_VCPUS,
      MAX_VCPUS,
    ) ?? defaults.vcpus.default;
    const memoryBytes = this.#memory(table, accel);
    const vm: VmConfig["vm"] = { name: name ?? "", memoryBytes, vcpus, accel, irqchip };
    const owner = this.#string(table, path, "owner");
    if (owner !== undefined) {
      const parts = owner.split(":");
      if (parts.length <= 2 && parts.every((p) => OWNER_NAME.test(p))) {
        vm.owner = parts.length === 1 ? { user: parts[0] } : { user: parts[0], group: parts[1] };
        if (this.#checkUsers) this.#checkOwner(vm.owner);
      } else {
        this.#error(
          ["vm", "owner"],
          'must be "user" or "user:group", names of letters, digits, "_", "-", "." ' +
            `(at most 32 characters); got ${JSON.stringify(owner)}`,
        );
      }
    }
    const user = this.#string(table, path, "user");
    if (user !== undefined) {
      if (OWNER_NAME.test(user)) vm.user = user;
      else {
        this.#error(
          ["vm", "user"],
          'must be a user name of letters, digits, "_", "-", "." (at most 32 characters); ' +
            `got ${JSON.stringify(user)}`,
        );
      }
    }
    return vm;
  }

  /** vmd refuses an owner it cannot find ("unknown user"): so do we, when asked to check. */
  #checkOwner(owner: { user: string; group?: string }): void {
    if (idForName("/etc/passwd", owner.user) === undefined) {
      this.#error(["vm", "owner"], `unknown user ${JSON.stringify(owner.user)}`);
    }
    if (owner.group !== undefined && idForName("/etc/group", owner.group) === undefined) {
      this.#error(["vm", "owner"], `unknown group ${JSON.stringify(owner.group)}`);
    }
  }

  #checkVmName(name: string): void {
    const path = ["vm", "name"];
    const quoted = JSON.stringify(name);
    if (name === "") {
      this.#error(path, "must not be empty");
    } else if (name.length > MAX_VM_NAME_LENGTH) {
      this.#error(path, `must be at most ${MAX_VM_NAME_LENGTH} characters, got ${name.length}`);
    } else if (!/^[A-Za-z0-9._-]*$/.test(name)) {
      this.#error(path, `must contain only letters, digits, "-", "_" and "."; got ${quoted}`);
    } else if (!VM_NAME.test(name)) {
      this.#error(path, `must start with a letter or digit; got ${quoted}`);
    }
  }

  #memory(table: Record<string, unknown>, accel: AccelName): number {
    const path = ["vm", "memory"];
    const fallback = parseSize(SECTIONS.vm.keys.memory.default);
    const value = table.memory;
    if (value === undefined) return fallback;
    let bytes: number;
    try {
      if (typeof value === "string") {
        bytes = parseSize(value);
      } else if (typeof value === "bigint") {
        if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new SizeError(`cannot parse size ${value}: too large`);
        }
        bytes = parseSize(Number(value));
      } else {
        this.#error(
          path,
          `expected an integer or a size string like "256M", got ${describeValue(value)}`,
        );
        return fallback;
      }
    } catch (e) {
      if (!(e instanceof SizeError)) throw e;
      this.#error(path, e.message);
      return fallback;
    }
    const openbsd = accel === "openbsd" || accel === "openbsd-on-kvm";
    const max = openbsd ? MAX_MEMORY_BYTES_OPENBSD : MAX_MEMORY_BYTES;
    if (bytes < MIN_MEMORY_BYTES) {
      this.#error(
        path,
        `must be at least ${formatSize(MIN_MEMORY_BYTES)}, got ${formatSize(bytes)}`,
      );
    } else if (bytes > max) {
      const why = openbsd
        ? ` with accel ${JSON.stringify(accel)} (vmm(4)'s VMM_MAX_VM_MEM_SIZE)`
        : "";
      this.#error(path, `must be at most ${formatSize(max)}${why}, got ${formatSize(bytes)}`);
    } else if (bytes % MEMORY_ALIGN_BYTES !== 0) {
      this.#error(
        path,
        `must be a multiple of ${formatSize(MEMORY_ALIGN_BYTES)} (the page size), got ${bytes}`,
      );
    }
    return bytes;
  }

  #boot(table: Record<string, unknown>): VmConfig["boot"] {
    const path: PathSegment[] = ["boot"];
    const boot: VmConfig["boot"] = {
      cmdline: this.#string(table, path, "cmdline") ?? SECTIONS.boot.keys.cmdline.default,
    };
    const kernel = this.#path(table, path, "kernel", "read");
    if (kernel !== undefined) boot.kernel = kernel;
    const initrd = this.#path(table, path, "initrd", "read");
    if (initrd !== undefined) boot.initrd = initrd;
    const bios = this.#path(table, path, "bios", "read");
    if (bios !== undefined) boot.bios = bios;
    if (table.device !== undefined) {
      boot.device = this.#enum<BootDevice>(table, path, "device", BOOT_DEVICES, "disk");
    }
    if (table.on_fail !== undefined) {
      boot.onFail = this.#enum<BootOnFail>(table, path, "on_fail", BOOT_ON_FAIL, "wait");
    }
    return boot;
  }

  #disk(table: Record<string, unknown>, index: number): DiskConfig {
    const path: PathSegment[] = ["disk", index];
    const defaults = SECTIONS.disk.keys;
    const readonly = this.#boolean(table, path, "readonly") ?? defaults.readonly.default;
    const file = this.#required(
      this.#path(table, path, "path", readonly ? "read" : "read-write"),
      table,
      [...path, "path"],
    );
    const format = this.#enum<DiskFormat>(
      table,
      path,
      "format",
      DISK_FORMATS,
      defaults.format.default,
    );
    const disk: DiskConfig = { path: file ?? "", format, readonly };
    const name = this.#deviceName(table, path);
    if (name !== undefined) disk.name = name;
    return disk;
  }

  #interface(table: Record<string, unknown>, index: number): InterfaceConfig {
    const path: PathSegment[] = ["interface", index];
    const iface: InterfaceConfig = { tap: SECTIONS.interface.keys.tap.default };
    const tap = this.#string(table, path, "tap");
    if (tap !== undefined) {
      if (tap === "auto" || (TAP_NAME.test(tap) && tap !== "." && tap !== "..")) {
        iface.tap = tap;
      } else {
        this.#error(
          [...path, "tap"],
          `must be "auto" or a tap device name of 1 to ${MAX_TAP_NAME_LENGTH} letters, ` +
            `digits, "_", "-", "."; got ${JSON.stringify(tap)}`,
        );
      }
    }
    const lladdr = this.#string(table, path, "lladdr");
    if (lladdr !== undefined) {
      const quoted = JSON.stringify(lladdr);
      const firstOctet = parseInt(lladdr.slice(0, 2), 16);
      if (!LLADDR.test(lladdr)) {
        this.#error(
          [...path, "lladdr"],
          `must be six hex pairs separated by ":", like "fe:e1:ba:d0:00:01"; got ${quoted}`,
        );
      } else if ((firstOctet & 1) !== 0) {
        this.#error(
          [...path, "lladdr"],
          `must be a unicast address (bit 0 of the first octet clear); got ${quoted}`,
        );
      } else if (/^(00:){5}00$/.test(lladdr)) {
        this.#error([...path, "lladdr"], `must not be all zeros; got ${quoted}`);
      } else {
        iface.lladdr = lladdr.toLowerCase();
      }
    }
    const name = this.#deviceName(table, path);
    if (name !== undefined) iface.name = name;
    return iface;
  }

  #deviceName(table: Record<string, unknown>, path: PathSegment[]): string | undefined {
    const name = this.#string(table, path, "name");
    if (name === undefined) return undefined;
    const keyPath = [...path, "name"];
    if (!DEVICE_NAME.test(name) || name.length > MAX_DEVICE_NAME_LENGTH) {
      this.#error(
        keyPath,
        `must be 1 to ${MAX_DEVICE_NAME_LENGTH} letters, digits, "_" or "-"; ` +
          `got ${JSON.stringify(name)}`,
      );
      return undefined;
    }
    const owner = formatPath(path);
    const previous = this.#deviceNames.get(name);
    if (previous !== undefined) {
      this.#error(keyPath, `name ${JSON.stringify(name)} is already used by ${previous}`);
      return undefined;
    }
    this.#deviceNames.set(name, owner);
    return name;
  }

  #console(table: Record<string, unknown>): VmConfig["console"] {
    const path = ["console", "serial"];
    const value = this.#string(table, ["console"], "serial");
    if (value === undefined) return { serial: "stdio" };
    if (value === "stdio" || value === "pty" || value === "none") return { serial: value };
    if (value.startsWith("file:")) {
      const file = value.slice("file:".length);
      if (file === "") {
        this.#error(path, '"file:" needs a path, like "file:console.log"');
        return { serial: "stdio" };
      }
      const absolute = resolve(this.#baseDir, file);
      if (this.#checkFiles) this.#checkOutputFile(path, absolute);
      return { serial: "file", path: absolute };
    }
    this.#error(path, `must be one of ${SERIAL_VALUES.join(", ")}; got ${JSON.stringify(value)}`);
    return { serial: "stdio" };
  }

  #display(table: Record<string, unknown>): VmConfig["display"] {
    const type = this.#string(table, ["display"], "type") ?? "none";
    const vnc = this.#string(table, ["display"], "vnc");
    const web = this.#string(table, ["display"], "web");
    const password = this.#string(table, ["display"], "password");
    const serial = this.#boolean(table, ["display"], "serial") ?? false;
    if (type !== "none" && type !== "vga") {
      this.#error(["display", "type"], `must be one of none, vga; got ${JSON.stringify(type)}`);
      return undefined;
    }
    if (type === "none") {
      for (const [key, v] of [["vnc", vnc], ["web", web]] as const) {
        if (v !== undefined) this.#error(["display", key], 'needs a display: set type = "vga"');
      }
      return undefined;
    }
    for (const [key, v] of [["vnc", vnc], ["web", web]] as const) {
      if (v === undefined) continue;
      let addr: ListenAddress;
      try {
        addr = parseListenAddress(v);
      } catch (e) {
        this.#error(["display", key], (e as Error).message);
        continue;
      }
      if (addr.kind === "tcp" && !addr.loopback && password === undefined) {
        this.#error(
          ["display", key],
          `listens beyond this host (${JSON.stringify(v)}): set display.password, or use ` +
            "127.0.0.1 or a socket path",
        );
      }
    }
    if (password !== undefined && password === "") {
      this.#error(["display", "password"], "must not be empty");
    }
    const settings: DisplaySettings = { type, serial };
    if (vnc !== undefined) settings.vnc = vnc;
    if (web !== undefined) settings.web = web;
    if (password !== undefined) settings.password = password;
    return settings;
  }

  #debug(table: Record<string, unknown>): VmConfig["debug"] {
    const exitPort = this.#range(
      ["debug", "exit_port"],
      this.#integer(table, ["debug"], "exit_port"),
      0,
      MAX_IO_PORT,
      (n) => n <= 0 ? String(n) : `0x${n.toString(16)}`,
    );
    const debug: VmConfig["debug"] = exitPort === undefined ? {} : { exitPort };
    if (this.#boolean(table, ["debug"], "lockdown") === false) debug.lockdown = false;
    return debug;
  }

  /** The exit port must not overlap a device of the machine's fixed port map. */
  #checkExitPort(config: VmConfig): void {
    const port = config.debug.exitPort;
    if (port === undefined) return;
    const functions = virtioFunctionCount(config.disks.length, config.interfaces.length);
    const clash = portClash(port, DEBUG_EXIT_BYTES, functions, config.display !== undefined);
    if (clash) {
      const hex = (n: number) => `0x${n.toString(16)}`;
      this.#error(
        ["debug", "exit_port"],
        `${hex(port)}-${hex(port + DEBUG_EXIT_BYTES - 1)} overlaps the ${clash.name} at ` +
          `${hex(clash.base)}-${hex(clash.base + clash.length - 1)}; pick a free port such as 0xf4`,
      );
    }
  }

  // ---- files ----

  /** A path-valued key, resolved against the base folder and checked when asked. */
  #path(
    table: Record<string, unknown>,
    path: PathSegment[],
    key: string,
    access: "read" | "read-write",
  ): string | undefined {
    const value = this.#string(table, path, key);
    if (value === undefined) return undefined;
    if (value === "") {
      this.#error([...path, key], "must not be empty");
      return undefined;
    }
    const absolute = resolve(this.#baseDir, value);
    if (this.#checkFiles) this.#checkInputFile([...path, key], absolute, access);
    return absolute;
  }

  #checkInputFile(path: PathSegment[], absolute: string, access: "read" | "read-write"): void {
    const quoted = `file ${JSON.stringify(absolute)}`;
    const isDisk = path[0] === "disk";
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(absolute);
    } catch (e) {
      this.#error(path, `${quoted} ${describeFsError(e, "read")}`);
      return;
    }
    if (info.isDirectory) {
      this.#error(path, `${quoted} is a directory`);
      return;
    }
    // Opening a FIFO or a terminal could block or have side effects: only
    // regular files (and block devices, for disks) are opened to test access.
    if (!info.isFile && !(isDisk && info.isBlockDevice)) {
      const what = isDisk ? "a regular file or a block device" : "a regular file";
      this.#error(path, `${quoted} is not ${what}`);
      return;
    }
    for (const mode of access === "read" ? ["read"] as const : ["read", "write"] as const) {
      try {
        Deno.openSync(absolute, { read: mode === "read", write: mode === "write" }).close();
      } catch (e) {
        this.#error(path, `${quoted} ${describeFsError(e, mode)}`);
        return;
      }
    }
  }

  /** A file we will create or append to: its folder must exist; it must not be a folder. */
  #checkOutputFile(path: PathSegment[], absolute: string): void {
    const folder = dirname(absolute);
    try {
      if (!Deno.statSync(folder).isDirectory) {
        this.#error(path, `${JSON.stringify(folder)} is not a folder`);
        return;
      }
    } catch (e) {
      this.#error(path, `folder ${JSON.stringify(folder)} ${describeFsError(e, "read")}`);
      return;
    }
    // The same rule the console sink applies when the VM starts.
    const problem = serialFileProblem(absolute);
    if (problem) this.#error(path, `file ${JSON.stringify(absolute)} ${problem}`);
  }

  #checkDuplicateDisks(disks: DiskConfig[]): void {
    disks.forEach((disk, i) => {
      if (disk.path === "") return;
      const j = disks.findIndex((d) => d.path === disk.path);
      if (j < i && !(disk.readonly && disks[j].readonly)) {
        this.#error(
          ["disk", i, "path"],
          `file ${JSON.stringify(disk.path)} is already used by disk[${j}]; ` +
            "only read-only disks may share a file",
        );
      }
    });
  }

  #checkDuplicateInterfaces(interfaces: InterfaceConfig[]): void {
    interfaces.forEach((iface, i) => {
      if (iface.tap !== "auto") {
        const j = interfaces.findIndex((x) => x.tap === iface.tap);
        if (j < i) {
          this.#error(
            ["interface", i, "tap"],
            `tap ${JSON.stringify(iface.tap)} is already used by interface[${j}]`,
          );
        }
      }
      if (iface.lladdr !== undefined) {
        const j = interfaces.findIndex((x) => x.lladdr === iface.lladdr);
        if (j < i) {
          this.#error(
            ["interface", i, "lladdr"],
            `address ${JSON.stringify(iface.lladdr)} is already used by interface[${j}]`,
          );
        }
      }
    });
  }
}
