/**
 * Synchronous positioned I/O on an image file, with whole-buffer reads and
 * writes and typed errors.
 *
 * The vCPU thread calls the disk back-ends one request at a time, so a seek
 * followed by a read or write on the one descriptor is as good as pread and
 * pwrite here.
 *
 * @example
 * ```ts
 * import { ImageFile } from "./file.ts";
 * const f = ImageFile.open("disk.img", { readonly: true });
 * const head = new Uint8Array(512);
 * f.read(0, head);
 * f.close();
 * ```
 * @module
 */

import { DiskIoError, DiskOpenError } from "./errors.ts";

/** qcow2 files start with "QFI\xfb". */
export const QCOW2_MAGIC_BYTES: readonly number[] = [0x51, 0x46, 0x49, 0xfb];

/** Largest single read or write handed to the OS (Linux caps one call near 2 GiB). */
const MAX_IO_BYTES = 1 << 30;

/** Lock attempts before an image counts as in use, and the pause between them. */
const LOCK_RETRIES = 20;
const LOCK_RETRY_MS = 10;
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

/** Options of {@linkcode ImageFile.open}. */
export interface ImageFileOptions {
  /** Open without write access. */
  readonly: boolean;
  /**
   * Take an advisory lock (shared when read-only, exclusive otherwise) so two
   * vmmctl processes never write one image at once. Default true.
   */
  lock?: boolean;
}

/**
 * What the format engines need of a file: positioned reads and writes and
 * fdatasync. {@linkcode ImageFile} is the real one; tests put recorders and
 * power-loss simulators here.
 */
export interface BlockFile {
  /** The path it was opened with (for messages). */
  readonly path: string;
  /** Whether writes are refused. */
  readonly readonly: boolean;
  /** Whether {@linkcode BlockFile.close} has run. */
  readonly closed: boolean;
  /** Current size in bytes. */
  sizeBytes(): number;
  /** Reads `into.length` bytes at `offset`; throws {@linkcode DiskIoError} at end of file. */
  read(offset: number, into: Uint8Array): void;
  /** Reads up to `into.length` bytes at `offset`; returns the count (short only at end of file). */
  readUpTo(offset: number, into: Uint8Array): number;
  /** Writes all of `data` at `offset`. */
  write(offset: number, data: Uint8Array): void;
  /** Makes every completed write durable (fdatasync). */
  syncData(): void;
  /** Closes the file. Idempotent. */
  close(): void;
}

/** An open image file (regular file or block device). */
export class ImageFile implements BlockFile {
  /** The path it was opened with (for messages). */
  readonly path: string;
  /** Whether the descriptor lacks write access. */
  readonly readonly: boolean;
  /** Whether the file is a block device (its size comes from seeking to the end). */
  readonly isBlockDevice: boolean;
  #file: Deno.FsFile | undefined;

  private constructor(path: string, file: Deno.FsFile, readonly: boolean, isBlock: boolean) {
    this.path = path;
    this.#file = file;
    this.readonly = readonly;
    this.isBlockDevice = isBlock;
  }

