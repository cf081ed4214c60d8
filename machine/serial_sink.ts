/**
 * Where a VM's COM1 output goes: the terminal, a file, or nowhere — always
 * written synchronously so nothing is lost when the VM ends.
 *
 * @module
 */

/** The console choice, as the config normalizes it. */
export interface SerialTarget {
  serial: "stdio" | "pty" | "none" | "file";
  path?: string;
  /** Translate "\n" to "\r\n" (the terminal is in raw mode, like a tty's ONLCR). */
  crlf?: boolean;
}

function writeAll(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
}

/** Inserts "\r" before every "\n" not already preceded by one (across calls). */
export function addCr(bytes: Uint8Array, prev: { last: number }): Uint8Array {
  const out: number[] = [];
  let last = prev.last;
  for (const b of bytes) {
    if (b === 0x0a && last !== 0x0d) out.push(0x0d);
    out.push(b);
    last = b;
  }
  prev.last = last;
  return out.length === bytes.length ? bytes : new Uint8Array(out);
}

/** A synchronous byte sink for `target`; `close()` releases a file. */
export function openSerialSink(
  target: SerialTarget,
): { write: (bytes: Uint8Array) => void; close: () => void } {
  const prev = { last: 0 };
  switch (target.serial) {
    case "stdio":
      return {
        write: (b) => writeAll(Deno.stdout, target.crlf ? addCr(b, prev) : b),
        close: () => {},
      };
    case "file": {
      const f = Deno.openSync(target.path!, { write: true, create: true, append: true });
      return { write: (b) => writeAll(f, b), close: () => f.close() };
    }
    case "pty":
    case "none":
      return { write: () => {}, close: () => {} };
  }
}
