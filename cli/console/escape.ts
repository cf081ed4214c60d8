/**
 * The console escapes of cu(1), which vmctl's console runs: at the start of a
 * line `~.` and `~^D` detach, `~#` asks for a break, `~?` for the list of
 * escapes; `~~` sends one `~`; any other `~x` sends both bytes.
 *
 * @example
 * ```ts
 * import { EscapeReader } from "./escape.ts";
 * const e = new EscapeReader();
 * e.feed(new TextEncoder().encode("ls\r~.")); // { forward: "ls\r" bytes, detach: true }
 * ```
 * @module
 */

const TILDE = 0x7e;
const DOT = 0x2e;
const CTRL_D = 0x04;
const HASH = 0x23;
const QUESTION = 0x3f;

/** What `~?` prints. */
export const ESCAPE_HELP = [
  "~.   detach",
  "~^D  detach",
  "~#   send a break (not supported: the console reports it)",
  "~?   this list",
  "~~   send one ~",
].join("\r\n");

/** What one {@link EscapeReader.feed} found. */
export interface EscapeResult {
  /** Bytes for the guest. */
  forward: Uint8Array;
  /** `~.` or `~^D`: the rest of the input is dropped. */
  detach: boolean;
  /** `~?` was typed. */
  help?: boolean;
  /** `~#` was typed. */
  brk?: boolean;
}
const CR = 0x0d;
const LF = 0x0a;

/** Splits console input into bytes for the guest and a detach request. */
export class EscapeReader {
  #lineStart = true;
  #pendingTilde = false;

  /** Processes `input`; after `detach` is true, the rest of `input` is dropped. */
  feed(input: Uint8Array): EscapeResult {
    const out: number[] = [];
    const result: EscapeResult = { forward: new Uint8Array(), detach: false };
    for (const b of input) {
      if (this.#pendingTilde) {
        this.#pendingTilde = false;
        if (b === DOT || b === CTRL_D) {
          result.detach = true;
          break;
        }
        if (b === QUESTION) {
          result.help = true;
          continue;
        }
        if (b === HASH) {
          result.brk = true;
          continue;
        }
        if (b !== TILDE) out.push(TILDE);
        out.push(b);
        this.#lineStart = b === CR || b === LF;
        continue;
      }
      if (this.#lineStart && b === TILDE) {
        this.#pendingTilde = true;
        continue;
      }
      out.push(b);
      this.#lineStart = b === CR || b === LF;
    }
    result.forward = new Uint8Array(out);
    return result;
  }
}