  /**
   * Opens an existing image.
   *
   * @throws {DiskOpenError} when it is missing, not accessible, not a regular
   * file or block device, or locked by another process
   */
  static open(path: string, options: ImageFileOptions): ImageFile {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch (e) {
      throw openError(path, "access", e);
    }
    if (!info.isFile && info.isBlockDevice !== true) {
      const kind = info.isDirectory ? "a directory" : "not a regular file or block device";
      throw new DiskOpenError(path, `Disk image "${path}" is ${kind}`);
    }
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true, write: !options.readonly });
    } catch (e) {
      throw openError(path, options.readonly ? "open for reading" : "open for writing", e);
    }
    if (options.lock ?? true) {
      let locked = false;
      try {
        // A lock we just released can live on for a moment in a child that another thread of
        // this process is spawning (it holds a copy of every descriptor until exec), so a
        // refusal is retried briefly before it is believed.
        for (let i = 0; !locked && i < LOCK_RETRIES; i++) {
          if (i > 0) Atomics.wait(SLEEPER, 0, 0, LOCK_RETRY_MS);
          locked = file.tryLockSync(!options.readonly);
        }
      } catch (e) {
        file.close();
        throw openError(path, "lock", e);
      }
      if (!locked) {
        file.close();
        throw new DiskOpenError(
          path,
          `Disk image "${path}" is in use by another process (it holds a lock on it)`,
        );
      }
    }
    return new ImageFile(path, file, options.readonly, info.isBlockDevice === true);
  }

  #fd(): Deno.FsFile {
    if (this.#file === undefined) {
      throw new DiskIoError(this.path, `Disk image "${this.path}" is closed`);
    }
    return this.#file;
  }

  /** fstat of the open descriptor. */
  stat(): Deno.FileInfo {
    try {
      return this.#fd().statSync();
    } catch (e) {
      throw ioError(this.path, "stat", 0, e);
    }
  }

  /** Current size in bytes (the end of the file or block device). */
  sizeBytes(): number {
    const f = this.#fd();
    try {
      return f.seekSync(0, Deno.SeekMode.End);
    } catch (e) {
      throw ioError(this.path, "find the size of", 0, e);
    }
  }

  /**
   * Reads `into.length` bytes at `offset`.
   *
   * @throws {DiskIoError} on an I/O error or when the file ends first
   */
  read(offset: number, into: Uint8Array): void {
    const got = this.readUpTo(offset, into);
    if (got < into.length) {
      throw new DiskIoError(
        this.path,
        `Unexpected end of disk image "${this.path}" reading ${into.length} bytes at offset ${offset}`,
      );
    }
  }

  /** Reads up to `into.length` bytes at `offset`, stopping early only at end of file; returns the count. */
  readUpTo(offset: number, into: Uint8Array): number {
    const f = this.#fd();
    let done = 0;
    try {
      f.seekSync(offset, Deno.SeekMode.Start);
      while (done < into.length) {
        const n = f.readSync(into.subarray(done, Math.min(into.length, done + MAX_IO_BYTES)));
        if (n === null || n === 0) break;
        done += n;
      }
    } catch (e) {
      throw ioError(this.path, "read", offset + done, e);
    }
    return done;
  }

  /**
   * Writes all of `data` at `offset` (looping over short writes).
   *
   * @throws {DiskIoError} on an I/O error or when the OS accepts no bytes
   */
  write(offset: number, data: Uint8Array): void {
    const f = this.#fd();
    let done = 0;
    try {
      f.seekSync(offset, Deno.SeekMode.Start);
      while (done < data.length) {
        const n = f.writeSync(data.subarray(done, Math.min(data.length, done + MAX_IO_BYTES)));
        if (n <= 0) {
          throw new DiskIoError(
            this.path,
            `Write to disk image "${this.path}" at offset ${offset + done} made no progress`,
          );
        }
        done += n;
      }
    } catch (e) {
      if (e instanceof DiskIoError) throw e;
      throw ioError(this.path, "write", offset + done, e);
    }
  }

  /** fdatasync: makes every completed write durable. */
  syncData(): void {
    try {
      this.#fd().syncDataSync();
    } catch (e) {
      throw ioError(this.path, "flush", 0, e);
    }
  }

  /** Sets the file's length (sparse when growing). */
  truncate(lengthBytes: number): void {
    try {
      this.#fd().truncateSync(lengthBytes);
    } catch (e) {
      throw ioError(this.path, "resize", lengthBytes, e);
    }
  }

  /** Whether {@linkcode close} has run. */
  get closed(): boolean {
    return this.#file === undefined;
  }

  /** Closes the descriptor (and drops its lock). Idempotent. */
  close(): void {
    const f = this.#file;
    this.#file = undefined;
    f?.close();
  }
}

/** Whether `head` (the first bytes of a file) starts with the qcow2 magic. */
export function hasQcow2Magic(head: Uint8Array): boolean {
  return head.length >= 4 && QCOW2_MAGIC_BYTES.every((b, i) => head[i] === b);
}

/** Detects the format of an open image by its first bytes: qcow2 by magic, raw otherwise. */
export function probeFormat(file: BlockFile): "raw" | "qcow2" {
  const head = new Uint8Array(4);
  const n = file.readUpTo(0, head);
  return n === 4 && hasQcow2Magic(head) ? "qcow2" : "raw";
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The DiskOpenError for a failed stat, open or lock of `path` ("missing", "permission denied"...). */
export function openError(path: string, what: string, e: unknown): DiskOpenError {
  if (e instanceof Deno.errors.NotFound) {
    return new DiskOpenError(path, `Disk image "${path}" does not exist`, { cause: e });
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    return new DiskOpenError(path, `Cannot ${what} disk image "${path}": permission denied`, {
      cause: e,
    });
  }
  return new DiskOpenError(path, `Cannot ${what} disk image "${path}": ${errorMessage(e)}`, {
    cause: e,
  });
}

function ioError(path: string, what: string, offset: number, e: unknown): DiskIoError {
  return new DiskIoError(
    path,
    `Cannot ${what} disk image "${path}" at offset ${offset}: ${errorMessage(e)}`,
    { cause: e },
  );
}
