/**
 * The qcow2 on-disk layout (versions 2 and 3): header fields, header
 * extensions, table entry bits, and a header parser that rejects what we do
 * not support with a message naming the feature.
 *
 * Layout in brief: the file is cut into clusters of `1 << cluster_bits`
 * bytes. Cluster 0 holds the big-endian header, then header extensions, then
 * (usually) the backing file name. Guest offsets map to host clusters through
 * a contiguous L1 table of pointers to one-cluster L2 tables. Host clusters
 * carry reference counts in a contiguous refcount table pointing to
 * one-cluster refcount blocks of `1 << refcount_order`-bit entries.
 *
 * @example
 * ```ts
 * import { parseQcow2Header } from "./qcow2_format.ts";
 * const head = Deno.readFileSync("disk.qcow2").subarray(0, 65536);
 * const header = parseQcow2Header(head, "disk.qcow2");
 * header.clusterBits; // 16
 * ```
 * @module
 */

import { DiskFormatError } from "./errors.ts";

/** Magic number at byte 0 ("QFI\xfb"). */
export const QCOW2_MAGIC = 0x514649fb;
/** Length of a version 2 header (also where its extensions start). */
export const QCOW2_HEADER_V2_BYTES = 72;
/** Shortest version 3 header. */
export const QCOW2_HEADER_V3_MIN_BYTES = 104;
/** The header length we write for new version 3 images (includes compression_type, padded). */
export const QCOW2_HEADER_V3_BYTES = 112;
/** Smallest cluster_bits (512-byte clusters). */
export const QCOW2_MIN_CLUSTER_BITS = 9;
/** Largest cluster_bits we open (2 MiB clusters, QEMU's limit). */
export const QCOW2_MAX_CLUSTER_BITS = 21;
/** Longest backing file name. */
export const QCOW2_MAX_BACKING_NAME_BYTES = 1023;
/** Largest L1 table we load (QEMU's limit), bytes. */
export const QCOW2_MAX_L1_BYTES = 32 * 1024 * 1024;
/** Largest refcount table we load (QEMU's limit), bytes. */
export const QCOW2_MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
/** Largest refcount_order (64-bit refcounts). */
export const QCOW2_MAX_REFCOUNT_ORDER = 6;
/** refcount_order of version 2 images and QEMU's default (16-bit refcounts). */
export const QCOW2_DEFAULT_REFCOUNT_ORDER = 4;

/** Header byte offset of magic. */
export const QCOW2_HDR_MAGIC = 0;
/** Header byte offset of version. */
export const QCOW2_HDR_VERSION = 4;
/** Header byte offset of backing_file_offset. */
export const QCOW2_HDR_BACKING_FILE_OFFSET = 8;
/** Header byte offset of backing_file_size. */
export const QCOW2_HDR_BACKING_FILE_SIZE = 16;
/** Header byte offset of cluster_bits. */
export const QCOW2_HDR_CLUSTER_BITS = 20;
/** Header byte offset of size. */
export const QCOW2_HDR_SIZE = 24;
/** Header byte offset of crypt_method. */
export const QCOW2_HDR_CRYPT_METHOD = 32;
/** Header byte offset of l1_size. */
export const QCOW2_HDR_L1_SIZE = 36;
/** Header byte offset of l1_table_offset. */
export const QCOW2_HDR_L1_TABLE_OFFSET = 40;
/** Header byte offset of refcount_table_offset. */
export const QCOW2_HDR_REFCOUNT_TABLE_OFFSET = 48;
/** Header byte offset of refcount_table_clusters. */
export const QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS = 56;
/** Header byte offset of nb_snapshots. */
export const QCOW2_HDR_NB_SNAPSHOTS = 60;
/** Header byte offset of snapshots_offset. */
export const QCOW2_HDR_SNAPSHOTS_OFFSET = 64;
/** Header byte offset of incompatible_features. */
export const QCOW2_HDR_INCOMPATIBLE_FEATURES = 72;
/** Header byte offset of compatible_features. */
export const QCOW2_HDR_COMPATIBLE_FEATURES = 80;
/** Header byte offset of autoclear_features. */
export const QCOW2_HDR_AUTOCLEAR_FEATURES = 88;
/** Header byte offset of refcount_order. */
export const QCOW2_HDR_REFCOUNT_ORDER = 96;
/** Header byte offset of header_length. */
export const QCOW2_HDR_HEADER_LENGTH = 100;
/** Header byte offset of compression_type. */
export const QCOW2_HDR_COMPRESSION_TYPE = 104;

