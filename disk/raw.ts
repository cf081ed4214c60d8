/**
 * Raw disk images: the file (or block device) is the disk, byte for byte.
 *
 * @example
 * ```ts
 * import { RawImage } from "./raw.ts";
 * const disk = RawImage.open("disk.img", { readonly: true });
 * const mbr = new Uint8Array(512);
 * disk.read(0, mbr);
 * disk.close();
 * ```
 * @module
 */

import { checkDiskRange, DiskReadOnlyError } from "./errors.ts";
import { type BlockFile, hasQcow2Magic, ImageFile } from "./file.ts";
import type { DiskImage } from "./image.ts";

/** Options of the {@linkcode RawImage} constructor. */
export interface RawImageOptions {
  /**
   * The format was detected rather than given. Then the guest may not write
   * the qcow2 magic into the first bytes: the next auto-detecting open would
   * take the disk for a qcow2 image whose header (and backing file) the guest
   * chose.
   */
  probed?: boolean;
}

/** A raw image over a {@linkcode BlockFile}. */
export class RawImage implements DiskImage {
  /** Size of the file or block device when opened. */
  readonly sizeBytes: number;
  readonly readonly: boolean;
  readonly format = "raw" as const;
  /** The image's path. */
  readonly path: string;
  #file: BlockFile;
  #probed: boolean;

  /** Wraps an open file; the image owns it from now on. */
  constructor(file: BlockFile, options: RawImageOptions = {}) {
    this.#file = file;
    this.path = file.path;
    this.readonly = file.readonly;
    this.sizeBytes = file.sizeBytes();
    this.#probed = options.probed ?? false;
  }

  /** Opens `path` as a raw image. */
  static open(path: string, options: { readonly: boolean }): RawImage {
    const file = ImageFile.open(path, options);
    try {
      return new RawImage(file);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** @inheritdoc */
  read(offset: number, into: Uint8Array): void {
    checkDiskRange(this.path, offset, into.length, this.sizeBytes);
    this.#file.read(offset, into);
  }

  /** @inheritdoc */
  write(offset: number, data: Uint8Array): void {
    if (this.readonly) throw new DiskReadOnlyError(this.path);
    checkDiskRange(this.path, offset, data.length, this.sizeBytes);
    if (this.#probed && offset < 4 && data.length > 0) this.#guardMagic(offset, data);
    this.#file.write(offset, data);
  }

  #guardMagic(offset: number, data: Uint8Array): void {
    const head = new Uint8Array(4);
    this.#file.readUpTo(0, head);
    head.set(data.subarray(0, 4 - offset), offset);
    if (hasQcow2Magic(head)) {
      throw new DiskReadOnlyError(
        this.path,
        `Refusing to write a qcow2 header into raw disk image "${this.path}" whose format was ` +
          `detected: give its format as "raw" explicitly to allow it`,
      );
    }
  }

  /** @inheritdoc */
  flush(): void {
    if (!this.readonly) this.#file.syncData();
  }

  /** @inheritdoc */
  close(): void {
    if (this.#file.closed) return;
    try {
      if (!this.readonly) this.#file.syncData();
    } finally {
      this.#file.close();
    }
  }
}
