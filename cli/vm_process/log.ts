/**
 * The VM process's log file: vmmctl's messages and a copy of the console,
 * bounded in size.
 *
 * @module
 */

/** A log file is rotated to `NAME.log.1` past this size (the log stays bounded). */
export const LOG_MAX_BYTES = 1024 * 1024;

/** An append-only log with a size bound: past it, the file moves to `.1` and starts over. */
export class VmLog {
  readonly path: string;
  #file: Deno.FsFile;
  #size: number;
  #atLineStart = true;

  constructor(path: string) {
    this.path = path;
    this.#file = this.#open();
    this.#size = this.#file.statSync().size;
  }

  #open(): Deno.FsFile {
    return Deno.openSync(this.path, { append: true, create: true, mode: 0o640 });
  }

  /** A vmmctl message on a line of its own. */
  message(text: string): void {
    const prefix = this.#atLineStart ? "" : "\n";
    this.#write(new TextEncoder().encode(`${prefix}${new Date().toISOString()} vmmctl: ${text}\n`));
    this.#atLineStart = true;
  }

  /** A copy of console output. */
  console(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#write(bytes);
    this.#atLineStart = bytes[bytes.length - 1] === 0x0a;
  }

  #write(bytes: Uint8Array): void {
    if (this.#size + bytes.length > LOG_MAX_BYTES && this.#size > 0) {
      this.#file.close();
      Deno.renameSync(this.path, `${this.path}.1`);
      this.#file = this.#open();
      this.#size = 0;
    }
    let off = 0;
    while (off < bytes.length) off += this.#file.writeSync(bytes.subarray(off));
    this.#size += bytes.length;
  }

  close(): void {
    this.#file.close();
  }
}
