/**
 * New disk images, as `vmctl create` makes them: raw images are sparse files,
 * qcow2 images are version 3 with 64 KiB clusters, optionally over a backing
 * file. An existing file is never overwritten.
 *
 * @example
 * ```ts
 * import { createDiskImage, formatFromName } from "./create.ts";
 * createDiskImage("base.img", { format: "raw", sizeBytes: 1 << 30 });
 * createDiskImage("vm1.qcow2", { format: formatFromName("vm1.qcow2")!, backing: "base.img" });
 * ```
 * @module
 */

import { DiskError, DiskOpenError } from "./errors.ts";
import { ImageFile } from "./file.ts";
import { type DiskImageFormat, openDiskImage } from "./image.ts";
import { resolveBackingPath } from "./qcow2_backing.ts";
import {
  encodeQcow2Header,
  QCOW2_DEFAULT_REFCOUNT_ORDER,
  QCOW2_MAX_L1_BYTES,
} from "./qcow2_format.ts";

/** cluster_bits of the qcow2 images we create (64 KiB, QEMU's default). */
export const CREATE_QCOW2_CLUSTER_BITS = 16;
/** Image sizes are rounded up to whole sectors. */
export const DISK_SECTOR_BYTES = 512;

/** Options of {@linkcode createDiskImage}. */
export interface CreateDiskOptions {
  /** Virtual size; optional with `backing` (then the backing file's size). Rounded up to 512. */
  sizeBytes?: number;
  format: DiskImageFormat;
  /**
   * Backing file (qcow2 only), stored as given: a relative name is relative
   * to the new image's folder. Its format (raw or qcow2) is detected and recorded.
   */
  backing?: string;
}

/** What {@linkcode createDiskImage} made. */
export interface CreatedDisk {
  path: string;
  format: DiskImageFormat;
  sizeBytes: number;
  backing?: string;
  backingFormat?: DiskImageFormat;
}

/**
 * The format a file name implies: `.qcow2` is qcow2, `.raw` and `.img` are
 * raw; anything else is undefined (ask the user for one).
 */
export function formatFromName(path: string): DiskImageFormat | undefined {
  const lower = path.toLowerCase();
  if (lower.endsWith(".qcow2")) return "qcow2";
  if (lower.endsWith(".raw") || lower.endsWith(".img")) return "raw";
  return undefined;
}

/**
 * Creates a disk image at `path`.
 *
 * @throws {DiskOpenError} when `path` exists, the size is invalid, the
 * backing file cannot be opened, or a raw image is asked to have a backing file
 */
export function createDiskImage(path: string, options: CreateDiskOptions): CreatedDisk {
  if (options.format !== "raw" && options.format !== "qcow2") {
    throw new DiskOpenError(
      path,
      `Cannot create disk image "${path}": unknown format "${options.format}"`,
    );
  }
  if (options.backing !== undefined && options.format !== "qcow2") {
    throw new DiskOpenError(
      path,
      `Cannot create disk image "${path}": only qcow2 images can have a backing file`,
    );
  }
  let backingFormat: DiskImageFormat | undefined;
  let size = options.sizeBytes;
  if (options.backing !== undefined) {
    const resolved = resolveBackingPath(path, options.backing);
    let base;
    try {
      base = openDiskImage(resolved, { format: "auto", readonly: true });
    } catch (e) {
      if (!(e instanceof DiskError)) throw e;
      throw new DiskOpenError(
        path,
        `Cannot create disk image "${path}": backing file "${options.backing}": ${e.message}`,
        { cause: e },
      );
    }
    backingFormat = base.format;
    size ??= base.sizeBytes;
    base.close();
  }
  if (size === undefined) {
    throw new DiskOpenError(path, `Cannot create disk image "${path}": no size given`);
  }
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new DiskOpenError(
      path,
      `Cannot create disk image "${path}": size "${size}" is not a positive whole number of bytes`,
    );
  }
  const sizeBytes = Math.ceil(size / DISK_SECTOR_BYTES) * DISK_SECTOR_BYTES;
  const qcow2 = options.format === "qcow2" ? qcow2Layout(path, sizeBytes) : undefined;

  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true, createNew: true });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new DiskOpenError(path, `Disk image "${path}" already exists: not overwriting it`);
    }
    const why = e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (e as Error).message;
    throw new DiskOpenError(path, `Cannot create disk image "${path}": ${why}`, { cause: e });
  }
  file.close();
  try {
    const image = ImageFile.open(path, { readonly: false });
    try {
      if (qcow2 === undefined) {
        image.truncate(sizeBytes);
      } else {
        writeQcow2(image, qcow2, options.backing, backingFormat);
      }
      image.syncData();
    } finally {
      image.close();
    }
  } catch (e) {
    Deno.removeSync(path);
    throw e;
  }
  const created: CreatedDisk = { path, format: options.format, sizeBytes };
  if (options.backing !== undefined) {
    created.backing = options.backing;
    created.backingFormat = backingFormat;
  }
  return created;
}

interface Qcow2Layout {
  sizeBytes: number;
  clusterBytes: number;
  l1Size: number;
  /** Clusters 0 (header), 1 (refcount table), 2 (refcount block), then the L1 table. */
  metadataClusters: number;
}

function qcow2Layout(path: string, sizeBytes: number): Qcow2Layout {
  const clusterBytes = 2 ** CREATE_QCOW2_CLUSTER_BITS;
  const l2Entries = clusterBytes / 8;
  const l1Size = Math.max(1, Math.ceil(Math.ceil(sizeBytes / clusterBytes) / l2Entries));
  if (l1Size * 8 > QCOW2_MAX_L1_BYTES) {
    throw new DiskOpenError(
      path,
      `Cannot create disk image "${path}": size ${sizeBytes} is too large for qcow2`,
    );
  }
  const metadataClusters = 3 + Math.ceil((l1Size * 8) / clusterBytes);
  return { sizeBytes, clusterBytes, l1Size, metadataClusters };
}

function writeQcow2(
  image: ImageFile,
  layout: Qcow2Layout,
  backing: string | undefined,
  backingFormat: DiskImageFormat | undefined,
): void {
  const cs = layout.clusterBytes;
  const header = encodeQcow2Header({
    clusterBits: CREATE_QCOW2_CLUSTER_BITS,
    sizeBytes: layout.sizeBytes,
    l1Size: layout.l1Size,
    l1TableOffset: 3 * cs,
    refcountTableOffset: cs,
    refcountTableClusters: 1,
    refcountOrder: QCOW2_DEFAULT_REFCOUNT_ORDER,
    backingFile: backing,
    backingFormat,
  });
  if (header.length > cs) {
    throw new DiskOpenError(
      image.path,
      `Cannot create disk image "${image.path}": header too long`,
    );
  }
  const reftable = new Uint8Array(8);
  new DataView(reftable.buffer).setBigUint64(0, BigInt(2 * cs));
  // 16-bit refcounts of 1 for every metadata cluster (one block covers 32768 clusters).
  const refblock = new Uint8Array(layout.metadataClusters * 2);
  const rv = new DataView(refblock.buffer);
  for (let c = 0; c < layout.metadataClusters; c++) rv.setUint16(c * 2, 1);
  image.write(0, header);
  image.write(cs, reftable);
  image.write(2 * cs, refblock);
  image.truncate(3 * cs + layout.l1Size * 8); // the L1 table: all zeros (nothing allocated)
}
