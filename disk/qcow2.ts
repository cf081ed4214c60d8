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
 * The image's metadata is checked before it is believed (qcow2_check.ts):
 * a corrupt image is refused, never repaired or written over. The parts:
 * qcow2_map.ts (L1/L2), qcow2_refcounts.ts (counts, allocation),
 * qcow2_cache.ts (cached tables), qcow2_backing.ts (backing files and their
 * policy), qcow2_format.ts (the on-disk layout).
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
import { checkDiskRange, DiskFormatError, DiskIoError, DiskReadOnlyError } from "./errors.ts";
import { type BlockFile, ImageFile } from "./file.ts";
import type { DiskImage } from "./image.ts";
import {
  type BackingChain,
  type BackingPolicy,
  fileIdentity,
  openBacking,
  resolveBackingPath,
} from "./qcow2_backing.ts";
import { checkQcow2Image, type ClusterUse, qcow2GrowthLimitBytes } from "./qcow2_check.ts";
import { ClusterMap, type Mapping } from "./qcow2_map.ts";
import { type ClusterKind, RefcountAllocator } from "./qcow2_refcounts.ts";
import {
  parseQcow2Header,
  QCOW2_HDR_AUTOCLEAR_FEATURES,
  QCOW2_HEADER_V3_BYTES,
  QCOW2_INCOMPAT_CORRUPT,
  QCOW2_INCOMPAT_DIRTY,
  qcow2CompressedRange,
  type Qcow2Header,
  qcow2HeaderBytesNeeded,
} from "./qcow2_format.ts";

/** Bytes of L2 tables and of refcount blocks kept in memory (each cache). */
const CACHE_BYTES = 1024 * 1024;
/** Fewest tables a cache keeps, whatever the cluster size. */
const CACHE_MIN_TABLES = 4;

/** Options of {@linkcode Qcow2Image.open}. */
export interface Qcow2OpenOptions {
  readonly: boolean;
  /** Who may open which backing files (default: whatever this process can open). */
  backing?: BackingPolicy;
  /** Bytes of L2 tables, and again of refcount blocks, to keep in memory (default 1 MiB each). */
  cacheBytes?: number;
}

/** Options of {@linkcode Qcow2Image.fromFile}. */
export interface Qcow2FileOptions {
  /** Bytes of L2 tables, and again of refcount blocks, to keep in memory (default 1 MiB each). */
  cacheBytes?: number;
  /** Who may open which backing files (default: whatever this process can open). */
  backing?: BackingPolicy;
  /** The images above this one when it is a backing file (their policy applies). */
  chain?: BackingChain;
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

  readonly #file: BlockFile;
  readonly #clusterBits: number;
  readonly #map: ClusterMap;
  readonly #refcounts: RefcountAllocator;
  /** What the tables say each host cluster holds (writable images only). */
  readonly #use: ClusterUse | undefined;
  /** [offset, length] ranges whose refcounts drop once the pointers' removal is on disk. */
  #pendingFrees: [number, number][] = [];
  #inWriteBack = false;
  #inflated: { hi: number; lo: number; data: Uint8Array } | undefined;
  #closed = false;

