/**
 * The parser of vm.conf(5): statements (macros, `include`, the global
 * settings, `switch` and `vm` blocks) into plain definitions ({@link VmDef},
 * {@link SwitchDef}), collecting every error with its file and line and
 * going on after it, so one run reports all problems.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import type { DiskFormat } from "../schema.ts";
import { scanScaled } from "../size.ts";
import { type Lexer, ParseError, type Tok } from "./lexer.ts";

const KEYWORDS = new Set([
  "agentx",
  "allow",
  "boot",
  "cdrom",
  "delay",
  "device",
  "disable",
  "disk",
  "down",
  "enable",
  "format",
  "group",
  "include",
  "inet6",
  "instance",
  "interface",
  "interfaces",
  "lladdr",
  "local",
  "locked",
  "memory",
  "net",
  "owner",
  "parallel",
  "prefix",
  "rdomain",
  "sev",
  "socket",
  "staggered",
  "start",
  "switch",
  "up",
  "vm",
]);

export interface IfaceDef {
  line: number;
  tap?: string;
  local: boolean;
  lladdr?: string;
  /** `lladdr` without an address: vmd picks a random one. */
  randomLladdr: boolean;
  locked: boolean;
  switchName?: string;
  group?: string;
  rdomain?: number;
  down: boolean;
}

/** One `vm` block as written (relative paths already resolved). */
export interface VmDef {
  name: string;
  file: string;
  line: number;
  enabled: boolean;
  memoryBytes?: number;
  boot?: { path: string; line: number };
  bootDevice?: { device: string; line: number };
  cdrom?: { path: string; line: number };
  disks: { path: string; format?: DiskFormat; line: number }[];
  interfaces: IfaceDef[];
  nifs?: number;
  owner?: { user: string; group?: string; line: number };
  /** `allow instance`: its line and what instances may change. */
  allowInstance?: { line: number } & InstancePermissions;
  instanceOf?: string;
  /** `sev` (AMD SEV): its line. */
  sev?: number;
  /** The errors inside this block (the block is broken when there are any). */
  errors: string[];
}

/** What `allow instance` lets an instance's creator change (vm.conf(5) VM INSTANCES). */
export interface InstancePermissions {
  boot: boolean;
  cdrom: boolean;
  disk: boolean;
  instance: boolean;
  interface: boolean;
  memory: boolean;
  /** `owner user[:group]` entries allowed to create instances. */
  owners: { user?: string; group?: string }[];
}

/** The global settings of a vm.conf file. */
export interface VmConfGlobals {
  /** `socket owner user:group`. */
  socketOwner?: { user?: string; group?: string; line: number };
  /** `staggered start parallel N delay S`. */
  staggered?: { parallel: number; delaySeconds: number; line: number };
  /** `local prefix A/N`. */
  localPrefix?: string;
  /** `local inet6 [prefix A/N]`: undefined prefix means a random fd00::/8 one. */
  localInet6?: { prefix?: string };
}

/** One `switch` block. */
export interface SwitchDef {
  name: string;
  /** The host bridge (`interface bridge0`). */
  iface?: string;
  line: number;
  file: string;
  enabled: boolean;
  down: boolean;
  group?: string;
  locked: boolean;
  rdomain?: number;
}

/** A place in the input. */
export type Where = { file: string; line: number };

/** Parses a whole file (and its includes) into definitions, warnings and errors. */
export class VmConfParser {
  readonly lexer: Lexer;
  readonly vms: VmDef[] = [];
  readonly switches: SwitchDef[] = [];
  readonly warnings: string[] = [];
  readonly errors: string[] = [];
  /** Errors inside a vm block drop that VM: the names here. */
  readonly broken = new Set<VmDef>();
  readonly globals: VmConfGlobals = {};
  /**
   * Warnings that only concern conversion to TOML (`vmmctl import`): settings
   * the native reader keeps (socket owner, staggered start ...).
   */
  readonly importOnly = new Set<string>();

  constructor(lexer: Lexer) {
    this.lexer = lexer;
  }

  warn(at: Where, message: string, importOnly = false): void {
    const text = `${at.file}:${at.line}: ${message}`;
    this.warnings.push(text);
    if (importOnly) this.importOnly.add(text);
  }

