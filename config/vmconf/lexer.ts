/**
 * The lexer of vm.conf(5): tokens (words, quoted strings, numbers, `{ } = ,`,
 * newlines) from a stack of sources, so that `include` continues with another
 * file and `$name` expands a macro in place. Comments, quoting and line
 * continuation follow vmd's parse.y; macro text is not expanded again.
 *
 * @module
 */

/** Deepest `include` nesting accepted. */
const MAX_INCLUDE_DEPTH = 16;

/** What a token is. */
export type TokKind = "word" | "string" | "number" | "sym" | "nl" | "eof";

/** One token, with where it was read. */
export interface Tok {
  kind: TokKind;
  text: string;
  file: string;
  line: number;
}

/** A syntax or semantic error at a place in the input. */
export class ParseError extends Error {
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

const isDigit = (c: string) => c >= "0" && c <= "9";
const isAlnum = (c: string) => /^[A-Za-z0-9]$/.test(c);
const isPunct = (c: string) => /^[!-\/:-@\[-`{-~]$/.test(c);
/** Characters that may continue an unquoted word. */
const inWord = (c: string) => isAlnum(c) || (isPunct(c) && !"(){}!=#,".includes(c));
/** Characters after which a run of digits is a number. */
const endsNumber = (c: string) => c === "" || /\s/.test(c) || ")},/=".includes(c);

/** Tokens of a vm.conf file and the files it includes. */
export class Lexer {
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
