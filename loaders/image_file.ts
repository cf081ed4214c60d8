/**
 * Reading a kernel or initrd file with its size bounded before a byte is
 * read: the file is stat()ed first, anything but a regular file (a FIFO, a
 * device, a socket) is refused without being opened, and a file larger than
 * the guest's RAM is refused without being read (it could not be loaded). A
 * file that yields more bytes than stat() said (a /proc or /sys file reports
 * size 0 whatever it holds) is refused too, after at most its stated size + 1.
 *
 * @example
 * ```ts
 * import { readImageFile } from "./image_file.ts";
 * const kernel = readImageFile("vmlinuz", 256 * 2 ** 20, "kernel");
 * ```
 * @module
 */

import { formatBytes, LoaderError } from "./common.ts";

/** What kind of file `info` describes, for messages. */
export function fileKind(info: Deno.FileInfo): string {
  if (info.isFile) return "regular file";
  if (info.isDirectory) return "directory";
  if (info.isFifo) return "FIFO";
  if (info.isSocket) return "socket";
  if (info.isCharDevice) return "character device";
  if (info.isBlockDevice) return "block device";
  return "special file";
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The bytes of `path`, at most `maxBytes` of them. `what` ("kernel",
 * "initrd") starts every error message; every failure is a {@link LoaderError}.
 */
export function readImageFile(path: string, maxBytes: number, what: string): Uint8Array {
  const prefix = `${what} ${JSON.stringify(path)}`;
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (e) {
    throw new LoaderError(`${prefix}: ${reason(e)}`, { cause: e });
  }
  if (!info.isFile) {
    throw new LoaderError(`${prefix} is a ${fileKind(info)}, not a regular file; refused`);
  }
  if (info.size > maxBytes) {
    throw new LoaderError(
      `${prefix} is ${formatBytes(info.size)}, more than guest RAM (${formatBytes(maxBytes)}): ` +
        "it cannot be loaded",
    );
  }
  if (info.size === 0) {
    throw new LoaderError(
      `${prefix} is empty (or a /proc or /sys file, whose size says nothing); refused`,
    );
  }
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    throw new LoaderError(`${prefix}: ${reason(e)}`, { cause: e });
  }
  try {
    // Checked again on the open file: the path may have been swapped since stat().
    const opened = file.statSync();
    if (!opened.isFile || opened.size !== info.size) {
      throw new LoaderError(`${prefix} changed while being opened; refused`);
    }
    // One byte more than stat() promised tells a growing or special file apart.
    const buf = new Uint8Array(info.size + 1);
    let n = 0;
    while (n < buf.length) {
      let got: number | null;
      try {
        got = file.readSync(buf.subarray(n));
      } catch (e) {
        throw new LoaderError(`${prefix}: ${reason(e)}`, { cause: e });
      }
      if (got === null || got === 0) break;
      n += got;
    }
    if (n > info.size) {
      throw new LoaderError(
        `${prefix} holds more than the ${info.size} bytes stat() reports; refused`,
      );
    }
    if (n < info.size) {
      throw new LoaderError(`${prefix} shrank while being read (${n} of ${info.size} bytes)`);
    }
    return buf.subarray(0, n);
  } finally {
    file.close();
  }
}