/** Header extension type: end of the extension area. */
export const QCOW2_EXT_END = 0x00000000;
/** Header extension type: backing file format name. */
export const QCOW2_EXT_BACKING_FORMAT = 0xe2792aca;
/** Header extension type: feature name table. */
export const QCOW2_EXT_FEATURE_TABLE = 0x6803f857;
/** Header extension type: bitmaps. */
export const QCOW2_EXT_BITMAPS = 0x23852875;
/** Header extension type: full disk encryption header pointer. */
export const QCOW2_EXT_CRYPTO = 0x0537be77;
/** Header extension type: external data file name. */
export const QCOW2_EXT_DATA_FILE = 0x44415441;

/** Incompatible feature bit: dirty (refcounts may be stale). */
export const QCOW2_INCOMPAT_DIRTY = 0;
/** Incompatible feature bit: corrupt (no writes until repaired). */
export const QCOW2_INCOMPAT_CORRUPT = 1;
/** Incompatible feature bit: guest data lives in an external data file. */
export const QCOW2_INCOMPAT_DATA_FILE = 2;
/** Incompatible feature bit: compression_type is not zlib. */
export const QCOW2_INCOMPAT_COMPRESSION = 3;
/** Incompatible feature bit: extended L2 entries (subclusters). */
export const QCOW2_INCOMPAT_EXTL2 = 4;
/** Compatible feature bit: lazy refcounts. */
export const QCOW2_COMPAT_LAZY_REFCOUNTS = 0;
/** Auto-clear feature bit: the bitmaps extension is consistent. */
export const QCOW2_AUTOCLEAR_BITMAPS = 0;
/** Auto-clear feature bit: the external data file is a valid raw image. */
export const QCOW2_AUTOCLEAR_DATA_FILE_RAW = 1;

/** Feature name table bitmap selector: incompatible. */
export const QCOW2_FEAT_TYPE_INCOMPATIBLE = 0;
/** Feature name table bitmap selector: compatible. */
export const QCOW2_FEAT_TYPE_COMPATIBLE = 1;
/** Feature name table bitmap selector: autoclear. */
export const QCOW2_FEAT_TYPE_AUTOCLEAR = 2;
/** Bytes per feature name table entry (type, bit, 46-byte name). */
export const QCOW2_FEATURE_ENTRY_BYTES = 48;

/** crypt_method value: none. */
export const QCOW2_CRYPT_NONE = 0;
/** crypt_method value: AES-CBC. */
export const QCOW2_CRYPT_AES = 1;
/** crypt_method value: LUKS. */
export const QCOW2_CRYPT_LUKS = 2;

/** compression_type value: zlib (raw deflate). */
export const QCOW2_COMPRESSION_ZLIB = 0;
/** compression_type value: zstd. */
export const QCOW2_COMPRESSION_ZSTD = 1;

/** Entry bit 63 (in the high 32-bit word): refcount is exactly 1, write in place. */
export const QCOW2_OFLAG_COPIED_HI = 0x80000000;
/** L2 entry bit 62 (in the high word): compressed cluster. */
export const QCOW2_OFLAG_COMPRESSED_HI = 0x40000000;
/** L2 entry bit 0 (in the low word, version 3): the cluster reads as zeros. */
export const QCOW2_OFLAG_ZERO_LO = 0x1;
/** Host offset bits 9-55: the high word keeps bits 32-55. */
export const QCOW2_OFFSET_MASK_HI = 0x00ffffff;
/** Host offset bits in the low word (bits 9-31). */
export const QCOW2_OFFSET_MASK_LO = 0xfffffe00;
/** Compressed data is counted in 512-byte sectors. */
export const QCOW2_COMPRESSED_SECTOR_BYTES = 512;

