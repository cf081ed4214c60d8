/**
 * The qcow2 refcount allocator: reads and changes cluster reference counts
 * (through the refcount table and cached refcount blocks), finds free
 * clusters, and grows the refcount table when the file outgrows it.
 *
 * Changes stay in the cache until {@linkcode RefcountAllocator.writeBack};
 * the image decides when, so that counts reach the disk before the pointers
 * that need them (see qcow2.ts).
 *
 * @module
 */

import { DiskFormatError, DiskIoError } from "./errors.ts";
import type { BlockFile } from "./file.ts";
import type { ClusterUse } from "./qcow2_check.ts";
import { MetadataCache, type MetadataTable, metadataTable } from "./qcow2_cache.ts";
import {
  QCOW2_HDR_REFCOUNT_TABLE_OFFSET,
  QCOW2_MAX_REFTABLE_BYTES,
  qcow2EntryOffset,
  qcow2SetEntry,
} from "./qcow2_format.ts";

const TWO32 = 2 ** 32;

/** How the allocator is set up ({@linkcode RefcountAllocator}). */
export interface RefcountAllocatorOptions {
  file: BlockFile;
  clusterBits: number;
  refcountOrder: number;
  reftableOffset: number;
  reftableClusters: number;
  /** Refcount blocks to keep in memory. */
  cacheTables: number;
  /** Reads file bytes, zeros past the end. */
  readLenient(offset: number, into: Uint8Array): void;
  /** Writes all dirty metadata back (when the cache is full of dirty blocks). */
  writeBackAll(): void;
  /** A cluster's refcount dropped to 0: forget anything cached about its contents. */
  freed(host: number): void;
  /** Throws the image's "corrupt" error. */
  corrupt(why: string): never;
}

/** What a new cluster will hold. */
export type ClusterKind = "data" | "metadata";

/** Reference counts of one image's clusters; see the module comment. */
export class RefcountAllocator {
  /** Width of an entry in bits. */
  readonly bits: number;
  readonly #o: RefcountAllocatorOptions;
  readonly #cs: number;
  readonly #order: number;
  /** Entries per refcount block. */
  readonly #perBlock: number;
  readonly #max: number;
  readonly #cache: MetadataCache;
  #table: DataView;
  #tableBytes: Uint8Array;
  #tableOffset: number;
  #tableDirty = false;
  /** No free cluster lies below this cluster index. */
  #freeHint = 0;
  /** Which clusters the tables say are in use (writable images); never handed out. */
  #use: ClusterUse | undefined;
  /** No cluster at or past this index is ever allocated. */
  #limit = Number.MAX_SAFE_INTEGER;

