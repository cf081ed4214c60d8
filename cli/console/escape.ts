/**
 * The console escape, like cu(1) and vmctl's console: `~.` at the start of a
 * line detaches; `~~` sends one `~`; any other `~x` sends both bytes.
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
const CR = 0x0d;
const LF = 0x0a;

/** Splits console input into bytes for the guest and a detach request. */
export class EscapeReader {
  #lineStart = true;
  #pendingTilde = false;

  /** Processes `input`; after `detach` is true, the rest of `input` is dropped. */
  feed(input: Uint8Array): { forward: Uint8Array; detach: boolean } {
    const out: number[] = [];
    for (const b of input) {
      if (this.#pendingTilde) {
        this.#pendingTilde = false;
        if (b === DOT) return { forward: new Uint8Array(out), detach: true };
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
    return { forward: new Uint8Array(out), detach: false };
  }
}
