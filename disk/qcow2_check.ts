/**
 * Open-time integrity checks of a qcow2 image, and the map of which host
 * clusters hold metadata or guest data that keeps the allocator honest.
 *
 * A hostile or damaged image can claim anything: tables past the end of the
 * file, the header at refcount 0, two guest clusters in one host cluster.
 * Trusting those claims let guest writes overwrite the header. So at open:
 * - the L1 table, the refcount table and every refcount block lie inside the
 *   file, and the header, both tables and the blocks have a refcount;
 * - for writable images, every L1 and L2 entry is read once: no reserved
 *   bits, L2 tables and data inside the file, nothing pointing at metadata;
 *   host clusters named by two L2 entries are remembered as shared.
 * The allocator then never hands out a cluster this map says is in use
 * (whatever its refcount says), and no allocation grows the file past what
 * the virtual size can need ({@linkcode qcow2GrowthLimitBytes}).
 *
 * @module
 */

import { qcow2CompressedRange } from "./qcow2_format.ts";
import type { Mapping } from "./qcow2_map.ts";

/** A growable set of cluster numbers as a bitmap. */
class ClusterBits {
  #bits = new Uint8Array(0);
  has(c: number): boolean {
    return (this.#bits[c >>> 3] & (1 << (c & 7))) !== 0;
  }
  add(c: number): void {
    if (c >>> 3 >= this.#bits.length) {
      const grown = new Uint8Array(Math.max(64, (c >>> 3) + 1, this.#bits.length * 2));
      grown.set(this.#bits);
      this.#bits = grown;
    }
    this.#bits[c >>> 3] |= 1 << (c & 7);
  }
  delete(c: number): void {
    if (c >>> 3 < this.#bits.length) this.#bits[c >>> 3] &= ~(1 << (c & 7));
  }
}

/** Which host clusters hold metadata or guest data (as far as the active tables say). */
export class ClusterUse {
  readonly #metadata = new ClusterBits();
  readonly #data = new ClusterBits();
  /** Data clusters named by more than one active L2 entry. */
  readonly #shared = new Set<number>();

  /** Whether the cluster holds metadata or data. */
  inUse(c: number): boolean {
    return this.#metadata.has(c) || this.#data.has(c);
  }
  /** Whether the cluster holds metadata. */
  isMetadata(c: number): boolean {
    return this.#metadata.has(c);
  }
  /** Whether two active L2 entries name the cluster. */
  isShared(c: number): boolean {
    return this.#shared.has(c);
  }
  /** Notes a metadata cluster. */
  addMetadata(c: number): void {
    this.#metadata.add(c);
  }
  /** Notes a host cluster holding compressed data (several may share one). */
  addPacked(c: number): void {
    this.#data.add(c);
  }
  /** Notes a data cluster named once more. */
  addData(c: number): void {
    if (this.#data.has(c)) this.#shared.add(c);
    this.#data.add(c);
  }
  /** The cluster was freed. */
  free(c: number): void {
    this.#metadata.delete(c);
    this.#data.delete(c);
    this.#shared.delete(c);
  }
}

/** What {@linkcode checkQcow2Image} needs of the image. */
export interface Qcow2CheckSubject {
  version: 2 | 3;
  clusterBits: number;
  fileBytes: number;
  l1Offset: number;
  l1Entries: number;
  /** L2 table offset of an L1 entry (0 when none); throws on reserved bits. */
  l2TableOffset(i: number): number;
  /** Decodes an L2 entry; throws on reserved bits. */
  decode(hi: number, lo: number): Mapping;
  reftableOffset: number;
  reftableBytes: number;
  reftableEntries: number;
  /** Refcount block offset of a refcount table entry (0 when none). */
  refblockOffset(i: number): number;
  refcount(cluster: number): number;
  readLenient(offset: number, into: Uint8Array): void;
  corrupt(why: string): never;
}

/**
 * Runs the open-time checks (see the module comment). With `scan` (writable
 * opens), also reads every L2 table and returns the cluster use map.
 */
export function checkQcow2Image(s: Qcow2CheckSubject, scan: boolean): ClusterUse | undefined {
  const cs = 2 ** s.clusterBits;
  // The file may end inside its last cluster (QEMU does not pad it).
  const end = Math.ceil(s.fileBytes / cs) * cs;
  const inside = (offset: number, length: number, what: string) => {
    if (offset + length > end) {
      s.corrupt(`the ${what} at offset ${offset} lies outside the file (${s.fileBytes} bytes)`);
    }
  };
  const counted = (offset: number, length: number, what: string) => {
    for (let c = Math.floor(offset / cs); c * cs < offset + length; c++) {
      if (s.refcount(c) === 0) s.corrupt(`the ${what} (cluster ${c}) has refcount 0`);
    }
  };
  if (s.fileBytes < 1) s.corrupt("the file is empty");
  inside(s.l1Offset, s.l1Entries * 8, "L1 table");
  inside(s.reftableOffset, s.reftableBytes, "refcount table");
  const use = scan ? new ClusterUse() : undefined;
  const metadata = (offset: number, length: number, what: string) => {
    if (use === undefined) return;
    for (let c = Math.floor(offset / cs); c * cs < offset + length; c++) {
      if (use.inUse(c)) s.corrupt(`the ${what} at offset ${offset} overlaps other metadata`);
      use.addMetadata(c);
    }
  };
  metadata(0, cs, "header");
  metadata(s.reftableOffset, s.reftableBytes, "refcount table");
  if (s.l1Entries > 0) metadata(s.l1Offset, s.l1Entries * 8, "L1 table");
  const blocks: number[] = [];
  for (let i = 0; i < s.reftableEntries; i++) {
    const block = s.refblockOffset(i);
    if (block === 0) continue;
    inside(block, cs, `refcount block ${i}`);
    metadata(block, cs, `refcount block ${i}`);
    blocks.push(block);
  }
  // Counts are read only once every block is known to lie inside the file.
  counted(0, cs, "header");
  counted(s.reftableOffset, s.reftableBytes, "refcount table");
  if (s.l1Entries > 0) counted(s.l1Offset, s.l1Entries * 8, "L1 table");
  for (const block of blocks) counted(block, cs, `refcount block at offset ${block}`);
  if (use === undefined) return undefined;

  const l2 = new Uint8Array(cs);
  const view = new DataView(l2.buffer);
  for (let i = 0; i < s.l1Entries; i++) {
    const table = s.l2TableOffset(i);
    if (table === 0) continue;
    const what = `L2 table of L1 entry ${i}`;
    inside(table, cs, what);
    metadata(table, cs, what);
    counted(table, cs, what);
    s.readLenient(table, l2);
    for (let j = 0; j < cs / 8; j++) {
      const m = s.decode(view.getUint32(j * 8), view.getUint32(j * 8 + 4));
      if (m.kind === "unallocated" || (m.kind === "zero" && m.host === 0)) continue;
      const where = `L2 entry ${j} of L1 entry ${i}`;
      let first: number;
      let last: number;
      if (m.kind === "compressed") {
        const range = qcow2CompressedRange(s.clusterBits, m.hi, m.lo);
        if (range === undefined) s.corrupt(`${where}: a compressed cluster beyond 8 PiB`);
        first = Math.floor(range[0] / cs);
        last = Math.floor((range[0] + range[1] - 1) / cs);
      } else {
        first = last = m.host / cs;
      }
      inside(first * cs, 1, `data of ${where}`);
      for (let c = first; c <= last; c++) {
        if (use.isMetadata(c)) {
          s.corrupt(`${where} maps guest data onto metadata at offset ${c * cs}`);
        }
        // Compressed clusters may share host clusters; nothing else may.
        if (m.kind === "compressed") use.addPacked(c);
        else use.addData(c);
      }
    }
  }
  return use;
}

/**
 * The largest file an image may grow to: its size at open plus every guest
 * cluster, every L2 table, the refcount blocks counting all of that and two
 * refcount tables (old and new while it moves), with slack for clusters
 * leaked by an earlier crash. Growth past it means the refcounts lie.
 */
export function qcow2GrowthLimitBytes(
  fileBytes: number,
  sizeBytes: number,
  clusterBits: number,
  refcountBits: number,
  l1Entries: number,
): number {
  const cs = 2 ** clusterBits;
  const clusters = Math.ceil(fileBytes / cs) + Math.ceil(sizeBytes / cs) + l1Entries;
  const perBlock = (cs * 8) / refcountBits;
  const blocks = Math.ceil(clusters / perBlock) + 1;
  const tableClusters = Math.ceil((blocks * 8) / cs) + 1;
  const slack = Math.ceil(clusters / 8) + 64;
  return (clusters + blocks + 2 * tableClusters + slack) * cs;
}
