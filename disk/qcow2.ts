/**
 * qcow2 disk images (versions 2 and 3): reads through L1/L2 tables, zero and
 * compressed clusters and backing files; writes allocate clusters with
 * copy-on-write and keep the refcounts exact.
 *
 * Metadata (L2 tables, refcount blocks, the L1 and refcount tables) is cached
 * and written back on {@linkcode Qcow2Image.flush}, in an order that keeps the
 * image consistent on disk at every step:
 * 1. guest data goes straight to its (already counted) cluster;
 * 2. refcount increments (and new refcount blocks, then the refcount table);
 * 3. fdatasync, then the L2 tables that point at the new clusters;
 * 4. fdatasync, then the L1 entries that point at new L2 tables;
 * 5. fdatasync, then refcount decrements of clusters no longer pointed at.
 * A crash anywhere leaves at most clusters that are counted but unused
 * (leaks), never a pointer to unwritten data or an undercounted cluster.
 * Writes since the last flush may be lost, as with a disk's volatile cache.
 * The dirty bit is never set (no lazy refcounts).
 *
 * @example
 * ```ts
 * import { Qcow2Image } from "./qcow2.ts";
 * const disk = Qcow2Image.open("disk.qcow2", { readonly: false });
 * disk.write(0, new Uint8Array(4096).fill(0xab));
 * disk.flush();
 * disk.close();
 * ```
 * @module
 */

import { inflateRaw } from "../ffi/inflate.ts";
import {
  checkDiskRange,
  DiskError,
  DiskFormatError,
  DiskIoError,
  DiskOpenError,
  DiskReadOnlyError,
} from "./errors.ts";
import { ImageFile, probeFormat } from "./file.ts";
import type { DiskImage } from "./image.ts";
import {
  parseQcow2Header,
  QCOW2_COMPRESSED_SECTOR_BYTES,
  QCOW2_HDR_AUTOCLEAR_FEATURES,
  QCOW2_HDR_REFCOUNT_TABLE_OFFSET,
  QCOW2_HEADER_V3_BYTES,
  QCOW2_INCOMPAT_CORRUPT,
  QCOW2_INCOMPAT_DIRTY,
  QCOW2_MAX_REFTABLE_BYTES,
  QCOW2_OFFSET_MASK_HI,
  QCOW2_OFFSET_MASK_LO,
  QCOW2_OFLAG_COMPRESSED_HI,
  QCOW2_OFLAG_COPIED_HI,
  QCOW2_OFLAG_ZERO_LO,
  type Qcow2Header,
  qcow2HeaderBytesNeeded,
} from "./qcow2_format.ts";
import { RawImage } from "./raw.ts";

const TWO32 = 2 ** 32;
/** Longest backing chain we follow (guards against loops). */
export const QCOW2_MAX_BACKING_CHAIN = 32;
/** Bytes of L2 tables and of refcount blocks kept in memory (each cache). */
const CACHE_BYTES = 1024 * 1024;
/** Fewest tables a cache keeps, whatever the cluster size. */
const CACHE_MIN_TABLES = 4;

/** Options of {@linkcode Qcow2Image.open}. */
export interface Qcow2OpenOptions {
  readonly: boolean;
  /** Bytes of L2 tables, and again of refcount blocks, to keep in memory (default 1 MiB each). */
  cacheBytes?: number;
}

/** Options of {@linkcode Qcow2Image.fromFile}. */
export interface Qcow2FileOptions {
  /** Bytes of L2 tables, and again of refcount blocks, to keep in memory (default 1 MiB each). */
  cacheBytes?: number;
  /** How many backing levels lie above this image (guards against loops). */
  chainDepth?: number;
}

/** One cluster-sized metadata table held in memory. */
interface CachedTable {
  offset: number;
  data: Uint8Array;
  view: DataView;
  dirty: boolean;
}

/** What an L2 entry says about one guest cluster. */
type Mapping =
  | { kind: "unallocated" }
  | { kind: "zero"; host: number; copied: boolean }
  | { kind: "data"; host: number; copied: boolean }
  | { kind: "compressed"; hi: number; lo: number };

