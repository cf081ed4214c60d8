/**
 * Line numbers for TOML keys. smol-toml returns values without positions, so
 * this scans the (already syntax-checked) text once more, tracking table
 * headers, `[[array]]` occurrence counts, dotted keys, inline tables and
 * arrays, and records the line where each key path first appears.
 *
 * Paths are written the way error messages show them: `vm.memory`,
 * `disk[1].path`, with `[n]` for array entries (0-based) and JSON quotes
 * around key segments that are not bare TOML keys.
 *
 * @example
 * ```ts
 * import { findKeyLines } from "./key_lines.ts";
 * const lines = findKeyLines('[vm]\nname = "x"\n[[disk]]\n[[disk]]\npath = "a"\n');
 * lines.get("vm.name"); // 2
 * lines.get("disk[1].path"); // 5
 * ```
 * @module
 */

/** One step of a key path: a key (string) or an array index (number). */
export type PathSegment = string | number;

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

/**
 * Formats a key path for messages: `["disk", 1, "path"]` -> `disk[1].path`.
 * Keys that are not bare TOML keys are JSON-quoted: `["vm", "a b"]` -> `vm."a b"`.
 */
export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") {
      out += `[${segment}]`;
    } else {
      const key = BARE_KEY.test(segment) ? segment : JSON.stringify(segment);
      out += out === "" ? key : `.${key}`;
    }
  }
  return out;
}

/**
 * Maps every key path in `text` (tables, keys, array entries) to the 1-based
 * line where it first appears. Meant for text that smol-toml accepted; on
 * anything else it returns what it found so far and never throws.
 */
export function findKeyLines(text: string): Map<string, number> {
  const scanner = new KeyLineScanner(text);
  try {
    scanner.scanDocument();
  } catch (e) {
    // Only our own ScanStop ends a scan early; anything else is a bug.
    if (!(e instanceof ScanStop)) throw e;
  }
  return scanner.lines;
}

/** Thrown inside the scanner when the text is not what valid TOML would be. */
class ScanStop extends Error {}

class KeyLineScanner {
  readonly lines = new Map<string, number>();
  #text: string;
  #pos = 0;
  #lineStarts: number[] = [0];
  /** How many `[[name]]` headers were seen, by resolved path of the array. */
  #arrayCounts = new Map<string, number>();

  constructor(text: string) {
    this.#text = text;
    for (let i = 0; i < text.length; i++) {
      if (text[i] === "\n") this.#lineStarts.push(i + 1);
    }
  }

  scanDocument(): void {
    let table: PathSegment[] = [];
    for (;;) {
      this.#skipBlank(true);
      if (this.#pos >= this.#text.length) return;
      const line = this.#lineAt(this.#pos);
      if (this.#text.startsWith("[[", this.#pos)) {
        this.#pos += 2;
        const key = this.#readKey();
        this.#expect("]]");
        const arrayPath = [...this.#resolve(key.slice(0, -1)), key[key.length - 1]];
        const name = formatPath(arrayPath);
        const index = this.#arrayCounts.get(name) ?? 0;
        this.#arrayCounts.set(name, index + 1);
        table = [...arrayPath, index];
        this.#record(arrayPath, line);
        this.#record(table, line);
      } else if (this.#text[this.#pos] === "[") {
        this.#pos += 1;
        table = this.#resolve(this.#readKey());
        this.#expect("]");
        this.#record(table, line);
      } else {
        this.#readKeyValue(table);
      }
    }
  }

  /** Inserts the current index after every prefix that names an array of tables. */
  #resolve(key: string[]): PathSegment[] {
    const out: PathSegment[] = [];
    for (const segment of key) {
      out.push(segment);
      const count = this.#arrayCounts.get(formatPath(out));
      if (count !== undefined) out.push(count - 1);
    }
    return out;
  }

  #record(path: readonly PathSegment[], line: number): void {
    const name = formatPath(path);
    if (!this.lines.has(name)) this.lines.set(name, line);
  }

