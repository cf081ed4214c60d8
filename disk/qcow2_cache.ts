/**
 * The qcow2 metadata cache: a small LRU of cluster-sized tables (L2 tables or
 * refcount blocks) keyed by file offset. Dirty tables are never dropped; when
 * only dirty tables remain over capacity the cache asks its owner to write
 * metadata back (in the owner's crash-safe order) and trims again.
 *
 * @example
 * ```ts
 * import { MetadataCache } from "./qcow2_cache.ts";
 * const cache = new MetadataCache(4, 512, (_offset, into) => into.fill(0), () => {});
 * const table = cache.load(4096);
 * table.view.setUint32(0, 1);
 * table.dirty = true;
 * ```
 * @module
 */

/** One cluster-sized metadata table held in memory. */
export interface MetadataTable {
  offset: number;
  data: Uint8Array;
  view: DataView;
  dirty: boolean;
}

/** A table over `data` at file `offset`. */
export function metadataTable(offset: number, data: Uint8Array, dirty: boolean): MetadataTable {
  return { offset, data, view: new DataView(data.buffer, data.byteOffset, data.byteLength), dirty };
}

/** An LRU of metadata tables; see the module comment. */
export class MetadataCache {
  readonly #tables = new Map<number, MetadataTable>();
  /** Most tables kept (more only while dirty ones wait for a write-back). */
  readonly capacity: number;
  readonly #tableBytes: number;
  readonly #read: (offset: number, into: Uint8Array) => void;
  readonly #writeBack: () => void;

  /**
   * @param read fills a table's bytes from the file
   * @param writeBack writes dirty tables out (clearing their flags) when only dirty ones are left
   */
  constructor(
    capacity: number,
    tableBytes: number,
    read: (offset: number, into: Uint8Array) => void,
    writeBack: () => void,
  ) {
    this.capacity = capacity;
    this.#tableBytes = tableBytes;
    this.#read = read;
    this.#writeBack = writeBack;
  }

  /** The table at `offset`, marked most recently used; undefined when not cached. */
  get(offset: number): MetadataTable | undefined {
    const t = this.#tables.get(offset);
    if (t !== undefined) {
      this.#tables.delete(offset);
      this.#tables.set(offset, t);
    }
    return t;
  }

  /** The table at `offset`, read from the file when not cached. */
  load(offset: number): MetadataTable {
    const cached = this.get(offset);
    if (cached !== undefined) return cached;
    const data = new Uint8Array(this.#tableBytes);
    this.#read(offset, data);
    const table = metadataTable(offset, data, false);
    this.add(table);
    this.trim();
    return table;
  }

  /** Whether a table at `offset` is cached. */
  has(offset: number): boolean {
    return this.#tables.has(offset);
  }

  /** Caches `t` (replacing a table at its offset) as most recently used; the caller trims. */
  add(t: MetadataTable): void {
    this.#tables.delete(t.offset);
    this.#tables.set(t.offset, t);
  }

  /** Forgets the table at `offset` (its cluster was freed). */
  delete(offset: number): void {
    this.#tables.delete(offset);
  }

  /** The dirty tables in file order. */
  dirty(): MetadataTable[] {
    return [...this.#tables.values()].filter((t) => t.dirty).sort((a, b) => a.offset - b.offset);
  }

  /**
   * Drops least recently used clean tables while over capacity; when dirty
   * ones keep it over, has them written back and drops again. The most
   * recently used table always stays: its caller may be about to change it.
   */
  trim(): void {
    if (!this.#drop()) return;
    this.#writeBack();
    this.#drop();
  }

  /** One pass of dropping clean tables; true if still over capacity. */
  #drop(): boolean {
    if (this.#tables.size <= this.capacity) return false;
    const candidates = [...this.#tables.values()].slice(0, -1);
    for (const t of candidates) {
      if (this.#tables.size <= this.capacity) break;
      if (!t.dirty) this.#tables.delete(t.offset);
    }
    return this.#tables.size > this.capacity;
  }
}
