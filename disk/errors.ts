/**
 * Typed errors of the disk image back-ends.
 *
 * Every failure a disk image reports is a {@linkcode DiskError}, so the
 * block device can catch that one class and answer the guest with an I/O
 * error status while anything else (our own bugs) still throws through.
 *
 * @example
 * ```ts
 * import { DiskError, DiskRangeError } from "./errors.ts";
 * const e = new DiskRangeError("disk.img", 4096, 512, 4096);
 * e instanceof DiskError; // true
 * ```
 * @module
 */

/** Base class of every error a disk image throws. */
export class DiskError extends Error {
  /** Path of the image the error is about. */
  readonly path: string;
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DiskError";
    this.path = path;
  }
}

/** A read or write outside `[0, sizeBytes)` of the image (the device answers IOERR). */
export class DiskRangeError extends DiskError {
  readonly offset: number;
  readonly length: number;
  readonly sizeBytes: number;
  constructor(path: string, offset: number, length: number, sizeBytes: number) {
    super(
      path,
      `Access of ${length} bytes at offset ${offset} is outside disk image "${path}" ` +
        `(${sizeBytes} bytes)`,
    );
    this.name = "DiskRangeError";
    this.offset = offset;
    this.length = length;
    this.sizeBytes = sizeBytes;
  }
}

/** A write to an image opened read-only, or to bytes we refuse to change. */
export class DiskReadOnlyError extends DiskError {
  constructor(path: string, message = `Disk image "${path}" is open read-only`) {
    super(path, message);
    this.name = "DiskReadOnlyError";
  }
}

/** The image cannot be opened or created: missing, permissions, wrong file type, locked, exists. */
export class DiskOpenError extends DiskError {
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(path, message, options);
    this.name = "DiskOpenError";
  }
}

/** The image's contents are invalid, corrupt, or use a feature we do not support. */
export class DiskFormatError extends DiskError {
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(path, message, options);
    this.name = "DiskFormatError";
  }
}

/** A host I/O failure (EIO, ENOSPC, unexpected end of file, ...). */
export class DiskIoError extends DiskError {
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(path, message, options);
    this.name = "DiskIoError";
  }
}

/**
 * Checks that `[offset, offset + length)` lies inside an image of `sizeBytes`.
 *
 * @throws {DiskRangeError} when it does not (or the numbers are not integers)
 */
export function checkDiskRange(
  path: string,
  offset: number,
  length: number,
  sizeBytes: number,
): void {
  if (
    !Number.isSafeInteger(offset) || offset < 0 || length > sizeBytes || offset > sizeBytes - length
  ) {
    throw new DiskRangeError(path, offset, length, sizeBytes);
  }
}
