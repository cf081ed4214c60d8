/**
 * vm.conf(5) -> vmmctl TOML: a reader for OpenBSD vmd's configuration file
 * (macros and `$name` expansion, `include`, comments, quoting, line
 * continuation, the global settings, `switch` and `vm` blocks) that turns each
 * `vm` block into a {@link VmConfig} and says, as a warning, everything it
 * cannot carry over (switches, CD-ROMs, boot devices, rdomains, instances ...).
 *
 * The grammar follows vm.conf(5): statements end at a newline; `{ }` blocks
 * hold one option per line; interface options go in braces or on one line,
 * optionally separated by commas; consecutive strings are joined; words not
 * starting with a letter, digit, "_", "/" or ":" must be quoted. Relative
 * paths (boot, disk, cdrom, include) resolve against the including file's
 * folder.
 *
 * @example
 * ```ts
 * import { importVmConf } from "./vmconf_import.ts";
 * const result = importVmConf('vm "web" {\n memory 1G\n disk "/var/vm/web.img"\n}\n', {
 *   path: "/etc/vm.conf",
 * });
 * result.vms[0].toml; // [vm] name = "web", memory = "1G", ...
 * ```
 * @module
 */

import { dirname, resolve } from "node:path";
import { normalizedToml, parseConfig } from "../config/parse.ts";
import type { DiskFormat, VmConfig } from "../config/schema.ts";

/** vm.conf's default guest memory. */
export const VMCONF_DEFAULT_MEMORY_BYTES = 512 * 1024 * 1024;
/** What vmd boots when a VM has no `boot` line: its BIOS image. */
export const VMD_BIOS_PATH = "/etc/firmware/vmm-bios";
/** Deepest `include` nesting accepted. */
const MAX_INCLUDE_DEPTH = 16;

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

/** Options for {@link importVmConf}. */
export interface ImportOptions {
  /** The file's path (for messages and relative paths). */
  path: string;
  /** Reads an included file (default: Deno.readTextFileSync). */
  readFile?: (path: string) => string;
}

// ---------------------------------------------------------------- lexer

type TokKind = "word" | "string" | "number" | "sym" | "nl" | "eof";

interface Tok {
  kind: TokKind;
  text: string;
  file: string;
  line: number;
}

class ParseError extends Error {
  readonly file: string;
  readonly line: number;
  constructor(tok: { file: string; line: number }, message: string) {
    super(message);
    this.file = tok.file;
    this.line = tok.line;
  }
}

interface Source {
  text: string;
  pos: number;
  line: number;
  file: string;
  /** Macro text: no `$` expansion inside (as vmd). */
  expanding: boolean;
  /** Gave its final newline at end of text already. */
  ended: boolean;
}

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
  "socket",
  "staggered",
  "start",
  "switch",
  "up",
  "vm",
]);