  private constructor(
    file: BlockFile,
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
    this.refcountBits = 2 ** header.refcountOrder;
    this.backing = backing;
    this.backingPath = backingPath;

    const cacheTables = Math.max(CACHE_MIN_TABLES, Math.floor(cacheBytes / this.clusterBytes));
    const readLenient = (offset: number, into: Uint8Array) => this.#readLenient(offset, into);
    const writeBackAll = () => this.#writeBackMetadata();
    const corrupt = (why: string) => this.#corrupt(why);
    this.#refcounts = new RefcountAllocator({
      file,
      clusterBits: header.clusterBits,
      refcountOrder: header.refcountOrder,
      reftableOffset: header.refcountTableOffset,
      reftableClusters: header.refcountTableClusters,
      cacheTables,
      readLenient,
      writeBackAll,
      freed: (host) => {
        this.#map.forget(host);
        this.#inflated = undefined;
      },
      corrupt,
    });
    this.#map = new ClusterMap({
      file,
      version: header.version,
      clusterBits: header.clusterBits,
      l1Offset: header.l1TableOffset,
      l1Entries: header.l1Size,
      cacheTables,
      readLenient,
      writeBackAll,
      allocateTable: () => this.#allocate("metadata"),
      refcount: (cluster) => this.#refcounts.get(cluster),
      releaseLater: (offset, length) => this.#pendingFrees.push([offset, length]),
      corrupt,
    });
    const fileBytes = file.sizeBytes();
    const map = this.#map;
    const refcounts = this.#refcounts;
    this.#use = checkQcow2Image({
      version: header.version,
      clusterBits: header.clusterBits,
      fileBytes,
      l1Offset: header.l1TableOffset,
      l1Entries: header.l1Size,
      l2TableOffset: (i) => map.l2TableOffset(i),
      decode: (hi, lo) => map.decode(hi, lo),
      nbSnapshots: header.nbSnapshots,
      snapshotsOffset: header.snapshotsOffset,
      reftableOffset: header.refcountTableOffset,
      reftableBytes: refcounts.tableBytes,
      reftableEntries: refcounts.tableEntries,
      refblockOffset: (i) => refcounts.blockOffset(i),
      refcount: (c) => refcounts.get(c),
      readLenient,
      corrupt,
    }, !file.readonly);
    if (this.#use !== undefined) {
      const limit = qcow2GrowthLimitBytes(
        fileBytes,
        header.sizeBytes,
        header.clusterBits,
        this.refcountBits,
        header.l1Size,
      );
      refcounts.guard(this.#use, limit);
    }
  }

  /** Opens `path` as a qcow2 image. */
  static open(path: string, options: Qcow2OpenOptions): Qcow2Image {
    const file = ImageFile.open(path, { readonly: options.readonly });
    try {
      return Qcow2Image.fromFile(file, {
        cacheBytes: options.cacheBytes,
        backing: options.backing,
      });
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
  static fromFile(file: BlockFile, options: Qcow2FileOptions = {}): Qcow2Image {
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
      const chain = options.chain ?? {
        policy: options.backing ?? {},
        identities: file instanceof ImageFile ? [fileIdentity(file.stat())] : [],
        paths: [path],
      };
      backing = openBacking(
        path,
        backingPath,
        header.backingFormat,
        chain,
        (f, next) => Qcow2Image.fromFile(f, { chain: next }),
      );
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
      const m = this.#map.lookup(guest);
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

  /** File range [start, length) of a compressed cluster's data. */
  #compressedRange(hi: number, lo: number): [number, number] {
    return qcow2CompressedRange(this.#clusterBits, hi, lo) ??
      this.#corrupt("a compressed cluster beyond 8 PiB");
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
    const m = this.#map.lookup(guest);
    if (m.kind !== "data") return undefined;
    if (!m.copied) {
      const refcount = this.#refcounts.get(m.host / this.clusterBytes);
      if (refcount === 0) this.#corrupt(`guest data at offset ${m.host} has refcount 0`);
      if (refcount !== 1) return undefined;
      // Not shared after all: note it, as QEMU does, and write in place.
      this.#map.set(guest, m.host);
    }
    this.#guardMetadata(m.host);
    if (this.#use?.isShared(m.host / this.clusterBytes)) {
      this.#corrupt(`host cluster at offset ${m.host} is named by more than one L2 entry`);
    }
    return m.host;
  }

  /** Gives a guest cluster new contents in a cluster of its own (copy-on-write). */
  #writeNewCluster(guestCluster: number, inCluster: number, chunk: Uint8Array): void {
    const cs = this.clusterBytes;
    const m = this.#map.lookup(guestCluster);
    let contents = chunk;
    if (inCluster !== 0 || chunk.length !== cs) {
      contents = this.#clusterContents(guestCluster, m);
      contents.set(chunk, inCluster);
    }
    // A preallocated zero cluster of our own is reused: its old bytes are all overwritten.
    let reuse = false;
    let dest: number;
    if (m.kind === "zero" && m.host !== 0) {
      reuse = m.copied || this.#refcounts.get(m.host / cs) === 1;
    }
    if (reuse && m.kind === "zero") {
      this.#guardMetadata(m.host);
      dest = m.host;
    } else {
      dest = this.#allocate("data");
    }
    this.#file.write(dest, contents);
    this.#map.set(guestCluster, dest);
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

  /** A new counted cluster (for data or an L2 table). */
  #allocate(kind: ClusterKind): number {
    const host = this.#refcounts.allocate(kind);
    this.#inflated = undefined;
    return host;
  }

  /**
   * In-place writes must never land on metadata: a crafted image could point
   * a guest cluster at the header or a table.
   */
  #guardMetadata(host: number): void {
    const end = host + this.clusterBytes;
    const overlaps = (start: number, length: number) => host < start + length && start < end;
    if (
      host === 0 || overlaps(this.#map.l1Offset, this.#map.l1Bytes) ||
      overlaps(this.#refcounts.tableOffset, this.#refcounts.tableBytes) ||
      this.#map.cachesTable(host) || this.#refcounts.cachesBlock(host) ||
      this.#use?.isMetadata(host / this.clusterBytes)
    ) {
      this.#corrupt(`a guest cluster maps onto metadata at offset ${host}`);
    }
  }

  // ---- write-back ----

  /** Writes all cached metadata in crash-safe order (see the module comment). */
  #writeBackMetadata(): void {
    if (this.#inWriteBack) return;
    this.#inWriteBack = true;
    try {
      const l2 = this.#map.dirtyTables();
      const l1 = this.#map.l1Dirty;
      this.#refcounts.writeBack();
      if (l2.length > 0 || l1) {
        this.#file.syncData(); // data and refcounts before anything points at them
        for (const t of l2) {
          this.#file.write(t.offset, t.data);
          t.dirty = false;
        }
        if (l1) {
          if (l2.length > 0) this.#file.syncData(); // L2 tables before the L1 entries naming them
          this.#map.writeL1();
        }
      }
      if (this.#pendingFrees.length > 0) {
        this.#file.syncData(); // the pointers are gone on disk before the counts drop
        const frees = this.#pendingFrees;
        this.#pendingFrees = [];
        for (const [offset, length] of frees) this.#refcounts.changeRange(offset, length, -1);
        this.#refcounts.writeBack();
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
    throw new DiskFormatError(
      this.path,
      `Corrupt qcow2 image "${this.path}": ${why}; check and repair it with ` +
        `"qemu-img check -r all ${this.path}"`,
    );
  }
}
