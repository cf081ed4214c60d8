/**
 * What a `serial = "file:PATH"` console may be: one rule for the config
 * check and for the console sink that opens it when the VM starts.
 *
 * @module
 */

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