  constructor(o: RefcountAllocatorOptions) {
    this.#o = o;
    this.#cs = 2 ** o.clusterBits;
    this.#order = o.refcountOrder;
    this.bits = 2 ** o.refcountOrder;
    this.#perBlock = (this.#cs * 8) / this.bits;
    this.#max = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.#tableOffset = o.reftableOffset;
    this.#tableBytes = new Uint8Array(o.reftableClusters * this.#cs);
    o.readLenient(this.#tableOffset, this.#tableBytes);
    this.#table = new DataView(this.#tableBytes.buffer);
    this.#cache = new MetadataCache(o.cacheTables, this.#cs, o.readLenient, o.writeBackAll);
  }

  /** File offset of the refcount table. */
  get tableOffset(): number {
    return this.#tableOffset;
  }

  /** Length of the refcount table in bytes. */
  get tableBytes(): number {
    return this.#tableBytes.length;
  }

  /** Number of refcount table entries. */
  get tableEntries(): number {
    return this.#tableBytes.length / 8;
  }

  /**
   * From now on, never allocate a cluster `use` says holds something, nor one
   * at or past `limitBytes` of file: a lying refcount is then an error, not
   * a destroyed header or a file grown without bound.
   */
  guard(use: ClusterUse, limitBytes: number): void {
    this.#use = use;
    this.#limit = Math.floor(limitBytes / this.#cs);
  }

  /** Whether a refcount block at `host` is cached (it is metadata). */
  cachesBlock(host: number): boolean {
    return this.#cache.has(host);
  }

  /** File offset of the refcount block of table entry `index` (0 when none). */
  blockOffset(index: number): number {
    const offset = qcow2EntryOffset(
      this.#table.getUint32(index * 8),
      this.#table.getUint32(index * 8 + 4),
    );
    if (offset % this.#cs !== 0) {
      this.#o.corrupt(`refcount table entry ${index} points at unaligned offset ${offset}`);
    }
    return offset;
  }

  /** The refcount of a cluster (0 when no block counts it). */
  get(cluster: number): number {
    const index = Math.floor(cluster / this.#perBlock);
    if (index >= this.tableEntries) return 0;
    const offset = this.blockOffset(index);
    if (offset === 0) return 0;
    return this.#getEntry(this.#cache.load(offset).view, cluster % this.#perBlock);
  }

  #getEntry(view: DataView, i: number): number {
    switch (this.#order) {
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
        const bit = i * this.bits;
        return (view.getUint8(bit >>> 3) >>> (bit & 7)) & this.#max;
      }
    }
  }