/** Names of the features we know, for messages and for the table we write. */
export const QCOW2_KNOWN_FEATURES: readonly { type: number; bit: number; name: string }[] = [
  { type: QCOW2_FEAT_TYPE_INCOMPATIBLE, bit: QCOW2_INCOMPAT_DIRTY, name: "dirty bit" },
  { type: QCOW2_FEAT_TYPE_INCOMPATIBLE, bit: QCOW2_INCOMPAT_CORRUPT, name: "corrupt bit" },
  { type: QCOW2_FEAT_TYPE_INCOMPATIBLE, bit: QCOW2_INCOMPAT_DATA_FILE, name: "external data file" },
  { type: QCOW2_FEAT_TYPE_INCOMPATIBLE, bit: QCOW2_INCOMPAT_COMPRESSION, name: "compression type" },
  { type: QCOW2_FEAT_TYPE_INCOMPATIBLE, bit: QCOW2_INCOMPAT_EXTL2, name: "extended L2 entries" },
  { type: QCOW2_FEAT_TYPE_COMPATIBLE, bit: QCOW2_COMPAT_LAZY_REFCOUNTS, name: "lazy refcounts" },
  { type: QCOW2_FEAT_TYPE_AUTOCLEAR, bit: QCOW2_AUTOCLEAR_BITMAPS, name: "bitmaps" },
  {
    type: QCOW2_FEAT_TYPE_AUTOCLEAR,
    bit: QCOW2_AUTOCLEAR_DATA_FILE_RAW,
    name: "raw external data",
  },
];

/** One header extension as found after the header. */
export interface Qcow2Extension {
  type: number;
  /** File offset of the extension's data. */
  offset: number;
  data: Uint8Array;
}

/** A parsed and validated qcow2 header. */
export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  /** Virtual disk size. */
  sizeBytes: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  extensions: Qcow2Extension[];
  /** The backing file name as stored (relative names are relative to the image's folder). */
  backingFile?: string;
  /** The backing format extension's value ("raw", "qcow2", ...). */
  backingFormat?: string;
  /** Names from the feature name table, keyed `type:bit`. */
  featureNames: Map<string, string>;
}

/** How many bytes of the file {@linkcode parseQcow2Header} wants (the first cluster, at most 2 MiB). */
export function qcow2HeaderBytesNeeded(head: Uint8Array): number {
  if (head.length < QCOW2_HDR_CLUSTER_BITS + 4) return QCOW2_HEADER_V3_BYTES;
  const bits = new DataView(head.buffer, head.byteOffset).getUint32(QCOW2_HDR_CLUSTER_BITS);
  if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS) return head.length;
  return 1 << bits;
}

/**
 * Parses and validates the header in `head` (the file's first cluster, or
 * the whole file if shorter).
 *
 * @throws {DiskFormatError} for a bad magic, version other than 2 or 3,
 * encryption, unsupported incompatible features (named), or fields out of range
 */