/** A small LRU of metadata tables keyed by file offset; dirty tables are never dropped. */
class TableCache {
  readonly #tables = new Map<number, CachedTable>();
  readonly capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
  }
  get(offset: number): CachedTable | undefined {
    const t = this.#tables.get(offset);
    if (t !== undefined) {
      this.#tables.delete(offset);
      this.#tables.set(offset, t);
    }
    return t;
  }
  has(offset: number): boolean {
    return this.#tables.has(offset);
  }
  add(t: CachedTable): void {
    this.#tables.delete(t.offset);
    this.#tables.set(t.offset, t);
  }
  delete(offset: number): void {
    this.#tables.delete(offset);
  }
  dirty(): CachedTable[] {
    return [...this.#tables.values()].filter((t) => t.dirty).sort((a, b) => a.offset - b.offset);
  }
  /**
   * Drops least recently used clean tables while over capacity; true if still
   * over. The most recently used table always stays: its caller may be about
   * to change it.
   */
  trim(): boolean {
    if (this.#tables.size <= this.capacity) return false;
    const candidates = [...this.#tables.values()].slice(0, -1);
    for (const t of candidates) {
      if (this.#tables.size <= this.capacity) break;
      if (!t.dirty) this.#tables.delete(t.offset);
    }
    return this.#tables.size > this.capacity;
  }
}

function entryOffset(hi: number, lo: number): number {
  return (hi & QCOW2_OFFSET_MASK_HI) * TWO32 + ((lo & QCOW2_OFFSET_MASK_LO) >>> 0);
}

function setEntry(view: DataView, index: number, offset: number, flagsHi: number): void {
  view.setUint32(index * 8, (Math.floor(offset / TWO32) | flagsHi) >>> 0);
  view.setUint32(index * 8 + 4, offset % TWO32);
}

function newTable(offset: number, data: Uint8Array, dirty: boolean): CachedTable {
  return { offset, data, view: new DataView(data.buffer, data.byteOffset, data.byteLength), dirty };
}

/** A qcow2 image. */
export class Qcow2Image implements DiskImage {
  /** Virtual disk size. */
  readonly sizeBytes: number;
  readonly readonly: boolean;
  readonly format = "qcow2" as const;
  /** The image's path. */
  readonly path: string;
  /** qcow2 version (2 or 3). */
  readonly version: 2 | 3;
  /** Cluster size in bytes. */
  readonly clusterBytes: number;
  /** Width of a refcount entry in bits. */
  readonly refcountBits: number;
  /** Path of the backing file as opened (resolved against the image's folder), if any. */
  readonly backingPath?: string;
  /** The open backing image, if any. */
  readonly backing?: DiskImage;

  readonly #file: ImageFile;
  readonly #clusterBits: number;
  readonly #l2Entries: number;
  readonly #refOrder: number;
  readonly #refEntries: number;
  readonly #refMax: number;
  readonly #l1: DataView;
  readonly #l1Bytes: Uint8Array;
  readonly #l1Offset: number;
  readonly #l1Dirty = new Set<number>();
  #reftable: DataView;
  #reftableBytes: Uint8Array;
  #reftableOffset: number;
  #reftableDirty = false;
  readonly #l2Cache: TableCache;
  readonly #refCache: TableCache;
  /** [offset, length] ranges whose refcounts drop once the pointers' removal is on disk. */
  #pendingFrees: [number, number][] = [];
  /** No free cluster lies below this cluster index. */
  #freeHint = 0;
  #inWriteBack = false;
  #inflated: { hi: number; lo: number; data: Uint8Array } | undefined;
  #closed = false;

  private constructor(
    file: ImageFile,
    header: Qcow2Header,
    cacheBytes: number,
    backing?: DiskImage,
    backingPath?: string,
  ) {
    this.#file = file;
    this.path = file.path;
    this.readonly = file.readonly;
    this.version = header.version;
    this.sizeBytes = header.sizeBytes;
    this.#clusterBits = header.clusterBits;
    this.clusterBytes = 2 ** header.clusterBits;
    this.#l2Entries = this.clusterBytes / 8;
    this.#refOrder = header.refcountOrder;
    this.refcountBits = 2 ** header.refcountOrder;
    this.#refEntries = (this.clusterBytes * 8) / this.refcountBits;
    this.#refMax = this.refcountBits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.refcountBits - 1;
    this.backing = backing;
    this.backingPath = backingPath;

    this.#l1Offset = header.l1TableOffset;
    this.#l1Bytes = new Uint8Array(header.l1Size * 8);
    this.#readLenient(this.#l1Offset, this.#l1Bytes);
    this.#l1 = new DataView(this.#l1Bytes.buffer);
    this.#reftableOffset = header.refcountTableOffset;
    this.#reftableBytes = new Uint8Array(header.refcountTableClusters * this.clusterBytes);
    this.#readLenient(this.#reftableOffset, this.#reftableBytes);
    this.#reftable = new DataView(this.#reftableBytes.buffer);
    const tables = Math.max(CACHE_MIN_TABLES, Math.floor(cacheBytes / this.clusterBytes));
    this.#l2Cache = new TableCache(tables);
    this.#refCache = new TableCache(tables);
  }

  /** Opens `path` as a qcow2 image. */
  static open(path: string, options: Qcow2OpenOptions): Qcow2Image {
    const file = ImageFile.open(path, { readonly: options.readonly });
    try {
      return Qcow2Image.fromFile(file, { cacheBytes: options.cacheBytes });
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /**
   * Opens a qcow2 image over an open file (read-only when the file is). On
   * success the image owns the file; on failure the caller still closes it.
   *
   * @throws {DiskFormatError} for invalid or unsupported images
   * @throws {DiskOpenError} when a backing file cannot be opened
   */
  static fromFile(file: ImageFile, options: Qcow2FileOptions = {}): Qcow2Image {
    const chainDepth = options.chainDepth ?? 0;
    const path = file.path;
    const first = new Uint8Array(QCOW2_HEADER_V3_BYTES);
    const got = file.readUpTo(0, first);
    const head = new Uint8Array(qcow2HeaderBytesNeeded(first.subarray(0, got)));
    const headBytes = file.readUpTo(0, head);
    const header = parseQcow2Header(head.subarray(0, headBytes), path);

    const dirty = (header.incompatibleFeatures & (1n << BigInt(QCOW2_INCOMPAT_DIRTY))) !== 0n;
    const corrupt = (header.incompatibleFeatures & (1n << BigInt(QCOW2_INCOMPAT_CORRUPT))) !== 0n;
    if (!file.readonly && corrupt) {
      throw new DiskFormatError(
        path,
        `Disk image "${path}" is marked corrupt: open it read-only or repair it with ` +
          `"qemu-img check -r all ${path}"`,
      );
    }
    if (!file.readonly && dirty) {
      throw new DiskFormatError(
        path,
        `Disk image "${path}" has the qcow2 dirty bit set (its refcounts may be stale): open it ` +
          `read-only or repair it with "qemu-img check -r all ${path}"`,
      );
    }

    let backing: DiskImage | undefined;
    let backingPath: string | undefined;
    if (header.backingFile !== undefined) {
      if (header.backingFile.startsWith("json:")) {
        throw new DiskFormatError(
          path,
          `Backing file of disk image "${path}" is a "json:" description: not supported`,
        );
      }
      backingPath = resolveBackingPath(path, header.backingFile);
      backing = openBacking(path, backingPath, header.backingFormat, chainDepth + 1);
    }
    try {
      const image = new Qcow2Image(
        file,
        header,
        options.cacheBytes ?? CACHE_BYTES,
        backing,
        backingPath,
      );
      if (!file.readonly && header.autoclearFeatures !== 0n) image.#clearAutoclear();
      return image;
    } catch (e) {
      backing?.close();
      throw e;
    }
  }

  /**
   * We update none of the structures the auto-clear bits vouch for (bitmaps),
   * so the spec has a writer clear them before its first write.
   */
  #clearAutoclear(): void {
    // With the bitmaps bit clear, QEMU treats the stored bitmaps as stale (and may report
    // their clusters as leaked until "qemu-img check -r leaks").
    this.#file.write(QCOW2_HDR_AUTOCLEAR_FEATURES, new Uint8Array(8));
    this.#file.syncData();
  }

  // ---- reads ----

  /** @inheritdoc */
  read(offset: number, into: Uint8Array): void {
    this.#checkOpen();
    checkDiskRange(this.path, offset, into.length, this.sizeBytes);
    const cs = this.clusterBytes;
    // Consecutive data clusters that are also consecutive in the file become one read.
    let runHost = 0;
    let runStart = 0;
    let runLength = 0;
    const flushRun = () => {
      if (runLength > 0) this.#readLenient(runHost, into.subarray(runStart, runStart + runLength));
      runLength = 0;
    };
    let pos = 0;
    while (pos < into.length) {
      const guest = offset + pos;
      const inCluster = guest % cs;
      const n = Math.min(cs - inCluster, into.length - pos);
      const [hi, lo] = this.#l2Entry(guest);
      const m = this.#decode(hi, lo);
      if (m.kind === "data") {
        const host = m.host + inCluster;
        if (runLength > 0 && runHost + runLength === host) {
          runLength += n;
        } else {
          flushRun();
          runHost = host;
          runStart = pos;
          runLength = n;
        }
      } else {
        flushRun();
        const chunk = into.subarray(pos, pos + n);
        if (m.kind === "zero") chunk.fill(0);
        else if (m.kind === "unallocated") this.#readBacking(guest, chunk);
        else chunk.set(this.#inflate(m.hi, m.lo).subarray(inCluster, inCluster + n));
      }
      pos += n;
    }
    flushRun();
  }

  /** Reads what the backing file has at `guest` (zeros past its end, or without one). */
  #readBacking(guest: number, into: Uint8Array): void {
    const limit = Math.min(this.backing?.sizeBytes ?? 0, this.sizeBytes);
    const available = Math.max(0, Math.min(into.length, limit - guest));
    if (available > 0) this.backing!.read(guest, into.subarray(0, available));
    into.fill(0, available);
  }

  /** Reads file bytes; past the end of the file reads zeros (an image may end inside its last cluster). */
  #readLenient(offset: number, into: Uint8Array): void {
    const n = this.#file.readUpTo(offset, into);
    if (n < into.length) into.fill(0, n);
  }

  /** The L2 entry (high and low 32 bits) of the guest cluster holding `guest`; [0, 0] if none. */
  #l2Entry(guest: number): [number, number] {
    const cluster = Math.floor(guest / this.clusterBytes);
    const l1Index = Math.floor(cluster / this.#l2Entries);
    const l2Offset = this.#l2TableOffset(l1Index);
    if (l2Offset === 0) return [0, 0];
    const table = this.#loadTable(this.#l2Cache, l2Offset);
    const i = cluster % this.#l2Entries;
    return [table.view.getUint32(i * 8), table.view.getUint32(i * 8 + 4)];
  }

  #l2TableOffset(l1Index: number): number {
    const offset = entryOffset(
      this.#l1.getUint32(l1Index * 8),
      this.#l1.getUint32(l1Index * 8 + 4),
    );
    if (offset % this.clusterBytes !== 0) {
      this.#corrupt(`L1 entry ${l1Index} points at unaligned offset ${offset}`);
    }
    return offset;
  }

  #decode(hi: number, lo: number): Mapping {
    if ((hi & QCOW2_OFLAG_COMPRESSED_HI) !== 0) return { kind: "compressed", hi, lo };
    const host = entryOffset(hi, lo);
    const copied = (hi & QCOW2_OFLAG_COPIED_HI) !== 0;
    // Version 2 has no zero flag: bit 0 is reserved there.
    if (this.version >= 3 && (lo & QCOW2_OFLAG_ZERO_LO) !== 0) {
      return { kind: "zero", host, copied };
    }
    if (host === 0) return { kind: "unallocated" };
    if (host % this.clusterBytes !== 0) this.#corrupt(`a data cluster at unaligned offset ${host}`);
    return { kind: "data", host, copied };
  }

  /** File range [start, length) of a compressed cluster's data. */
  #compressedRange(hi: number, lo: number): [number, number] {
    const offsetBits = 70 - this.#clusterBits; // bits 0..offsetBits-1 hold the host offset
    const hiOffsetBits = offsetBits - 32;
    const offsetHi = hi & ((1 << hiOffsetBits) - 1);
    if (offsetHi >= 2 ** 21) this.#corrupt("a compressed cluster beyond 8 PiB");
    const start = offsetHi * TWO32 + lo;
    const sectorBits = 62 - offsetBits;
    const sectors = ((hi >>> hiOffsetBits) & ((1 << sectorBits) - 1)) + 1;
    return [
      start,
      sectors * QCOW2_COMPRESSED_SECTOR_BYTES - (start % QCOW2_COMPRESSED_SECTOR_BYTES),
    ];
  }

  /** The cluster a compressed entry describes (the last one is kept: reads come in pieces). */
  #inflate(hi: number, lo: number): Uint8Array {
    const last = this.#inflated;
    if (last !== undefined && last.hi === hi && last.lo === lo) return last.data;
    const [start, length] = this.#compressedRange(hi, lo);
    const packed = new Uint8Array(length);
    const n = this.#file.readUpTo(start, packed);
    let data: Uint8Array;
    try {
      data = inflateRaw(packed.subarray(0, n), this.clusterBytes);
    } catch (e) {
      this.#corrupt(
        `the compressed cluster at offset ${start} does not inflate (${(e as Error).message})`,
      );
    }
    if (data.length < this.clusterBytes) {
      this.#corrupt(`the compressed cluster at offset ${start} inflates to ${data.length} bytes`);
    }
    const cluster = new Uint8Array(data.buffer, data.byteOffset, this.clusterBytes);
    this.#inflated = { hi, lo, data: cluster };
    return cluster;
  }

  // ---- writes ----

  /** @inheritdoc */
  write(offset: number, data: Uint8Array): void {
    this.#checkOpen();
    if (this.readonly) throw new DiskReadOnlyError(this.path);
    checkDiskRange(this.path, offset, data.length, this.sizeBytes);
    const cs = this.clusterBytes;
    let runHost = 0;
    let runStart = 0;
    let runLength = 0;
    const flushRun = () => {
      if (runLength > 0) this.#file.write(runHost, data.subarray(runStart, runStart + runLength));
      runLength = 0;
    };
    let pos = 0;
    while (pos < data.length) {
      const guest = offset + pos;
      const inCluster = guest % cs;
      const n = Math.min(cs - inCluster, data.length - pos);
      const host = this.#inPlaceHost(guest);
      if (host !== undefined) {
        if (runLength > 0 && runHost + runLength === host + inCluster) {
          runLength += n;
        } else {
          flushRun();
          runHost = host + inCluster;
          runStart = pos;
          runLength = n;
        }
      } else {
        flushRun();
        this.#writeNewCluster(guest - inCluster, inCluster, data.subarray(pos, pos + n));
      }
      pos += n;
    }
    flushRun();
  }

  /**
   * The host cluster a guest cluster can be overwritten in, if it has one of
   * its own (refcount exactly 1); undefined when a write must allocate.
   */
  #inPlaceHost(guest: number): number | undefined {
    const [hi, lo] = this.#l2Entry(guest);
    const m = this.#decode(hi, lo);
    if (m.kind !== "data") return undefined;
    if (!m.copied) {
      const refcount = this.#refcount(m.host / this.clusterBytes);
      if (refcount === 0) this.#corrupt(`guest data at offset ${m.host} has refcount 0`);
      if (refcount !== 1) return undefined;
      // Not shared after all: note it, as QEMU does, and write in place.
      this.#setL2Entry(guest, m.host);
    }
    this.#guardMetadata(m.host);
    return m.host;
  }

  /** Gives a guest cluster new contents in a cluster of its own (copy-on-write). */
  #writeNewCluster(guestCluster: number, inCluster: number, chunk: Uint8Array): void {
    const cs = this.clusterBytes;
    const [hi, lo] = this.#l2Entry(guestCluster);
    const m = this.#decode(hi, lo);
    let contents = chunk;
    if (inCluster !== 0 || chunk.length !== cs) {
      contents = this.#clusterContents(guestCluster, m);
      contents.set(chunk, inCluster);
    }
    // A preallocated zero cluster of our own is reused: its old bytes are all overwritten.
    let reuse = false;
    let dest: number;
    if (m.kind === "zero" && m.host !== 0) {
      reuse = m.copied || this.#refcount(m.host / cs) === 1;
    }
    if (reuse && m.kind === "zero") {
      this.#guardMetadata(m.host);
      dest = m.host;
    } else {
      dest = this.#allocateCluster();
    }
    this.#file.write(dest, contents);
    this.#setL2Entry(guestCluster, dest);
    if (reuse) return;
    if ((m.kind === "data" || m.kind === "zero") && m.host !== 0) {
      this.#pendingFrees.push([m.host, cs]);
    } else if (m.kind === "compressed") {
      this.#pendingFrees.push(this.#compressedRange(m.hi, m.lo));
    }
  }

  /** What a guest cluster reads as now, as a fresh buffer. */
  #clusterContents(guestCluster: number, m: Mapping): Uint8Array {
    const out = new Uint8Array(this.clusterBytes);
    if (m.kind === "data") this.#readLenient(m.host, out);
    else if (m.kind === "unallocated") this.#readBacking(guestCluster, out);
    else if (m.kind === "compressed") out.set(this.#inflate(m.hi, m.lo));
    return out;
  }

  /** Points a guest cluster at `host` (refcount 1, so the COPIED flag is set). */
  #setL2Entry(guest: number, host: number): void {
    const cluster = Math.floor(guest / this.clusterBytes);
    const table = this.#writableL2(Math.floor(cluster / this.#l2Entries));
    setEntry(table.view, cluster % this.#l2Entries, host, QCOW2_OFLAG_COPIED_HI);
    table.dirty = true;
  }

  /** The L2 table of an L1 slot, made our own: allocated when absent, copied when shared. */
  #writableL2(l1Index: number): CachedTable {
    const hi = this.#l1.getUint32(l1Index * 8);
    const old = this.#l2TableOffset(l1Index);
    if (old !== 0) {
      if ((hi & QCOW2_OFLAG_COPIED_HI) !== 0) return this.#loadTable(this.#l2Cache, old);
      if (this.#refcount(old / this.clusterBytes) === 1) {
        this.#setL1Entry(l1Index, old);
        return this.#loadTable(this.#l2Cache, old);
      }
    }
    const offset = this.#allocateCluster();
    const data = new Uint8Array(this.clusterBytes);
    if (old !== 0) data.set(this.#loadTable(this.#l2Cache, old).data);
    const table = newTable(offset, data, true);
    this.#l2Cache.add(table);
    this.#setL1Entry(l1Index, offset);
    if (old !== 0) this.#pendingFrees.push([old, this.clusterBytes]);
    this.#trim(this.#l2Cache);
    return table;
  }

  #setL1Entry(l1Index: number, l2Offset: number): void {
    setEntry(this.#l1, l1Index, l2Offset, QCOW2_OFLAG_COPIED_HI);
    this.#l1Dirty.add(l1Index);
  }

  /**
   * In-place writes must never land on metadata: a crafted image could point
   * a guest cluster at the header or a table.
   */
  #guardMetadata(host: number): void {
    const end = host + this.clusterBytes;
    const overlaps = (start: number, length: number) => host < start + length && start < end;
    if (
      host === 0 || overlaps(this.#l1Offset, this.#l1Bytes.length) ||
      overlaps(this.#reftableOffset, this.#reftableBytes.length) || this.#l2Cache.has(host) ||
      this.#refCache.has(host)
    ) {
      this.#corrupt(`a guest cluster maps onto metadata at offset ${host}`);
    }
  }

  // ---- refcounts and allocation ----

  get #reftableEntries(): number {
    return this.#reftableBytes.length / 8;
  }

  #refblockOffset(index: number): number {
    const offset = entryOffset(
      this.#reftable.getUint32(index * 8),
      this.#reftable.getUint32(index * 8 + 4),
    );
    if (offset % this.clusterBytes !== 0) {
      this.#corrupt(`refcount table entry ${index} points at unaligned offset ${offset}`);
    }
    return offset;
  }

  #refcount(cluster: number): number {
    const index = Math.floor(cluster / this.#refEntries);
    if (index >= this.#reftableEntries) return 0;
    const offset = this.#refblockOffset(index);
    if (offset === 0) return 0;
    return this.#getRef(this.#loadTable(this.#refCache, offset).view, cluster % this.#refEntries);
  }

  #getRef(view: DataView, i: number): number {
    switch (this.#refOrder) {
      case 3:
        return view.getUint8(i);
      case 4:
        return view.getUint16(i * 2);
      case 5:
        return view.getUint32(i * 4);
      case 6:
        return view.getUint32(i * 8) * TWO32 + view.getUint32(i * 8 + 4);
      default: {
        // 1, 2 or 4 bits: entry 0 is in the least significant bits of byte 0.
        const bit = i * this.refcountBits;
        return (view.getUint8(bit >>> 3) >>> (bit & 7)) & this.#refMax;
      }
    }
  }

  #setRef(view: DataView, i: number, value: number): void {
    switch (this.#refOrder) {
      case 3:
        return view.setUint8(i, value);
      case 4:
        return view.setUint16(i * 2, value);
      case 5:
        return view.setUint32(i * 4, value);
      case 6:
        view.setUint32(i * 8, Math.floor(value / TWO32));
        return view.setUint32(i * 8 + 4, value % TWO32);
      default: {
        const bit = i * this.refcountBits;
        const shift = bit & 7;
        const old = view.getUint8(bit >>> 3) & ~(this.#refMax << shift);
        return view.setUint8(bit >>> 3, old | (value << shift));
      }
    }
  }

  #changeRefcount(cluster: number, delta: number): void {
    const index = Math.floor(cluster / this.#refEntries);
    const offset = index < this.#reftableEntries ? this.#refblockOffset(index) : 0;
    if (offset === 0) this.#corrupt(`cluster ${cluster} has no refcount block`);
    const table = this.#loadTable(this.#refCache, offset);
    const i = cluster % this.#refEntries;
    const value = this.#getRef(table.view, i) + delta;
    if (value < 0) this.#corrupt(`the refcount of cluster ${cluster} drops below 0`);
    if (value > this.#refMax) {
      throw new DiskFormatError(
        this.path,
        `Refcount of cluster ${cluster} in "${this.path}" overflows ${this.refcountBits} bits`,
      );
    }
    this.#setRef(table.view, i, value);
    table.dirty = true;
    if (value === 0) {
      const host = cluster * this.clusterBytes;
      // A freed table's cached copy must not outlive it: the cluster may come back as data.
      this.#l2Cache.delete(host);
      this.#refCache.delete(host);
      this.#inflated = undefined;
      this.#freeHint = Math.min(this.#freeHint, cluster);
    }
  }

  #changeRefcountRange(offset: number, length: number, delta: number): void {
    const first = Math.floor(offset / this.clusterBytes);
    const last = Math.floor((offset + length - 1) / this.clusterBytes);
    for (let c = first; c <= last; c++) this.#changeRefcount(c, delta);
  }

  /** Finds a free cluster, counts it (in the cache) and returns its file offset. */
  #allocateCluster(): number {
    for (;;) {
      const cluster = this.#freeHint;
      const index = Math.floor(cluster / this.#refEntries);
      if (index >= this.#reftableEntries) {
        this.#growRefcountTable(cluster);
        continue;
      }
      if (this.#refblockOffset(index) === 0) {
        // No block counts this range yet: the free cluster itself becomes that block.
        const table = newTable(
          cluster * this.clusterBytes,
          new Uint8Array(this.clusterBytes),
          true,
        );
        this.#setRef(table.view, cluster % this.#refEntries, 1);
        setEntry(this.#reftable, index, table.offset, 0);
        this.#reftableDirty = true;
        this.#refCache.add(table);
        this.#freeHint = cluster + 1;
        this.#trim(this.#refCache);
        continue;
      }
      this.#freeHint = cluster + 1;
      if (this.#refcount(cluster) === 0) {
        this.#changeRefcount(cluster, 1);
        this.#inflated = undefined;
        return cluster * this.clusterBytes;
      }
    }
  }

  /**
   * Moves the refcount table to a bigger one at `firstFree` (where no cluster
   * is counted or used), followed by the refcount blocks that count the new
   * table and themselves. The header switches over only once both are on disk.
   */
  #growRefcountTable(firstFree: number): void {
    const cs = this.clusterBytes;
    const per = this.#refEntries;
    let entries = Math.max(this.#reftableEntries * 2, Math.floor(firstFree / per) + 1);
    let tableClusters: number;
    let blocks: number;
    let end: number;
    for (;;) {
      tableClusters = Math.ceil((entries * 8) / cs);
      blocks = 1;
      for (;;) {
        end = firstFree + tableClusters + blocks;
        const needed = Math.floor((end - 1) / per) - Math.floor(firstFree / per) + 1;
        if (needed <= blocks) break;
        blocks = needed;
      }
      if (Math.floor((end - 1) / per) < entries) break;
      entries = Math.floor((end - 1) / per) + 1;
    }
    if (tableClusters * cs > QCOW2_MAX_REFTABLE_BYTES) {
      throw new DiskIoError(
        this.path,
        `Disk image "${this.path}" is full: its refcount table cannot grow`,
      );
    }

    const bytes = new Uint8Array(tableClusters * cs);
    bytes.set(this.#reftableBytes);
    const view = new DataView(bytes.buffer);
    const firstIndex = Math.floor(firstFree / per);
    const newBlocks: CachedTable[] = [];
    for (let b = 0; b < blocks; b++) {
      const table = newTable((firstFree + tableClusters + b) * cs, new Uint8Array(cs), true);
      setEntry(view, firstIndex + b, table.offset, 0);
      newBlocks.push(table);
    }
    for (let c = firstFree; c < end; c++) {
      this.#setRef(newBlocks[Math.floor(c / per) - firstIndex].view, c % per, 1);
    }

    const oldOffset = this.#reftableOffset;
    const oldLength = this.#reftableBytes.length;
    this.#reftableBytes = bytes;
    this.#reftable = view;
    this.#reftableOffset = firstFree * cs;
    this.#reftableDirty = true;
    for (const t of newBlocks) this.#refCache.add(t);
    this.#writeRefcounts();
    this.#file.syncData();
    const fields = new Uint8Array(12);
    const fv = new DataView(fields.buffer);
    fv.setBigUint64(0, BigInt(this.#reftableOffset));
    fv.setUint32(8, tableClusters);
    this.#file.write(QCOW2_HDR_REFCOUNT_TABLE_OFFSET, fields);
    this.#file.syncData();
    this.#freeHint = end;
    // The header names the new table on disk now, so the old one is free.
    this.#changeRefcountRange(oldOffset, oldLength, -1);
    this.#trim(this.#refCache);
  }

  // ---- caches and write-back ----

  #loadTable(cache: TableCache, offset: number): CachedTable {
    const cached = cache.get(offset);
    if (cached !== undefined) return cached;
    const data = new Uint8Array(this.clusterBytes);
    this.#readLenient(offset, data);
    const table = newTable(offset, data, false);
    cache.add(table);
    this.#trim(cache);
    return table;
  }

  /** Keeps a cache within bounds; dirty tables leave only after a write-back. */
  #trim(cache: TableCache): void {
    if (cache.trim() && !this.#inWriteBack) {
      this.#writeBackMetadata();
      cache.trim();
    }
  }

  /** Writes dirty refcount blocks, then (after a sync) the refcount table if it changed. */
  #writeRefcounts(): void {
    for (const t of this.#refCache.dirty()) {
      this.#file.write(t.offset, t.data);
      t.dirty = false;
    }
    if (this.#reftableDirty) {
      this.#file.syncData(); // new blocks before the table entries naming them
      this.#file.write(this.#reftableOffset, this.#reftableBytes);
      this.#reftableDirty = false;
    }
  }

  #writeL1(): void {
    const indices = [...this.#l1Dirty].sort((a, b) => a - b);
    this.#l1Dirty.clear();
    let i = 0;
    while (i < indices.length) {
      let j = i + 1;
      while (j < indices.length && indices[j] === indices[j - 1] + 1) j++;
      const start = indices[i] * 8;
      const stop = indices[j - 1] * 8 + 8;
      this.#file.write(this.#l1Offset + start, this.#l1Bytes.subarray(start, stop));
      i = j;
    }
  }

  /** Writes all cached metadata in crash-safe order (see the module comment). */
  #writeBackMetadata(): void {
    if (this.#inWriteBack) return;
    this.#inWriteBack = true;
    try {
      const l2 = this.#l2Cache.dirty();
      const l1 = this.#l1Dirty.size > 0;
      this.#writeRefcounts();
      if (l2.length > 0 || l1) {
        this.#file.syncData(); // data and refcounts before anything points at them
        for (const t of l2) {
          this.#file.write(t.offset, t.data);
          t.dirty = false;
        }
        if (l1) {
          if (l2.length > 0) this.#file.syncData(); // L2 tables before the L1 entries naming them
          this.#writeL1();
        }
      }
      if (this.#pendingFrees.length > 0) {
        this.#file.syncData(); // the pointers are gone on disk before the counts drop
        const frees = this.#pendingFrees;
        this.#pendingFrees = [];
        for (const [offset, length] of frees) this.#changeRefcountRange(offset, length, -1);
        this.#writeRefcounts();
      }
    } finally {
      this.#inWriteBack = false;
    }
  }

  // ---- lifecycle ----

  /** @inheritdoc */
  flush(): void {
    this.#checkOpen();
    if (this.readonly) return;
    this.#writeBackMetadata();
    this.#file.syncData();
  }

  /** @inheritdoc */
  close(): void {
    if (this.#closed) return;
    try {
      if (!this.readonly) this.flush();
    } finally {
      this.#closed = true;
      this.#file.close();
      this.backing?.close();
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new DiskIoError(this.path, `Disk image "${this.path}" is closed`);
  }

  #corrupt(why: string): never {
    throw new DiskFormatError(this.path, `Corrupt qcow2 image "${this.path}": ${why}`);
  }
}

/** A backing file name resolved the way QEMU does: relative to the image's folder. */
export function resolveBackingPath(imagePath: string, backingFile: string): string {
  // POSIX paths, normalized like path.join, by hand: importing node:path costs the vCPU thread
  // ~15 ms of start-up.
  const joined = backingFile.startsWith("/")
    ? backingFile
    : `${imagePath.slice(0, imagePath.lastIndexOf("/") + 1) || "./"}${backingFile}`;
  const parts: string[] = [];
  for (const part of joined.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && parts.length && parts[parts.length - 1] !== "..") parts.pop();
    else if (part !== ".." || !joined.startsWith("/")) parts.push(part);
  }
  const path = parts.join("/");
  return joined.startsWith("/") ? `/${path}` : path || ".";
}