  #setEntry(view: DataView, i: number, value: number): void {
    switch (this.#order) {
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
        const bit = i * this.bits;
        const shift = bit & 7;
        const old = view.getUint8(bit >>> 3) & ~(this.#max << shift);
        return view.setUint8(bit >>> 3, old | (value << shift));
      }
    }
  }

  /** Adds `delta` to a cluster's refcount (in the cache). */
  change(cluster: number, delta: number): void {
    const index = Math.floor(cluster / this.#perBlock);
    const offset = index < this.tableEntries ? this.blockOffset(index) : 0;
    if (offset === 0) this.#o.corrupt(`cluster ${cluster} has no refcount block`);
    const table = this.#cache.load(offset);
    const i = cluster % this.#perBlock;
    const value = this.#getEntry(table.view, i) + delta;
    if (value < 0) this.#o.corrupt(`the refcount of cluster ${cluster} drops below 0`);
    if (value > this.#max) {
      const path = this.#o.file.path;
      throw new DiskFormatError(
        path,
        `Refcount of cluster ${cluster} in "${path}" overflows ${this.bits} bits`,
      );
    }
    this.#setEntry(table.view, i, value);
    table.dirty = true;
    if (value === 0) {
      const host = cluster * this.#cs;
      // A freed block's cached copy must not outlive it: the cluster may come back as data.
      this.#cache.delete(host);
      this.#use?.free(cluster);
      this.#o.freed(host);
      this.#freeHint = Math.min(this.#freeHint, cluster);
    }
  }

  /** Adds `delta` to the refcount of every cluster overlapping `[offset, offset + length)`. */
  changeRange(offset: number, length: number, delta: number): void {
    const first = Math.floor(offset / this.#cs);
    const last = Math.floor((offset + length - 1) / this.#cs);
    for (let c = first; c <= last; c++) this.change(c, delta);
  }

  /** Finds a free cluster for `kind`, counts it (in the cache) and returns its file offset. */
  allocate(kind: ClusterKind): number {
    for (;;) {
      const cluster = this.#freeHint;
      this.#checkLimit(cluster);
      const index = Math.floor(cluster / this.#perBlock);
      if (index >= this.tableEntries) {
        this.#growTable(cluster);
        continue;
      }
      if (this.blockOffset(index) === 0) {
        // No block counts this range yet: the free cluster itself becomes that block.
        const table = metadataTable(cluster * this.#cs, new Uint8Array(this.#cs), true);
        this.#claim(cluster, "metadata");
        this.#setEntry(table.view, cluster % this.#perBlock, 1);
        qcow2SetEntry(this.#table, index, table.offset, 0);
        this.#tableDirty = true;
        this.#cache.add(table);
        this.#freeHint = cluster + 1;
        this.#cache.trim();
        continue;
      }
      this.#freeHint = cluster + 1;
      if (this.get(cluster) === 0) {
        this.#claim(cluster, kind);
        this.change(cluster, 1);
        return cluster * this.#cs;
      }
    }
  }

  /** Notes a free cluster as taken; one the tables use is a lying refcount. */
  #claim(cluster: number, kind: ClusterKind): void {
    const use = this.#use;
    if (use === undefined) return;
    if (use.inUse(cluster)) {
      this.#o.corrupt(
        `cluster ${cluster} holds ${use.isMetadata(cluster) ? "metadata" : "guest data"} ` +
          `but its refcount is 0`,
      );
    }
    if (kind === "metadata") use.addMetadata(cluster);
    else use.addData(cluster);
  }

  #checkLimit(cluster: number): void {
    if (cluster < this.#limit) return;
    this.#o.corrupt(
      `its refcounts leave no free cluster within the ${this.#limit * this.#cs} bytes its ` +
        `virtual size can need`,
    );
  }

  /**
   * Moves the refcount table to a bigger one at `firstFree` (where no cluster
   * is counted or used), followed by the refcount blocks that count the new
   * table and themselves. The header switches over only once both are on disk.
   */
  #growTable(firstFree: number): void {
    const cs = this.#cs;
    const per = this.#perBlock;
    let entries = Math.max(this.tableEntries * 2, Math.floor(firstFree / per) + 1);
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
      const path = this.#o.file.path;
      throw new DiskIoError(path, `Disk image "${path}" is full: its refcount table cannot grow`);
    }

    this.#checkLimit(end - 1);
    for (let c = firstFree; c < end; c++) this.#claim(c, "metadata");
    const bytes = new Uint8Array(tableClusters * cs);
    bytes.set(this.#tableBytes);
    const view = new DataView(bytes.buffer);
    const firstIndex = Math.floor(firstFree / per);
    const newBlocks: MetadataTable[] = [];
    for (let b = 0; b < blocks; b++) {
      const table = metadataTable((firstFree + tableClusters + b) * cs, new Uint8Array(cs), true);
      qcow2SetEntry(view, firstIndex + b, table.offset, 0);
      newBlocks.push(table);
    }
    for (let c = firstFree; c < end; c++) {
      this.#setEntry(newBlocks[Math.floor(c / per) - firstIndex].view, c % per, 1);
    }

    const oldOffset = this.#tableOffset;
    const oldLength = this.#tableBytes.length;
    this.#tableBytes = bytes;
    this.#table = view;
    this.#tableOffset = firstFree * cs;
    this.#tableDirty = true;
    for (const t of newBlocks) this.#cache.add(t);
    const file = this.#o.file;
    this.writeBack();
    file.syncData();
    const fields = new Uint8Array(12);
    const fv = new DataView(fields.buffer);
    fv.setBigUint64(0, BigInt(this.#tableOffset));
    fv.setUint32(8, tableClusters);
    file.write(QCOW2_HDR_REFCOUNT_TABLE_OFFSET, fields);
    file.syncData();
    this.#freeHint = end;
    // The header names the new table on disk now, so the old one is free.
    this.changeRange(oldOffset, oldLength, -1);
    this.#cache.trim();
  }

  /** Writes dirty refcount blocks, then (after a sync) the refcount table if it changed. */
  writeBack(): void {
    const file = this.#o.file;
    for (const t of this.#cache.dirty()) {
      file.write(t.offset, t.data);
      t.dirty = false;
    }
    if (this.#tableDirty) {
      file.syncData(); // new blocks before the table entries naming them
      file.write(this.#tableOffset, this.#tableBytes);
      this.#tableDirty = false;
    }
  }
}