export function parseQcow2Header(head: Uint8Array, path: string): Qcow2Header {
  const fail = (why: string): never => {
    throw new DiskFormatError(path, `Invalid qcow2 image "${path}": ${why}`);
  };
  if (head.length < QCOW2_HEADER_V2_BYTES) fail("the file is shorter than a qcow2 header");
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (v.getUint32(QCOW2_HDR_MAGIC) !== QCOW2_MAGIC) fail('no "QFI\\xfb" magic');
  const version = v.getUint32(QCOW2_HDR_VERSION);
  if (version !== 2 && version !== 3) {
    throw new DiskFormatError(
      path,
      `Unsupported qcow2 version ${version} in "${path}": only versions 2 and 3 are supported`,
    );
  }
  const u64 = (offset: number, name: string): number => {
    const value = v.getBigUint64(offset);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${name} ${value} is too large`);
    return Number(value);
  };
  const clusterBits = v.getUint32(QCOW2_HDR_CLUSTER_BITS);
  if (clusterBits < QCOW2_MIN_CLUSTER_BITS || clusterBits > QCOW2_MAX_CLUSTER_BITS) {
    throw new DiskFormatError(
      path,
      `Unsupported qcow2 cluster size 2^${clusterBits} in "${path}": cluster_bits must be ` +
        `${QCOW2_MIN_CLUSTER_BITS} to ${QCOW2_MAX_CLUSTER_BITS}`,
    );
  }
  const clusterBytes = 2 ** clusterBits;
  const cryptMethod = v.getUint32(QCOW2_HDR_CRYPT_METHOD);
  if (cryptMethod !== QCOW2_CRYPT_NONE) {
    const how = cryptMethod === QCOW2_CRYPT_AES
      ? "AES"
      : cryptMethod === QCOW2_CRYPT_LUKS
      ? "LUKS"
      : `method ${cryptMethod}`;
    throw new DiskFormatError(
      path,
      `Disk image "${path}" is encrypted (qcow2 ${how} encryption): encrypted images are not supported`,
    );
  }

  const header: Qcow2Header = {
    version,
    backingFileOffset: u64(QCOW2_HDR_BACKING_FILE_OFFSET, "backing_file_offset"),
    backingFileSize: v.getUint32(QCOW2_HDR_BACKING_FILE_SIZE),
    clusterBits,
    sizeBytes: u64(QCOW2_HDR_SIZE, "size"),
    cryptMethod,
    l1Size: v.getUint32(QCOW2_HDR_L1_SIZE),
    l1TableOffset: u64(QCOW2_HDR_L1_TABLE_OFFSET, "l1_table_offset"),
    refcountTableOffset: u64(QCOW2_HDR_REFCOUNT_TABLE_OFFSET, "refcount_table_offset"),
    refcountTableClusters: v.getUint32(QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS),
    nbSnapshots: v.getUint32(QCOW2_HDR_NB_SNAPSHOTS),
    snapshotsOffset: u64(QCOW2_HDR_SNAPSHOTS_OFFSET, "snapshots_offset"),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: QCOW2_DEFAULT_REFCOUNT_ORDER,
    headerLength: QCOW2_HEADER_V2_BYTES,
    compressionType: QCOW2_COMPRESSION_ZLIB,
    extensions: [],
    featureNames: new Map(),
  };

  if (version === 3) {
    if (head.length < QCOW2_HEADER_V3_MIN_BYTES) {
      fail("the file is shorter than a version 3 header");
    }
    header.incompatibleFeatures = v.getBigUint64(QCOW2_HDR_INCOMPATIBLE_FEATURES);
    header.compatibleFeatures = v.getBigUint64(QCOW2_HDR_COMPATIBLE_FEATURES);
    header.autoclearFeatures = v.getBigUint64(QCOW2_HDR_AUTOCLEAR_FEATURES);
    header.refcountOrder = v.getUint32(QCOW2_HDR_REFCOUNT_ORDER);
    header.headerLength = v.getUint32(QCOW2_HDR_HEADER_LENGTH);
    if (
      header.headerLength < QCOW2_HEADER_V3_MIN_BYTES || header.headerLength % 8 !== 0 ||
      header.headerLength > Math.min(clusterBytes, head.length)
    ) {
      fail(
        `header_length ${header.headerLength} is not a multiple of 8 from 104 to the cluster size`,
      );
    }
    if (header.refcountOrder > QCOW2_MAX_REFCOUNT_ORDER) {
      fail(`refcount_order ${header.refcountOrder} is above ${QCOW2_MAX_REFCOUNT_ORDER}`);
    }
    if (header.headerLength > QCOW2_HDR_COMPRESSION_TYPE) {
      header.compressionType = v.getUint8(QCOW2_HDR_COMPRESSION_TYPE);
    }
  }

  parseExtensions(header, head, v, clusterBytes, fail);
  checkIncompatibleFeatures(header, path);

  if (header.backingFileOffset !== 0) {
    const start = header.backingFileOffset;
    const size = header.backingFileSize;
    if (size === 0 || size > QCOW2_MAX_BACKING_NAME_BYTES) {
      fail(`backing file name length ${size} is not 1 to ${QCOW2_MAX_BACKING_NAME_BYTES}`);
    }
    if (start + size > Math.min(clusterBytes, head.length)) {
      fail("the backing file name lies outside the first cluster");
    }
    header.backingFile = new TextDecoder().decode(head.subarray(start, start + size));
  }

  // Structural limits, so a hostile header cannot make us allocate without bound.
  const aligned = (x: number) => x % clusterBytes === 0;
  if (header.l1Size * 8 > QCOW2_MAX_L1_BYTES) fail(`l1_size ${header.l1Size} is too large`);
  const l2Entries = clusterBytes / 8;
  const guestClusters = Math.ceil(header.sizeBytes / clusterBytes);
  if (header.l1Size < Math.ceil(guestClusters / l2Entries)) {
    fail(`l1_size ${header.l1Size} is too small for the virtual size ${header.sizeBytes}`);
  }
  if (header.l1Size > 0 && (header.l1TableOffset === 0 || !aligned(header.l1TableOffset))) {
    fail(`l1_table_offset ${header.l1TableOffset} is not a nonzero multiple of the cluster size`);
  }
  if (header.refcountTableOffset === 0 || !aligned(header.refcountTableOffset)) {
    fail(
      `refcount_table_offset ${header.refcountTableOffset} is not a nonzero multiple of the cluster size`,
    );
  }
  if (
    header.refcountTableClusters === 0 ||
    header.refcountTableClusters * clusterBytes > QCOW2_MAX_REFTABLE_BYTES
  ) {
    fail(`refcount_table_clusters ${header.refcountTableClusters} is out of range`);
  }
  return header;
}

function parseExtensions(
  header: Qcow2Header,
  head: Uint8Array,
  v: DataView,
  clusterBytes: number,
  fail: (why: string) => never,
): void {
  const end = Math.min(clusterBytes, head.length);
  let offset = header.headerLength;
  while (offset + 8 <= end) {
    const type = v.getUint32(offset);
    const length = v.getUint32(offset + 4);
    if (type === QCOW2_EXT_END) break;
    const dataOffset = offset + 8;
    if (length > end - dataOffset) {
      fail(`header extension 0x${type.toString(16)} runs past the first cluster`);
    }
    const data = head.subarray(dataOffset, dataOffset + length);
    header.extensions.push({ type, offset: dataOffset, data });
    if (type === QCOW2_EXT_BACKING_FORMAT) {
      header.backingFormat = new TextDecoder().decode(data);
    } else if (type === QCOW2_EXT_FEATURE_TABLE) {
      for (
        let i = 0;
        i + QCOW2_FEATURE_ENTRY_BYTES <= data.length;
        i += QCOW2_FEATURE_ENTRY_BYTES
      ) {
        const raw = data.subarray(i + 2, i + QCOW2_FEATURE_ENTRY_BYTES);
        const nul = raw.indexOf(0);
        const name = new TextDecoder().decode(nul < 0 ? raw : raw.subarray(0, nul));
        header.featureNames.set(`${data[i]}:${data[i + 1]}`, name);
      }
    }
    offset = dataOffset + Math.ceil(length / 8) * 8;
  }
}

/** A feature's name for messages: the image's own table first, then ours, else "bit N". */
export function qcow2FeatureName(header: Qcow2Header, type: number, bit: number): string {
  const fromImage = header.featureNames.get(`${type}:${bit}`);
  if (fromImage) return `"${fromImage}" (bit ${bit})`;
  const known = QCOW2_KNOWN_FEATURES.find((f) => f.type === type && f.bit === bit);
  return known ? `"${known.name}" (bit ${bit})` : `bit ${bit}`;
}

function checkIncompatibleFeatures(header: Qcow2Header, path: string): void {
  const unsupported = (what: string): never => {
    throw new DiskFormatError(
      path,
      `Unsupported qcow2 feature in "${path}": incompatible feature ${what}`,
    );
  };
  const bits = header.incompatibleFeatures;
  for (let bit = 0; bit < 64; bit++) {
    if ((bits & (1n << BigInt(bit))) === 0n) continue;
    if (bit === QCOW2_INCOMPAT_DIRTY || bit === QCOW2_INCOMPAT_CORRUPT) continue; // checked on open
    const name = qcow2FeatureName(header, QCOW2_FEAT_TYPE_INCOMPATIBLE, bit);
    if (bit === QCOW2_INCOMPAT_COMPRESSION) {
      if (header.compressionType === QCOW2_COMPRESSION_ZLIB) {
        throw new DiskFormatError(
          path,
          `Invalid qcow2 image "${path}": the compression type bit is set but compression_type is zlib`,
        );
      }
      const type = header.compressionType === QCOW2_COMPRESSION_ZSTD
        ? "zstd"
        : `type ${header.compressionType}`;
      unsupported(`${name}: ${type} compression (only zlib is supported)`);
    }
    unsupported(name);
  }
  if (header.compressionType !== QCOW2_COMPRESSION_ZLIB) {
    throw new DiskFormatError(
      path,
      `Invalid qcow2 image "${path}": compression_type ${header.compressionType} without its feature bit`,
    );
  }
}

/** Fields of a new version 3 image header ({@linkcode encodeQcow2Header}). */
export interface NewQcow2Header {
  clusterBits: number;
  sizeBytes: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  refcountOrder: number;
  backingFile?: string;
  backingFormat?: string;
}

/**
 * Builds the first cluster's contents of a new version 3 image: header,
 * backing format and feature name table extensions, end marker, backing name.
 * Returns only the bytes in use (the rest of the cluster is zeros).
 */
export function encodeQcow2Header(fields: NewQcow2Header): Uint8Array {
  const enc = new TextEncoder();
  const parts: { type: number; data: Uint8Array }[] = [];
  if (fields.backingFormat !== undefined) {
    parts.push({ type: QCOW2_EXT_BACKING_FORMAT, data: enc.encode(fields.backingFormat) });
  }
  const table = new Uint8Array(QCOW2_KNOWN_FEATURES.length * QCOW2_FEATURE_ENTRY_BYTES);
  QCOW2_KNOWN_FEATURES.forEach((f, i) => {
    const at = i * QCOW2_FEATURE_ENTRY_BYTES;
    table[at] = f.type;
    table[at + 1] = f.bit;
    table.set(enc.encode(f.name), at + 2);
  });
  parts.push({ type: QCOW2_EXT_FEATURE_TABLE, data: table });

  let extBytes = 8; // the end marker
  for (const p of parts) extBytes += 8 + Math.ceil(p.data.length / 8) * 8;
  const backing = fields.backingFile === undefined ? undefined : enc.encode(fields.backingFile);
  const total = QCOW2_HEADER_V3_BYTES + extBytes + (backing?.length ?? 0);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(QCOW2_HDR_MAGIC, QCOW2_MAGIC);
  v.setUint32(QCOW2_HDR_VERSION, 3);
  v.setUint32(QCOW2_HDR_CLUSTER_BITS, fields.clusterBits);
  v.setBigUint64(QCOW2_HDR_SIZE, BigInt(fields.sizeBytes));
  v.setUint32(QCOW2_HDR_L1_SIZE, fields.l1Size);
  v.setBigUint64(QCOW2_HDR_L1_TABLE_OFFSET, BigInt(fields.l1TableOffset));
  v.setBigUint64(QCOW2_HDR_REFCOUNT_TABLE_OFFSET, BigInt(fields.refcountTableOffset));
  v.setUint32(QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS, fields.refcountTableClusters);
  v.setUint32(QCOW2_HDR_REFCOUNT_ORDER, fields.refcountOrder);
  v.setUint32(QCOW2_HDR_HEADER_LENGTH, QCOW2_HEADER_V3_BYTES);
  let at = QCOW2_HEADER_V3_BYTES;
  for (const p of parts) {
    v.setUint32(at, p.type);
    v.setUint32(at + 4, p.data.length);
    out.set(p.data, at + 8);
    at += 8 + Math.ceil(p.data.length / 8) * 8;
  }
  at += 8; // end marker: type 0, length 0
  if (backing !== undefined) {
    if (backing.length === 0 || backing.length > QCOW2_MAX_BACKING_NAME_BYTES) {
      throw new RangeError(
        `Backing file name "${fields.backingFile}" must be 1 to ${QCOW2_MAX_BACKING_NAME_BYTES} bytes`,
      );
    }
    v.setBigUint64(QCOW2_HDR_BACKING_FILE_OFFSET, BigInt(at));
    v.setUint32(QCOW2_HDR_BACKING_FILE_SIZE, backing.length);
    out.set(backing, at);
  }
  return out;
}

/** L1 entry bits that must be zero (1-8 and 56-62), in the high and low words. */
export const QCOW2_L1_RESERVED_HI = 0x7f000000;
/** L1 entry bits that must be zero (bits 0-8), low word. */
export const QCOW2_L1_RESERVED_LO = 0x000001ff;
/** Standard L2 entry bits that must be zero (bits 56-61), high word. */
export const QCOW2_L2_RESERVED_HI = 0x3f000000;
/** Standard L2 entry bits that must be zero (bits 1-8), low word. */
export const QCOW2_L2_RESERVED_LO = 0x000001fe;

const TWO32 = 2 ** 32;

/** The host offset (bits 9-55) of an L1, L2 or refcount table entry given as two 32-bit words. */
export function qcow2EntryOffset(hi: number, lo: number): number {
  return (hi & QCOW2_OFFSET_MASK_HI) * TWO32 + ((lo & QCOW2_OFFSET_MASK_LO) >>> 0);
}

/** Stores a table entry: `offset` with the flags of the high word (`flagsHi`). */
export function qcow2SetEntry(
  view: DataView,
  index: number,
  offset: number,
  flagsHi: number,
): void {
  view.setUint32(index * 8, (Math.floor(offset / TWO32) | flagsHi) >>> 0);
  view.setUint32(index * 8 + 4, offset % TWO32);
}

/**
 * File range `[start, length]` of a compressed cluster's data, from its L2
 * entry's words: the offset takes `70 - cluster_bits` bits, the count of extra
 * 512-byte sectors the rest. Undefined when the offset is beyond 8 PiB.
 */
export function qcow2CompressedRange(
  clusterBits: number,
  hi: number,
  lo: number,
): [number, number] | undefined {
  const offsetBits = 70 - clusterBits;
  const hiOffsetBits = offsetBits - 32;
  const offsetHi = hi & ((1 << hiOffsetBits) - 1);
  if (offsetHi >= 2 ** 21) return undefined;
  const start = offsetHi * TWO32 + lo;
  const sectorBits = 62 - offsetBits;
  const sectors = ((hi >>> hiOffsetBits) & ((1 << sectorBits) - 1)) + 1;
  return [
    start,
    sectors * QCOW2_COMPRESSED_SECTOR_BYTES - (start % QCOW2_COMPRESSED_SECTOR_BYTES),
  ];
}
