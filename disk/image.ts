/**
 * The disk image contract the block device uses, and {@linkcode openDiskImage}
 * which picks the back-end (raw or qcow2) for a file.
 *
 * Calls are synchronous: the vCPU thread makes them, one request at a time.
 * Every failure is a {@linkcode DiskError}; the device turns it into
 * VIRTIO_BLK_S_IOERR.
 *
 * @example
 * ```ts
 * import { openDiskImage } from "./image.ts";
 * const disk = openDiskImage("disk.qcow2", { format: "auto", readonly: false });
 * const sector = new Uint8Array(512);
 * disk.read(0, sector);
 * disk.write(512, sector);
 * disk.flush();
 * disk.close();
 * ```
 * @module
 */

import { ImageFile, probeFormat } from "./file.ts";
import { Qcow2Image } from "./qcow2.ts";
import type { BackingPolicy } from "./qcow2_backing.ts";

export { type BackingPolicy, backingPolicyFor } from "./qcow2_backing.ts";
import { RawImage } from "./raw.ts";

export {
  checkDiskRange,
  DiskError,
  DiskFormatError,
  DiskIoError,
  DiskOpenError,
  DiskRangeError,
  DiskReadOnlyError,
} from "./errors.ts";

/** Image formats we read and write. */
export type DiskImageFormat = "raw" | "qcow2";

/** An open virtual disk. */
export interface DiskImage {
  /** Virtual size in bytes (what the guest sees). */
  readonly sizeBytes: number;
  /** Whether writes are refused. */
  readonly readonly: boolean;
  /** The on-disk format. */
  readonly format: DiskImageFormat;
  /**
   * Fills `into` with the bytes at `offset`.
   *
   * @throws {DiskRangeError} when `[offset, offset + into.length)` is outside the disk
   */
  read(offset: number, into: Uint8Array): void;
  /**
   * Writes `data` at `offset`. Durable after the next {@linkcode flush}.
   *
   * @throws {DiskReadOnlyError} on a read-only image
   * @throws {DiskRangeError} when `[offset, offset + data.length)` is outside the disk
   */
  write(offset: number, data: Uint8Array): void;
  /** Writes cached metadata and makes every completed write durable (fdatasync). */
  flush(): void;
  /** Flushes (when writable) and closes the image and its backing files. Idempotent. */
  close(): void;
}

/** Options of {@linkcode openDiskImage}. */
export interface OpenDiskOptions {
  /** `auto` detects qcow2 by its magic ("QFI\xfb") and takes anything else as raw. */
  format: "auto" | DiskImageFormat;
  readonly: boolean;
  /** Who may open which backing files (default: whatever this process can open). */
  backing?: BackingPolicy;
}

/**
 * Opens a disk image (regular file or block device).
 *
 * @throws {DiskOpenError} when the file is missing, not accessible, not a
 * regular file or block device, or in use by another vmmctl
 * @throws {DiskFormatError} when a qcow2 image is invalid or uses a feature
 * we do not support (the message names it), or its backing chain loops
 * @throws {DiskOpenError} when a backing file may not be opened under
 * `options.backing`, or is not a regular file
 */
export function openDiskImage(path: string, options: OpenDiskOptions): DiskImage {
  const file = ImageFile.open(path, { readonly: options.readonly });
  try {
    const format = options.format === "auto" ? probeFormat(file) : options.format;
    if (format === "qcow2") return Qcow2Image.fromFile(file, { backing: options.backing });
    return new RawImage(file, { probed: options.format === "auto" });
  } catch (e) {
    file.close();
    throw e;
  }
}