const isDigit = (c: string) => c >= "0" && c <= "9";
const isAlnum = (c: string) => /^[A-Za-z0-9]$/.test(c);
const isPunct = (c: string) => /^[!-\/:-@\[-`{-~]$/.test(c);
/** Characters that may continue an unquoted word. */
const inWord = (c: string) => isAlnum(c) || (isPunct(c) && !"(){}!=#,".includes(c));
/** Characters after which a run of digits is a number. */
const endsNumber = (c: string) => c === "" || /\s/.test(c) || ")},/=".includes(c);

class Lexer {
  readonly macros = new Map<string, string>();
  readonly usedMacros = new Set<string>();
  readonly #stack: Source[] = [];
  readonly #pending: Tok[] = [];
  readonly #read: (path: string) => string;
  #peeked?: Tok;

  constructor(text: string, file: string, read: (path: string) => string) {
    this.#read = read;
    this.#stack.push({ text, pos: 0, line: 1, file, expanding: false, ended: false });
    this.#last = { file, line: 1 };
  }

  /** Continues with `path`'s tokens, then the current file's. */
  include(path: string, from: Tok): void {
    if (this.#stack.filter((s) => !s.expanding).length >= MAX_INCLUDE_DEPTH) {
      throw new ParseError(from, `include "${path}": nested too deep`);
    }
    let text: string;
    try {
      text = this.#read(path);
    } catch (e) {
      throw new ParseError(from, `failed to include file "${path}": ${(e as Error).message}`);
    }
    this.#stack.push({ text, pos: 0, line: 1, file: path, expanding: false, ended: false });
  }

  peek(): Tok {
    this.#peeked ??= this.#lex();
    return this.#peeked;
  }

  /** Braces open at this point of the input (to skip the rest of a broken block). */
  depth = 0;

  next(): Tok {
    const t = this.peek();
    this.#peeked = undefined;
    if (t.kind === "sym" && t.text === "{") this.depth++;
    if (t.kind === "sym" && t.text === "}") this.depth--;
    return t;
  }

  #last: { file: string; line: number };

  #lex(): Tok {
    for (;;) {
      const pending = this.#pending.shift();
      if (pending) return pending;
      const src = this.#stack[this.#stack.length - 1];
      if (!src) return { kind: "eof", text: "", ...this.#last };
      const t = this.#lexFrom(src);
      if (t) {
        this.#last = { file: t.file, line: t.line };
        return t;
      }
    }
  }

  /** One token from `src`, or undefined when `src` ended (it is popped). */
  #lexFrom(src: Source): Tok | undefined {
    const at = (o = 0) => src.text[src.pos + o] ?? "";
    const tok = (kind: TokKind, text: string, line = src.line): Tok => ({
      kind,
      text,
      file: src.file,
      line,
    });
    for (;;) {
      const c = at();
      if (c === " " || c === "\t" || c === "\r") {
        src.pos++;
      } else if (c === "\\" && at(1) === "\n") {
        src.pos += 2;
        src.line++;
      } else if (c === "#") {
        while (at() !== "\n" && at() !== "") src.pos++;
      } else {
        break;
      }
    }
    const c = at();
    if (c === "") {
      if (this.#stack[this.#stack.length - 1] === src) this.#stack.pop();
      // A file that does not end in a newline still ends its last statement.
      if (!src.expanding && !src.ended) return tok("nl", "\n");
      return undefined;
    }
    if (c === "\n") {
      src.pos++;
      src.line++;
      return tok("nl", "\n", src.line - 1);
    }
    if (c === "$" && !src.expanding) {
      src.pos++;
      let name = "";
      while (isAlnum(at()) || at() === "_") name += src.text[src.pos++];
      const value = this.macros.get(name);
      if (value === undefined) throw new ParseError(src, `macro "${name}" not defined`);
      this.usedMacros.add(name);
      const sub: Source = {
        text: value,
        pos: 0,
        line: src.line,
        file: src.file,
        expanding: true,
        ended: true,
      };
      for (;;) {
        const t = this.#lexFrom(sub);
        if (!t) break;
        // A macro's text stands where it is used: its tokens keep that line.
        this.#pending.push({ ...t, line: src.line, file: src.file });
      }
      return this.#pending.shift() ?? this.#lexFrom(src);
    }
    if (c === '"' || c === "'") {
      const startLine = src.line;
      src.pos++;
      let s = "";
      for (;;) {
        const d = at();
        if (d === "") throw new ParseError(src, "reached end of file while parsing quoted string");
        src.pos++;
        if (d === "\n") {
          src.line++;
          continue;
        }
        if (d === "\\") {
          const e = at();
          if (e === c || e === " " || e === "\t") {
            s += e;
            src.pos++;
            continue;
          }
          if (e === "\n") {
            src.pos++;
            src.line++;
            continue;
          }
        }
        if (d === c) break;
        s += d;
      }
      return tok("string", s, startLine);
    }
    if ("{}=,".includes(c)) {
      src.pos++;
      return tok("sym", c);
    }
    if (c === "-" || isDigit(c)) {
      let n = c;
      let p = src.pos + 1;
      while (isDigit(src.text[p] ?? "")) n += src.text[p++];
      if (n !== "-" && endsNumber(src.text[p] ?? "")) {
        src.pos = p;
        return tok("number", n);
      }
    }
    if (isAlnum(c) || c === ":" || c === "_" || c === "/" || c === "-") {
      let w = "";
      while (at() !== "" && inWord(at())) w += src.text[src.pos++];
      return tok("word", w);
    }
    src.pos++;
    throw new ParseError(src, `unexpected character ${JSON.stringify(c)}`);
  }
}

// ---------------------------------------------------------------- parser

interface IfaceDef {
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

interface VmDef {
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
  allowInstance?: number;
  instanceOf?: string;
}

interface SwitchDef {
  name: string;
  iface?: string;
  line: number;
  file: string;
}

type Where = { file: string; line: number };

class VmConfParser {
  readonly lexer: Lexer;
  readonly vms: VmDef[] = [];
  readonly switches: SwitchDef[] = [];
  readonly warnings: string[] = [];
  readonly errors: string[] = [];
  /** Errors inside a vm block drop that VM: the names here. */
  readonly broken = new Set<VmDef>();

  constructor(lexer: Lexer) {
    this.lexer = lexer;
  }

  warn(at: Where, message: string): void {
    this.warnings.push(`${at.file}:${at.line}: ${message}`);
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
      this.#string("an owner");
      this.#expectEol();
      this.warn(
        t,
        "socket owner: not converted: vmmctl has one control socket per VM; " +
          "give each VM an owner instead",
      );
      return;
    }
    if (this.#isWord(t, "staggered")) {
      this.#expectWord("start");
      this.#expectWord("parallel");
      this.#number("a count");
      this.#expectWord("delay");
      this.#number("seconds");
      this.#expectEol();
      this.warn(t, "staggered start: not converted: vmmctl does not start VMs at boot");
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
      this.#string("an address/prefix");
    } else if (this.#isWord(next, "inet6")) {
      if (this.#isWord(this.lexer.peek(), "prefix")) {
        this.lexer.next();
        this.#string("an address/prefix");
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
    const sw: SwitchDef = { name, line: t.line, file: t.file };
    const ok = this.#guardedBlock(() => {
      const o = this.lexer.next();
      if (this.#isWord(o, "enable") || this.#isWord(o, "disable")) return;
      if (this.#isWord(o, "up") || this.#isWord(o, "down")) return;
      if (this.#isWord(o, "group")) return void this.#string("a group name");
      if (this.#isWord(o, "interface")) {
        sw.iface = this.#string("an interface name").text;
        return;
      }
      if (this.#isWord(o, "locked")) return void this.#expectWord("lladdr");
      if (this.#isWord(o, "rdomain")) return void this.#number("a routing domain");
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
    this.#expectSym("{");
    this.#skipNewlines();
    for (;;) {
      const t = this.lexer.peek();
      if (t.kind === "sym" && t.text === "}") {
        this.lexer.next();
        break;
      }
      if (t.kind === "eof") throw new ParseError(t, 'missing "}" at the end of the block');
      option();
      const after = this.lexer.peek();
      if (after.kind === "nl") this.#skipNewlines();
      else if (!(after.kind === "sym" && after.text === "}")) {
        throw new ParseError(after, `unexpected ${this.#describe(after)} after an option`);
      }
    }
    this.#expectEol();
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
    };
    if (!this.#guardedBlock(() => this.#vmOption(vm))) this.broken.add(vm);
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
        const { text } = this.#string("an owner");
        const [user, group] = text.split(":", 2);
        vm.owner = {
          user,
          group: group === undefined || group === "" ? undefined : group,
          line: o.line,
        };
        return;
      }
      case "allow":
        this.#expectWord("instance");
        this.#allowInstance();
        vm.allowInstance = o.line;
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
      const m = /^(\d+)(?:\.(\d+))?\s*([BbKkMmGgTtPpEe]?)$/.exec(t.text);
      if (!m) throw new ParseError(t, `failed to parse size: "${t.text}"`);
      const scale = 1024 ** Math.max(0, "BKMGTPE".indexOf((m[3] || "B").toUpperCase()));
      bytes = Math.floor((Number(m[1]) + Number(`0.${m[2] ?? "0"}`)) * scale);
    } else {
      throw new ParseError(t, `expected a memory size, got ${this.#describe(t)}`);
    }
    const mib = 1024 * 1024;
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

  #allowInstance(): void {
    const flag = () => {
      const f = this.lexer.next();
      if (this.#isWord(f, "owner")) return void this.#string("an owner");
      if (!["boot", "memory", "interface", "disk", "cdrom", "instance"].includes(f.text)) {
        throw new ParseError(f, `unknown instance permission ${this.#describe(f)}`);
      }
    };
    const t = this.lexer.peek();
    if (!(t.kind === "sym" && t.text === "{")) return flag();
    this.lexer.next();
    this.#skipNewlines();
    for (;;) {
      const p = this.lexer.peek();
      if (p.kind === "sym" && p.text === "}") {
        this.lexer.next();
        return;
      }
      if (p.kind === "sym" && p.text === ",") this.lexer.next();
      else if (p.kind === "nl") this.lexer.next();
      else if (p.kind === "eof") throw new ParseError(p, 'missing "}" after allow instance');
      else flag();
    }
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
    const t = this.lexer.peek();
    if (t.kind === "sym" && t.text === "{") {
      this.lexer.next();
      this.#skipNewlines();
      for (;;) {
        const p = this.lexer.peek();
        if (p.kind === "sym" && p.text === "}") {
          this.lexer.next();
          break;
        }
        if (p.kind === "eof") throw new ParseError(p, 'missing "}" after the interface options');
        this.#ifaceOption(iface);
        this.#skipNewlines();
      }
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

// ---------------------------------------------------------------- conversion

/** Parses vm.conf `text` and converts every `vm` block. */
export function importVmConf(text: string, options: ImportOptions): VmConfImport {
  const read = options.readFile ?? ((p: string) => Deno.readTextFileSync(p));
  const lexer = new Lexer(text, options.path, read);
  const parser = new VmConfParser(lexer);
  parser.parse();
  for (const [name] of lexer.macros) {
    if (!lexer.usedMacros.has(name)) {
      parser.warnings.push(`${options.path}: macro "${name}" not used`);
    }
  }
  const result: VmConfImport = { vms: [], warnings: parser.warnings, errors: parser.errors };
  const byName = new Map<string, VmDef>();
  for (const vm of parser.vms) {
    if (parser.broken.has(vm)) continue;
    if (byName.has(vm.name)) {
      result.errors.push(`${vm.file}:${vm.line}: vm "${vm.name}" defined more than once`);
      continue;
    }
    byName.set(vm.name, vm);
  }
  const switches = new Map(parser.switches.map((s) => [s.name, s]));
  for (const vm of byName.values()) {
    const def = vm.instanceOf ? mergeInstance(vm, byName, result) : vm;
    if (!def) continue;
    const notes: string[] = [];
    const converted = convert(def, vm, switches, notes);
    const check = parseConfig(converted.toml, { baseDir: dirname(vm.file), checkFiles: false });
    if (!check.config) {
      for (const e of check.errors) {
        result.errors.push(`${vm.file}:${vm.line}: vm "${vm.name}": ${e.path}: ${e.message}`);
      }
      continue;
    }
    result.warnings.push(...notes);
    result.vms.push({ name: vm.name, file: vm.file, line: vm.line, ...converted });
  }
  return result;
}

/** An instance: the parent's settings, overridden by the instance's own. */
function mergeInstance(
  vm: VmDef,
  byName: Map<string, VmDef>,
  result: VmConfImport,
): VmDef | undefined {
  const parent = byName.get(vm.instanceOf!);
  if (!parent) {
    result.errors.push(
      `${vm.file}:${vm.line}: vm "${vm.name}" is an instance of "${vm.instanceOf}", ` +
        "which is not defined",
    );
    return undefined;
  }
  result.warnings.push(
    `${vm.file}:${vm.line}: vm "${vm.name}": instance of "${parent.name}" converted as a copy ` +
      "of its settings with the instance's own on top (vmmctl has no instances)",
  );
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
): { config: VmConfig; toml: string } {
  const where = (line: number) => `${at.file}:${line}: vm "${at.name}"`;
  const notes: string[] = [];
  const note = (line: number, message: string) => {
    warnings.push(`${where(line)}: ${message}`);
    notes.push(message);
  };
  let kernel = def.boot?.path;
  if (kernel === undefined) {
    kernel = VMD_BIOS_PATH;
    note(
      def.line,
      `no "boot" line: vmd would boot its BIOS (${VMD_BIOS_PATH}), which vmmctl cannot run; ` +
        "set boot.kernel to a kernel image",
    );
  }
  if (def.bootDevice) {
    note(
      def.bootDevice.line,
      `boot device ${def.bootDevice.device}: not converted: vmmctl boots boot.kernel directly`,
    );
  }
  if (def.cdrom) {
    note(
      def.cdrom.line,
      `cdrom "${def.cdrom.path}": not converted: vmmctl has no CD-ROM device yet`,
    );
  }
  if (def.allowInstance !== undefined) {
    note(def.allowInstance, "allow instance: not converted: vmmctl has no instances");
  }
  if (def.enabled) {
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
    boot: { kernel, cmdline: "" },
    disks: def.disks.map((d) => ({ path: d.path, format: d.format ?? "auto", readonly: false })),
    interfaces,
    console: { serial: "stdio" },
    debug: {},
  };
  const header = [
    `# Imported from ${at.file}:${at.line} (vm "${at.name}") by vmmctl import.`,
    ...(def.enabled ? [] : ["# Disabled in vm.conf."]),
    ...notes.map((n) => `# Note: ${n}`),
    "",
  ];
  return { config, toml: header.join("\n") + normalizedToml(config) };
}
