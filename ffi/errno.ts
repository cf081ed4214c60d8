/**
 * errno numbers, names and messages for Linux and OpenBSD (they agree on 1-34
 * except where noted, and differ above).
 *
 * @example
 * ```ts
 * import { errnoName, errnoMessage } from "./errno.ts";
 * errnoName(13, "linux"); // "EACCES"
 * errnoMessage(13, "linux"); // "Permission denied"
 * ```
 * @module
 */

/** The operating systems whose errno tables we know. */
export type ErrnoOs = "linux" | "openbsd";

const COMMON: [string, number, string][] = [
  ["EPERM", 1, "Operation not permitted"],
  ["ENOENT", 2, "No such file or directory"],
  ["ESRCH", 3, "No such process"],
  ["EINTR", 4, "Interrupted system call"],
  ["EIO", 5, "Input/output error"],
  ["ENXIO", 6, "No such device or address"],
  ["E2BIG", 7, "Argument list too long"],
  ["ENOEXEC", 8, "Exec format error"],
  ["EBADF", 9, "Bad file descriptor"],
  ["ECHILD", 10, "No child processes"],
  ["ENOMEM", 12, "Cannot allocate memory"],
  ["EACCES", 13, "Permission denied"],
  ["EFAULT", 14, "Bad address"],
  ["ENOTBLK", 15, "Block device required"],
  ["EBUSY", 16, "Device or resource busy"],
  ["EEXIST", 17, "File exists"],
  ["EXDEV", 18, "Invalid cross-device link"],
  ["ENODEV", 19, "No such device"],
  ["ENOTDIR", 20, "Not a directory"],
  ["EISDIR", 21, "Is a directory"],
  ["EINVAL", 22, "Invalid argument"],
  ["ENFILE", 23, "Too many open files in system"],
  ["EMFILE", 24, "Too many open files"],
  ["ENOTTY", 25, "Inappropriate ioctl for device"],
  ["ETXTBSY", 26, "Text file busy"],
  ["EFBIG", 27, "File too large"],
  ["ENOSPC", 28, "No space left on device"],
  ["ESPIPE", 29, "Illegal seek"],
  ["EROFS", 30, "Read-only file system"],
  ["EMLINK", 31, "Too many links"],
  ["EPIPE", 32, "Broken pipe"],
  ["EDOM", 33, "Numerical argument out of domain"],
  ["ERANGE", 34, "Numerical result out of range"],
];

const LINUX: [string, number, string][] = [
  ["EAGAIN", 11, "Resource temporarily unavailable"],
  ["EDEADLK", 35, "Resource deadlock avoided"],
  ["ENAMETOOLONG", 36, "File name too long"],
  ["ENOLCK", 37, "No locks available"],
  ["ENOSYS", 38, "Function not implemented"],
  ["ENOTEMPTY", 39, "Directory not empty"],
  ["ELOOP", 40, "Too many levels of symbolic links"],
  ["EOVERFLOW", 75, "Value too large for defined data type"],
  ["ENOTSOCK", 88, "Socket operation on non-socket"],
  ["EOPNOTSUPP", 95, "Operation not supported"],
  ["EADDRINUSE", 98, "Address already in use"],
  ["ETIMEDOUT", 110, "Connection timed out"],
  ["ECONNREFUSED", 111, "Connection refused"],
  ["EALREADY", 114, "Operation already in progress"],
  ["EINPROGRESS", 115, "Operation now in progress"],
];

const OPENBSD: [string, number, string][] = [
  ["EDEADLK", 11, "Resource deadlock avoided"],
  ["EAGAIN", 35, "Resource temporarily unavailable"],
  ["EINPROGRESS", 36, "Operation now in progress"],
  ["EALREADY", 37, "Operation already in progress"],
  ["ENOTSOCK", 38, "Socket operation on non-socket"],
  ["EOPNOTSUPP", 45, "Operation not supported"],
  ["EADDRINUSE", 48, "Address already in use"],
  ["ETIMEDOUT", 60, "Operation timed out"],
  ["ECONNREFUSED", 61, "Connection refused"],
  ["ELOOP", 62, "Too many levels of symbolic links"],
  ["ENAMETOOLONG", 63, "File name too long"],
  ["ENOTEMPTY", 66, "Directory not empty"],
  ["ENOLCK", 77, "No locks available"],
  ["ENOSYS", 78, "Function not implemented"],
  ["EOVERFLOW", 87, "Value too large to be stored in data type"],
];

type Table = { byNumber: Map<number, [string, string]>; byName: Map<string, number> };

function build(rows: [string, number, string][]): Table {
  const byNumber = new Map<number, [string, string]>();
  const byName = new Map<string, number>();
  for (const [name, n, msg] of [...COMMON, ...rows]) {
    byNumber.set(n, [name, msg]);
    byName.set(name, n);
  }
  return { byNumber, byName };
}

const TABLES: Record<ErrnoOs, Table> = { linux: build(LINUX), openbsd: build(OPENBSD) };

/** The errno table of the running system (Linux's elsewhere). */
export function hostErrnoOs(): ErrnoOs {
  return Deno.build.os === "openbsd" as string ? "openbsd" : "linux";
}

/** `EACCES` for 13; `E<n>` for numbers we do not know. */
export function errnoName(errno: number, os: ErrnoOs = hostErrnoOs()): string {
  return TABLES[os].byNumber.get(errno)?.[0] ?? `E${errno}`;
}

/** strerror-like text; `Unknown error n` for numbers we do not know. */
export function errnoMessage(errno: number, os: ErrnoOs = hostErrnoOs()): string {
  return TABLES[os].byNumber.get(errno)?.[1] ?? `Unknown error ${errno}`;
}

/** The number of `name` on `os`; throws for unknown names (a bug of ours). */
export function errnoNumber(name: string, os: ErrnoOs = hostErrnoOs()): number {
  const n = TABLES[os].byName.get(name);
  if (n === undefined) throw new Error(`Unknown errno name "${name}" for ${os}`);
  return n;
}

/**
 * A failed system call: names the call (for ioctls the request's name),
 * and errno by name and message.
 *
 * `new SyscallError("KVM_CREATE_VM", 13).message` is
 * `KVM_CREATE_VM failed: EACCES (Permission denied)`.
 */
export class SyscallError extends Error {
  /** The call, or for an ioctl the request's name. */
  readonly call: string;
  readonly errno: number;
  readonly code: string;
  constructor(call: string, errno: number, os: ErrnoOs = hostErrnoOs(), detail?: string) {
    super(
      `${call} failed: ${errnoName(errno, os)} (${errnoMessage(errno, os)})` +
        (detail ? `: ${detail}` : ""),
    );
    this.name = "SyscallError";
    this.call = call;
    this.errno = errno;
    this.code = errnoName(errno, os);
  }
}

/** A failed ioctl, named by its request. */
export class IoctlError extends SyscallError {
  readonly request: number;
  constructor(requestName: string, request: number, errno: number, os: ErrnoOs = hostErrnoOs()) {
    super(requestName, errno, os);
    this.name = "IoctlError";
    this.request = request;
  }
}
