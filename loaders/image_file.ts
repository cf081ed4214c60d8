/**
 * The host files a VM reads or writes, checked before use. Reading a kernel
 * or initrd file ({@link readImageFile}) with its size bounded before a byte is
 * read: the file is stat()ed first, anything but a regular file (a FIFO, a
 * device, a socket) is refused without being opened, and a file larger than
 * the guest's RAM is refused without being read (it could not be loaded). A
 * file that yields more bytes than stat() said (a /proc or /sys file reports
 * size 0 whatever it holds) is refused too, after at most its stated size + 1.
 * The console file ({@link serialFileProblem}): one rule for the config check
 * and for the sink that opens it when the VM starts.
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

/**
 * Why `path` cannot take console output, or undefined when it can: it must
 * be a regular file (or not exist yet, it is then created) or a character
 * device such as /dev/null. A FIFO would block the vCPU whenever nobody reads
 * it (its very open() blocks until a reader comes), a socket cannot be opened,
 * a symlink loop or an unreadable folder never resolves.
 */
export function serialFileProblem(path: string): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    if (e instanceof Deno.errors.FilesystemLoop) return "is a loop of symbolic links";
    if (e instanceof Deno.errors.PermissionDenied) return "cannot be reached (permission denied)";
    if (e instanceof Deno.errors.NotADirectory) return "has a part that is not a folder";
    return `cannot be opened: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (info.isFile || info.isCharDevice) return undefined;
  if (info.isDirectory) return "is a directory";
  if (info.isFifo) {
    return "is a FIFO: the VM would block whenever nobody reads it; use a regular file " +
      'or serial = "pty"';
  }
  return info.isSocket ? "is a socket, not a file" : "is not a regular file";
}