function openBacking(
  imagePath: string,
  backingPath: string,
  format: string | undefined,
  depth: number,
): DiskImage {
  const context = `Backing file "${backingPath}" of disk image "${imagePath}"`;
  if (format !== undefined && format !== "raw" && format !== "qcow2") {
    throw new DiskFormatError(
      imagePath,
      `${context} has format "${format}": only raw and qcow2 backing files are supported`,
    );
  }
  if (depth > QCOW2_MAX_BACKING_CHAIN) {
    throw new DiskFormatError(
      imagePath,
      `${context} is more than ${QCOW2_MAX_BACKING_CHAIN} levels deep (a backing loop?)`,
    );
  }
  let file: ImageFile;
  try {
    file = ImageFile.open(backingPath, { readonly: true });
  } catch (e) {
    throw rewrap(e, imagePath, context);
  }
  try {
    const kind = format ?? probeFormat(file);
    return kind === "qcow2" ? Qcow2Image.fromFile(file, { chainDepth: depth }) : new RawImage(file);
  } catch (e) {
    file.close();
    throw rewrap(e, imagePath, context);
  }
}

function rewrap(e: unknown, imagePath: string, context: string): unknown {
  if (!(e instanceof DiskError)) return e;
  // Messages of nested backing files already start with their own context.
  const message = e.message.startsWith("Backing file ") ? e.message : `${context}: ${e.message}`;
  if (e instanceof DiskFormatError) return new DiskFormatError(imagePath, message, { cause: e });
  return new DiskOpenError(imagePath, message, { cause: e });
}
