/**
 * The qcow2 cluster map: which host cluster holds each guest cluster,
 * through the L1 table and cached L2 tables, and the copy-on-write of L2
 * tables a write needs (an L2 table shared with a snapshot is copied before
 * it changes).
 *
 * Changes stay in memory until the image writes them back, L2 tables before
 * the L1 entries naming them (see qcow2.ts).
 *
 * @module
 */

import type { BlockFile } from "./file.ts";
import { MetadataCache, type MetadataTable, metadataTable } from "./qcow2_cache.ts";
import {
  QCOW2_L1_RESERVED_HI,
  QCOW2_L1_RESERVED_LO,
  QCOW2_L2_RESERVED_HI,
  QCOW2_L2_RESERVED_LO,
  QCOW2_OFLAG_COMPRESSED_HI,
  QCOW2_OFLAG_COPIED_HI,
  QCOW2_OFLAG_ZERO_LO,
  qcow2EntryOffset,
  qcow2SetEntry,
} from "./qcow2_format.ts";

/** What an L2 entry says about one guest cluster. */
export type Mapping =
  | { kind: "unallocated" }
  | { kind: "zero"; host: number; copied: boolean }
  | { kind: "data"; host: number; copied: boolean }
  | { kind: "compressed"; hi: number; lo: number };

/** How the map is set up ({@linkcode ClusterMap}). */
export interface ClusterMapOptions {
  file: BlockFile;
  version: 2 | 3;
  clusterBits: number;
  l1Offset: number;
  l1Entries: number;
  /** L2 tables to keep in memory. */
  cacheTables: number;
  /** Reads file bytes, zeros past the end. */
  readLenient(offset: number, into: Uint8Array): void;
  /** Writes all dirty metadata back (when the cache is full of dirty tables). */
  writeBackAll(): void;
  /** A new counted cluster for an L2 table. */
  allocateTable(): number;
  /** The refcount of a cluster. */
  refcount(cluster: number): number;
  /** Drops a reference to `[offset, offset + length)` once the pointer's removal is on disk. */
  releaseLater(offset: number, length: number): void;
  /** Throws the image's "corrupt" error. */
  corrupt(why: string): never;
}

/** The L1 table and the L2 tables of one image; see the module comment. */
export class ClusterMap {
  /** File offset of the L1 table. */
  readonly l1Offset: number;
  readonly #o: ClusterMapOptions;
  readonly #cs: number;
  readonly #l2Entries: number;
  readonly #l1Bytes: Uint8Array;
  readonly #l1: DataView;
  readonly #l1Dirty = new Set<number>();
  readonly #cache: MetadataCache;