  /** `user`, `user:group` or `:group`. */
  #owner(what: string): { user?: string; group?: string } {
    const [user, group] = this.#string(what).text.split(":", 2);
    return { user: user || undefined, group: group || undefined };
  }

  parse(): void {
    for (;;) {
      const t = this.lexer.peek();
      if (t.kind === "eof") return;
      if (t.kind === "nl") {
        this.lexer.next();
        continue;
      }
      try {
        this.#statement();
      } catch (e) {
        if (!(e instanceof ParseError)) throw e;
        this.errors.push(`${e.file}:${e.line}: ${e.message}`);
        this.#skipLine();
      }
    }
  }

  #skipLine(): void {
    for (;;) {
      let t: Tok;
      try {
        t = this.lexer.next();
      } catch (e) {
        if (e instanceof ParseError) continue;
        throw e;
      }
      if (t.kind === "nl" || t.kind === "eof") return;
    }
  }

  #isWord(t: Tok, word: string): boolean {
    return t.kind === "word" && t.text === word;
  }

  #describe(t: Tok): string {
    if (t.kind === "nl") return "end of line";
    if (t.kind === "eof") return "end of file";
    return JSON.stringify(t.text);
  }

  #expectWord(word: string): Tok {
    const t = this.lexer.next();
    if (!this.#isWord(t, word)) {
      throw new ParseError(t, `expected "${word}", got ${this.#describe(t)}`);
    }
    return t;
  }

  #expectSym(sym: string): Tok {
    const t = this.lexer.next();
    if (t.kind !== "sym" || t.text !== sym) {
      throw new ParseError(t, `expected "${sym}", got ${this.#describe(t)}`);
    }
    return t;
  }

  #expectEol(): void {
    const t = this.lexer.peek();
    if (t.kind === "nl" || t.kind === "eof") {
      this.lexer.next();
      return;
    }
    throw new ParseError(t, `unexpected ${this.#describe(t)} at the end of the statement`);
  }

  #skipNewlines(): void {
    while (this.lexer.peek().kind === "nl") this.lexer.next();
  }

  /** A value: one or more consecutive strings, words (not keywords) or numbers, joined. */
  #isValue(t: Tok): boolean {
    return t.kind === "string" || t.kind === "number" ||
      (t.kind === "word" && !KEYWORDS.has(t.text));
  }

  #string(what: string): { text: string; at: Tok } {
    const first = this.lexer.peek();
    if (!this.#isValue(first)) {
      throw new ParseError(first, `expected ${what}, got ${this.#describe(first)}`);
    }
    let text = "";
    while (this.#isValue(this.lexer.peek())) text += this.lexer.next().text;
    return { text, at: first };
  }

  #number(what: string): number {
    const t = this.lexer.next();
    if (t.kind !== "number") throw new ParseError(t, `expected ${what}, got ${this.#describe(t)}`);
    return Number(t.text);
  }

  #statement(): void {
    const t = this.lexer.next();
    if (this.#isWord(t, "include")) {
      const { text } = this.#string("a file name");
      this.#expectEol();
      this.lexer.include(resolve(dirname(t.file), text), t);
      return;
    }
    if (this.#isWord(t, "vm")) return this.#vm(t);
    if (this.#isWord(t, "switch")) return this.#switch(t);
    if (this.#isWord(t, "local")) return this.#localGlobal(t);
    if (this.#isWord(t, "socket")) {
      this.#expectWord("owner");
      this.globals.socketOwner = { ...this.#owner("an owner"), line: t.line };
      this.#expectEol();
      this.warn(
        t,
        "socket owner: not converted: vmmctl has one control socket per VM; " +
          "give each VM an owner instead",
        true,
      );
      return;
    }
    if (this.#isWord(t, "staggered")) {
      this.#expectWord("start");
      this.#expectWord("parallel");
      const parallel = this.#number("a count");
      this.#expectWord("delay");
      const delaySeconds = this.#number("seconds");
      this.#expectEol();
      if (parallel < 1) throw new ParseError(t, `invalid parallelism: ${parallel}`);
      if (delaySeconds < 0) throw new ParseError(t, `invalid delay: ${delaySeconds}`);
      this.globals.staggered = { parallel, delaySeconds, line: t.line };
      this.warn(t, "staggered start: not converted: vmmctl does not start VMs at boot", true);
      return;
    }
    if (this.#isWord(t, "agentx")) {
      while (![`nl`, "eof"].includes(this.lexer.peek().kind)) this.lexer.next();
      this.#expectEol();
      this.warn(t, "agentx: not converted: vmmctl exports no SNMP metrics");
      return;
    }
    if ((t.kind === "word" || t.kind === "string") && !KEYWORDS.has(t.text)) {
      const eq = this.lexer.peek();
      if (eq.kind === "sym" && eq.text === "=") {
        this.lexer.next();
        if (/\s/.test(t.text)) throw new ParseError(t, "macro name cannot contain whitespace");
        const v = this.lexer.next();
        if (v.kind !== "string" && v.kind !== "word" && v.kind !== "number") {
          throw new ParseError(v, `expected a macro value, got ${this.#describe(v)}`);
        }
        this.#expectEol();
        this.lexer.macros.set(t.text, v.text);
        return;
      }
    }
    throw new ParseError(t, `syntax error: unexpected ${this.#describe(t)}`);
  }

  #localGlobal(t: Tok): void {
    const next = this.lexer.next();
    if (this.#isWord(next, "prefix")) {
      this.globals.localPrefix = this.#string("an address/prefix").text;
    } else if (this.#isWord(next, "inet6")) {
      this.globals.localInet6 = {};
      if (this.#isWord(this.lexer.peek(), "prefix")) {
        this.lexer.next();
        this.globals.localInet6.prefix = this.#string("an address/prefix").text;
      }
    } else {
      throw new ParseError(next, `expected "prefix" or "inet6", got ${this.#describe(next)}`);
    }
    this.#expectEol();
    this.warn(
      t,
      `local ${next.text}: not converted: vmmctl has no local interfaces (vmd's DHCP-served ` +
        "point-to-point networks)",
    );
  }

  #switch(t: Tok): void {
    const { text: name } = this.#string("a switch name");
    const sw: SwitchDef = {
      name,
      line: t.line,
      file: t.file,
      enabled: true,
      down: false,
      locked: false,
    };
    const ok = this.#guardedBlock(() => {
      const o = this.lexer.next();
      const word = o.kind === "word" ? o.text : "";
      if (word === "enable" || word === "disable") return void (sw.enabled = word === "enable");
      if (word === "up" || word === "down") return void (sw.down = word === "down");
      if (word === "group") return void (sw.group = this.#string("a group name").text);
      if (word === "interface") {
        sw.iface = this.#string("an interface name").text;
        return;
      }
      if (word === "locked") {
        this.#expectWord("lladdr");
        sw.locked = true;
        return;
      }
      if (word === "rdomain") {
        sw.rdomain = this.#number("a routing domain");
        if (sw.rdomain < 0 || sw.rdomain > 255) {
          throw new ParseError(o, `invalid rdomain: ${sw.rdomain}`);
        }
        return;
      }
      throw new ParseError(o, `unknown switch option ${this.#describe(o)}`);
    });
    if (ok) this.switches.push(sw);
  }

  /**
   * Parses a `{ }` block; on an error, records it and skips to the end of the
   * block, so one mistake gives one message. False when the block was broken.
   */
  #guardedBlock(option: () => void): boolean {
    const depth = this.lexer.depth;
    try {
      this.#block(option);
      return true;
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      this.errors.push(`${e.file}:${e.line}: ${e.message}`);
    }
    let entered = this.lexer.depth > depth;
    for (;;) {
      let t: Tok;
      try {
        t = this.lexer.next();
      } catch (e) {
        if (e instanceof ParseError) continue;
        throw e;
      }
      if (t.kind === "eof") return false;
      if (this.lexer.depth > depth) entered = true;
      else if (entered) break;
      else if (t.kind === "nl") return false;
    }
    this.#skipLine();
    return false;
  }

  /** `{` options separated by newlines `}`, then the end of the statement. */
  #block(option: () => void): void {
    this.#braced(option, "newline", "at the end of the block");
    this.#expectEol();
  }

  /**
   * The one brace parser of the grammar: `{`, options, `}`. Blocks separate
   * their options by newlines; interface options may share a line; instance
   * permissions may be separated by commas too (vmd's parse.y).
   */
  #braced(option: () => void, separator: "newline" | "space" | "comma", where: string): void {
    this.#expectSym("{");
    this.#skipNewlines();
    for (;;) {
      const t = this.lexer.peek();
      if (this.#isSym(t, "}")) {
        this.lexer.next();
        return;
      }
      if (t.kind === "eof") throw new ParseError(t, `missing "}" ${where}`);
      option();
      if (separator === "comma" && this.#isSym(this.lexer.peek(), ",")) this.lexer.next();
      const after = this.lexer.peek();
      if (after.kind === "nl") this.#skipNewlines();
      else if (separator === "newline" && !this.#isSym(after, "}")) {
        throw new ParseError(after, `unexpected ${this.#describe(after)} after an option`);
      }
    }
  }

  #isSym(t: Tok, sym: string): boolean {
    return t.kind === "sym" && t.text === sym;
  }

  #vm(t: Tok): void {
    let { text: name } = this.#string("a VM name");
    let instanceOf: string | undefined;
    if (this.#isWord(this.lexer.peek(), "instance")) {
      this.lexer.next();
      instanceOf = name;
      name = this.#string("an instance name").text;
    }
    const vm: VmDef = {
      name,
      file: t.file,
      line: t.line,
      enabled: true,
      disks: [],
      interfaces: [],
      instanceOf,
      errors: [],
    };
    const before = this.errors.length;
    if (!this.#guardedBlock(() => this.#vmOption(vm))) this.broken.add(vm);
    vm.errors.push(...this.errors.slice(before));
    this.vms.push(vm);
  }

  #vmOption(vm: VmDef): void {
    const o = this.lexer.next();
    const base = dirname(o.file);
    const once = (set: boolean, what: string) => {
      if (set) throw new ParseError(o, `${what} specified more than once`);
    };
    switch (o.kind === "word" ? o.text : "") {
      case "enable":
        vm.enabled = true;
        return;
      case "disable":
        vm.enabled = false;
        return;
      case "disk": {
        const path = resolve(base, this.#string("a disk path").text);
        let format: DiskFormat | undefined;
        if (this.#isWord(this.lexer.peek(), "format")) {
          this.lexer.next();
          const f = this.#string("a disk format");
          const lower = f.text.toLowerCase();
          if (lower !== "raw" && lower !== "qcow2") {
            throw new ParseError(f.at, `unrecognized disk format "${f.text}"`);
          }
          format = lower;
        }
        vm.disks.push({ path, format, line: o.line });
        return;
      }
      case "local":
        this.#expectWord("interface");
        vm.interfaces.push(this.#iface(o, true));
        return;
      case "interface":
        vm.interfaces.push(this.#iface(o, false));
        return;
      case "boot":
        if (this.#isWord(this.lexer.peek(), "device")) {
          this.lexer.next();
          const d = this.lexer.next();
          if (!["cdrom", "disk", "net"].includes(d.text) || d.kind !== "word") {
            throw new ParseError(d, `expected cdrom, disk or net, got ${this.#describe(d)}`);
          }
          vm.bootDevice = { device: d.text, line: o.line };
          return;
        }
        once(vm.boot !== undefined, "kernel");
        vm.boot = { path: resolve(base, this.#string("a kernel path").text), line: o.line };
        return;
      case "kernel":
        // The name of `boot` before OpenBSD 6.3; old files (etc/examples/vm.conf) still have it.
        once(vm.boot !== undefined, "kernel");
        vm.boot = { path: resolve(base, this.#string("a kernel path").text), line: o.line };
        this.warn(o, `vm "${vm.name}": "kernel" is the old name of "boot"`);
        return;
      case "cdrom":
        once(vm.cdrom !== undefined, "cdrom");
        vm.cdrom = { path: resolve(base, this.#string("an ISO image path").text), line: o.line };
        return;
      case "interfaces": {
        once(vm.nifs !== undefined, "interfaces");
        const n = this.#number("a count of interfaces");
        if (n < 0) throw new ParseError(o, `invalid count of interfaces: ${n}`);
        vm.nifs = n;
        return;
      }
      case "memory": {
        once(vm.memoryBytes !== undefined, "memory");
        vm.memoryBytes = this.#memory(o, vm);
        return;
      }
      case "owner": {
        const { user, group } = this.#owner("an owner");
        vm.owner = { user: user ?? "", group, line: o.line };
        return;
      }
      case "allow":
        this.#expectWord("instance");
        vm.allowInstance = { line: o.line, ...this.#allowInstance() };
        return;
      case "sev":
        vm.sev = o.line;
        return;
    }
    throw new ParseError(o, `unknown vm option ${this.#describe(o)}`);
  }

  /** Sizes as scan_scaled(3) reads them, rounded down to whole megabytes like vmd. */
  #memory(o: Tok, vm: VmDef): number {
    const t = this.lexer.next();
    let bytes: number;
    if (t.kind === "number") {
      bytes = Number(t.text);
    } else if (t.kind === "word" || t.kind === "string") {
      try {
        bytes = scanScaled(t.text);
      } catch {
        throw new ParseError(t, `failed to parse size: "${t.text}"`);
      }
    } else {
      throw new ParseError(t, `expected a memory size, got ${this.#describe(t)}`);
    }
    const mib = 1024 * 1024;
    if (!Number.isSafeInteger(bytes)) {
      throw new ParseError(t, `memory size "${t.text}" is too large`);
    }
    if (!(bytes >= mib)) throw new ParseError(o, "memory size must be at least one megabyte");
    if (bytes % mib !== 0) {
      this.warn(
        o,
        `vm "${vm.name}": memory rounded down to ${
          Math.floor(bytes / mib)
        } megabytes (as vmd does)`,
      );
    }
    return Math.floor(bytes / mib) * mib;
  }

  #allowInstance(): InstancePermissions {
    const perms: InstancePermissions = {
      boot: false,
      cdrom: false,
      disk: false,
      instance: false,
      interface: false,
      memory: false,
      owners: [],
    };
    const flag = () => {
      const f = this.lexer.next();
      if (this.#isWord(f, "owner")) return void perms.owners.push(this.#owner("an owner"));
      const key = f.text as Exclude<keyof InstancePermissions, "owners">;
      if (
        f.kind !== "word" ||
        !["boot", "memory", "interface", "disk", "cdrom", "instance"].includes(key)
      ) {
        throw new ParseError(f, `unknown instance permission ${this.#describe(f)}`);
      }
      perms[key] = true;
    };
    if (!this.#isSym(this.lexer.peek(), "{")) flag();
    else this.#braced(flag, "comma", "after allow instance");
    return perms;
  }

  #iface(o: Tok, local: boolean): IfaceDef {
    const iface: IfaceDef = {
      line: o.line,
      local,
      locked: false,
      randomLladdr: false,
      down: false,
    };
    if (this.#isValue(this.lexer.peek())) iface.tap = this.#string("an interface name").text;
    if (this.#isSym(this.lexer.peek(), "{")) {
      this.#braced(() => this.#ifaceOption(iface), "space", "after the interface options");
      return iface;
    }
    // Options on the same line, optionally separated by commas.
    for (;;) {
      const p = this.lexer.peek();
      if (p.kind === "nl" || p.kind === "eof" || (p.kind === "sym" && p.text === "}")) return iface;
      if (p.kind === "sym" && p.text === ",") {
        this.lexer.next();
        continue;
      }
      this.#ifaceOption(iface);
    }
  }

  #ifaceOption(iface: IfaceDef): void {
    const o = this.lexer.next();
    switch (o.kind === "word" ? o.text : "") {
      case "switch":
        iface.switchName = this.#string("a switch name").text;
        return;
      case "group":
        iface.group = this.#string("a group name").text;
        return;
      case "locked":
        this.#expectWord("lladdr");
        iface.locked = true;
        this.#lladdr(iface);
        return;
      case "lladdr":
        this.#lladdr(iface);
        return;
      case "rdomain": {
        const n = this.#number("a routing domain");
        if (n < 0 || n > 255) throw new ParseError(o, `invalid rdomain: ${n}`);
        iface.rdomain = n;
        return;
      }
      case "up":
        iface.down = false;
        return;
      case "down":
        iface.down = true;
        return;
    }
    throw new ParseError(o, `unknown interface option ${this.#describe(o)}`);
  }

  #lladdr(iface: IfaceDef): void {
    const t = this.lexer.peek();
    if (!this.#isValue(t)) {
      iface.randomLladdr = true;
      return;
    }
    const { text, at } = this.#string("an Ethernet address");
    const parts = text.split(":");
    if (parts.length !== 6 || !parts.every((p) => /^[0-9A-Fa-f]{1,2}$/.test(p))) {
      throw new ParseError(at, `invalid address: "${text}"`);
    }
    iface.lladdr = parts.map((p) => p.toLowerCase().padStart(2, "0")).join(":");
  }
}