  #readKeyValue(prefix: PathSegment[]): void {
    const line = this.#lineAt(this.#pos);
    const key = this.#readKey();
    this.#skipBlank(false);
    this.#expect("=");
    this.#skipBlank(false);
    const path = [...prefix, ...key];
    // Dotted keys define their intermediate tables on this line too.
    for (let i = 1; i < key.length; i++) this.#record([...prefix, ...key.slice(0, i)], line);
    this.#record(path, line);
    this.#readValue(path);
  }

  #readValue(path: PathSegment[]): void {
    const text = this.#text;
    const ch = text[this.#pos];
    if (ch === undefined) throw new ScanStop();
    if (text.startsWith('"""', this.#pos) || text.startsWith("'''", this.#pos)) {
      this.#skipMultilineString(ch);
    } else if (ch === '"' || ch === "'") {
      this.#readQuoted();
    } else if (ch === "{") {
      this.#pos += 1;
      for (;;) {
        this.#skipBlank(true);
        if (text[this.#pos] === "}") break;
        this.#readKeyValue(path);
        this.#skipBlank(true);
        if (text[this.#pos] === ",") this.#pos += 1;
        else if (text[this.#pos] !== "}") throw new ScanStop();
      }
      this.#pos += 1;
    } else if (ch === "[") {
      this.#pos += 1;
      for (let index = 0;; index++) {
        this.#skipBlank(true);
        if (text[this.#pos] === "]") break;
        const entry = [...path, index];
        this.#record(entry, this.#lineAt(this.#pos));
        this.#readValue(entry);
        this.#skipBlank(true);
        if (text[this.#pos] === ",") this.#pos += 1;
        else if (text[this.#pos] !== "]") throw new ScanStop();
      }
      this.#pos += 1;
    } else {
      // Numbers, booleans, dates (which may contain a space): up to a delimiter.
      const start = this.#pos;
      while (this.#pos < text.length && !",]}#\r\n".includes(text[this.#pos])) this.#pos += 1;
      if (this.#pos === start) throw new ScanStop();
    }
  }

  /** Reads a possibly dotted key: bare or quoted segments separated by dots. */
  #readKey(): string[] {
    const segments: string[] = [];
    for (;;) {
      this.#skipBlank(false);
      const ch = this.#text[this.#pos];
      if (ch === '"' || ch === "'") {
        segments.push(this.#readQuoted());
      } else {
        const start = this.#pos;
        while (this.#pos < this.#text.length && /[A-Za-z0-9_-]/.test(this.#text[this.#pos])) {
          this.#pos += 1;
        }
        if (this.#pos === start) throw new ScanStop();
        segments.push(this.#text.slice(start, this.#pos));
      }
      this.#skipBlank(false);
      if (this.#text[this.#pos] !== ".") return segments;
      this.#pos += 1;
    }
  }

  /** Reads a one-line basic or literal string and returns its value. */
  #readQuoted(): string {
    const text = this.#text;
    const quote = text[this.#pos];
    const start = this.#pos;
    this.#pos += 1;
    while (this.#pos < text.length && text[this.#pos] !== quote) {
      if (quote === '"' && text[this.#pos] === "\\") this.#pos += 1;
      if (text[this.#pos] === "\n") throw new ScanStop();
      this.#pos += 1;
    }
    if (this.#pos >= text.length) throw new ScanStop();
    this.#pos += 1;
    const raw = text.slice(start, this.#pos);
    if (quote === "'") return raw.slice(1, -1);
    try {
      // TOML's escapes are JSON's plus \e, \xHH and \UXXXXXXXX; those rare ones fall back to raw.
      return JSON.parse(raw) as string;
    } catch {
      return raw.slice(1, -1);
    }
  }

  #skipMultilineString(quote: string): void {
    const text = this.#text;
    const delimiter = quote.repeat(3);
    this.#pos += 3;
    for (;;) {
      if (this.#pos >= text.length) throw new ScanStop();
      if (quote === '"' && text[this.#pos] === "\\") {
        this.#pos += 2;
      } else if (text.startsWith(delimiter, this.#pos)) {
        // Up to two more quotes may close the string as content: """a"""""
        let end = this.#pos + 3;
        while (end < text.length && end < this.#pos + 5 && text[end] === quote) end += 1;
        this.#pos = end;
        return;
      } else {
        this.#pos += 1;
      }
    }
  }

  /** Skips spaces, tabs and comments; newlines too when `newlines`. */
  #skipBlank(newlines: boolean): void {
    const text = this.#text;
    while (this.#pos < text.length) {
      const ch = text[this.#pos];
      if (ch === " " || ch === "\t") {
        this.#pos += 1;
      } else if (newlines && (ch === "\n" || ch === "\r")) {
        this.#pos += 1;
      } else if (newlines && ch === "#") {
        while (this.#pos < text.length && text[this.#pos] !== "\n") this.#pos += 1;
      } else {
        return;
      }
    }
  }

  #expect(token: string): void {
    if (!this.#text.startsWith(token, this.#pos)) throw new ScanStop();
    this.#pos += token.length;
  }

  /** 1-based line of a text offset (binary search over line starts). */
  #lineAt(offset: number): number {
    let low = 0;
    let high = this.#lineStarts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.#lineStarts[mid] <= offset) low = mid;
      else high = mid - 1;
    }
    return low + 1;
  }
}