  constructor(o: ClusterMapOptions) {
    this.#o = o;
    this.#cs = 2 ** o.clusterBits;
    this.#l2Entries = this.#cs / 8;
    this.l1Offset = o.l1Offset;
    this.#l1Bytes = new Uint8Array(o.l1Entries * 8);
    o.readLenient(o.l1Offset, this.#l1Bytes);
    this.#l1 = new DataView(this.#l1Bytes.buffer);
    this.#cache = new MetadataCache(o.cacheTables, this.#cs, o.readLenient, o.writeBackAll);
  }

  /** Number of L1 entries. */
  get l1Entries(): number {
    return this.#l1Bytes.length / 8;
  }

  /** Length of the L1 table in bytes. */
  get l1Bytes(): number {
    return this.#l1Bytes.length;
  }

  /** Whether an L2 table at `host` is cached (it is metadata). */
  cachesTable(host: number): boolean {
    return this.#cache.has(host);
  }

  /** A cluster was freed: its cached table (if it was one) must not outlive it. */
  forget(host: number): void {
    this.#cache.delete(host);
  }

  /** File offset of the L2 table of L1 slot `l1Index` (0 when none). */
  l2TableOffset(l1Index: number): number {
    const hi = this.#l1.getUint32(l1Index * 8);
    const lo = this.#l1.getUint32(l1Index * 8 + 4);
    if ((hi & QCOW2_L1_RESERVED_HI) !== 0 || (lo & QCOW2_L1_RESERVED_LO) !== 0) {
      this.#o.corrupt(`L1 entry ${l1Index} has reserved bits set`);
    }
    const offset = qcow2EntryOffset(hi, lo);
    if (offset % this.#cs !== 0) {
      this.#o.corrupt(`L1 entry ${l1Index} points at unaligned offset ${offset}`);
    }
    return offset;
  }

  /** The L2 entry (high and low 32 bits) of the guest cluster holding `guest`; [0, 0] if none. */
  entry(guest: number): [number, number] {
    const cluster = Math.floor(guest / this.#cs);
    const l2Offset = this.l2TableOffset(Math.floor(cluster / this.#l2Entries));
    if (l2Offset === 0) return [0, 0];
    const table = this.#cache.load(l2Offset);
    const i = cluster % this.#l2Entries;
    return [table.view.getUint32(i * 8), table.view.getUint32(i * 8 + 4)];
  }

  /** What the guest cluster holding `guest` maps to. */
  lookup(guest: number): Mapping {
    const [hi, lo] = this.entry(guest);
    return this.decode(hi, lo);
  }

  /** Decodes an L2 entry. */
  decode(hi: number, lo: number): Mapping {
    if ((hi & QCOW2_OFLAG_COMPRESSED_HI) !== 0) return { kind: "compressed", hi, lo };
    if ((hi & QCOW2_L2_RESERVED_HI) !== 0 || (lo & QCOW2_L2_RESERVED_LO) !== 0) {
      this.#o.corrupt(
        `an L2 entry has reserved bits set (0x${hi.toString(16)}_${lo.toString(16)})`,
      );
    }
    const host = qcow2EntryOffset(hi, lo);
    const copied = (hi & QCOW2_OFLAG_COPIED_HI) !== 0;
    // Version 2 has no zero flag: bit 0 is reserved there.
    if (this.#o.version >= 3 && (lo & QCOW2_OFLAG_ZERO_LO) !== 0) {
      return { kind: "zero", host, copied };
    }
    if (host === 0) return { kind: "unallocated" };
    if (host % this.#cs !== 0) this.#o.corrupt(`a data cluster at unaligned offset ${host}`);
    return { kind: "data", host, copied };
  }

  /** Points a guest cluster at `host` (refcount 1, so the COPIED flag is set). */
  set(guest: number, host: number): void {
    const cluster = Math.floor(guest / this.#cs);
    const table = this.#writableL2(Math.floor(cluster / this.#l2Entries));
    qcow2SetEntry(table.view, cluster % this.#l2Entries, host, QCOW2_OFLAG_COPIED_HI);
    table.dirty = true;
  }

  /** The L2 table of an L1 slot, made our own: allocated when absent, copied when shared. */
  #writableL2(l1Index: number): MetadataTable {
    const hi = this.#l1.getUint32(l1Index * 8);
    const old = this.l2TableOffset(l1Index);
    if (old !== 0) {
      if ((hi & QCOW2_OFLAG_COPIED_HI) !== 0) return this.#cache.load(old);
      if (this.#o.refcount(old / this.#cs) === 1) {
        this.#setL1Entry(l1Index, old);
        return this.#cache.load(old);
      }
    }
    const offset = this.#o.allocateTable();
    const data = new Uint8Array(this.#cs);
    if (old !== 0) data.set(this.#cache.load(old).data);
    const table = metadataTable(offset, data, true);
    this.#cache.add(table);
    this.#setL1Entry(l1Index, offset);
    if (old !== 0) this.#o.releaseLater(old, this.#cs);
    this.#cache.trim();
    return table;
  }

  #setL1Entry(l1Index: number, l2Offset: number): void {
    qcow2SetEntry(this.#l1, l1Index, l2Offset, QCOW2_OFLAG_COPIED_HI);
    this.#l1Dirty.add(l1Index);
  }

  /** The dirty L2 tables, in file order. */
  dirtyTables(): MetadataTable[] {
    return this.#cache.dirty();
  }

  /** Whether L1 entries changed since the last {@linkcode ClusterMap.writeL1}. */
  get l1Dirty(): boolean {
    return this.#l1Dirty.size > 0;
  }

  /** Writes the changed L1 entries (runs of neighbours as one write). */
  writeL1(): void {
    const indices = [...this.#l1Dirty].sort((a, b) => a - b);
    this.#l1Dirty.clear();
    let i = 0;
    while (i < indices.length) {
      let j = i + 1;
      while (j < indices.length && indices[j] === indices[j - 1] + 1) j++;
      const start = indices[i] * 8;
      const stop = indices[j - 1] * 8 + 8;
      this.#o.file.write(this.l1Offset + start, this.#l1Bytes.subarray(start, stop));
      i = j;
    }
  }
}
