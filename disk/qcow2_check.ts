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
 *   host clusters named by two L2 entries are remembered as shared; the
 *   snapshot table and the snapshots' L1 and L2 tables and data are noted too.
 * The allocator then never hands out a cluster this map says is in use
 * (whatever its refcount says), and no allocation grows the file past what
 * the virtual size can need ({@linkcode qcow2GrowthLimitBytes}).
 *
 * @module
 */

import { qcow2CompressedRange, qcow2EntryOffset } from "./qcow2_format.ts";
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
  nbSnapshots: number;
  snapshotsOffset: number;
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
  /** Notes an L2 table and what it maps; `snapshot` tables may be shared and share data. */
  const scanL2 = (table: number, what: string, snapshot: boolean) => {
    inside(table, cs, what);
    const c0 = table / cs;
    if (snapshot && use.isMetadata(c0)) return; // shared with one already scanned
    metadata(table, cs, what);
    counted(table, cs, what);
    s.readLenient(table, l2);
    for (let j = 0; j < cs / 8; j++) {
      const m = s.decode(view.getUint32(j * 8), view.getUint32(j * 8 + 4));
      if (m.kind === "unallocated" || (m.kind === "zero" && m.host === 0)) continue;
      const where = `entry ${j} of the ${what}`;
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
        // Compressed clusters may share host clusters, snapshots share with the active
        // tables; nothing else may.
        if (m.kind === "compressed" || snapshot) use.addPacked(c);
        else use.addData(c);
      }
    }
  };
  for (let i = 0; i < s.l1Entries; i++) {
    const table = s.l2TableOffset(i);
    if (table !== 0) scanL2(table, `L2 table of L1 entry ${i}`, false);
  }
  scanSnapshots(s, inside, metadata, scanL2);
  return use;
}

/** QEMU's limit on internal snapshots. */
const MAX_SNAPSHOTS = 65536;
/** Fixed part of a snapshot table entry. */
const SNAPSHOT_ENTRY_BYTES = 40;

/**
 * Notes the snapshot table, each snapshot's L1 table and the L2 tables and
 * data they name, so the allocator never takes a snapshot's clusters either.
 */
function scanSnapshots(
  s: Qcow2CheckSubject,
  inside: (offset: number, length: number, what: string) => void,
  metadata: (offset: number, length: number, what: string) => void,
  scanL2: (table: number, what: string, snapshot: boolean) => void,
): void {
  if (s.nbSnapshots === 0) return;
  const cs = 2 ** s.clusterBits;
  if (s.nbSnapshots > MAX_SNAPSHOTS) s.corrupt(`${s.nbSnapshots} snapshots (at most 65536)`);
  if (s.snapshotsOffset === 0 || s.snapshotsOffset % cs !== 0) {
    s.corrupt(`the snapshot table offset ${s.snapshotsOffset} is not a nonzero cluster multiple`);
  }
  const head = new Uint8Array(SNAPSHOT_ENTRY_BYTES);
  const v = new DataView(head.buffer);
  const l1s: [number, number][] = [];
  let at = s.snapshotsOffset;
  for (let i = 0; i < s.nbSnapshots; i++) {
    inside(at, SNAPSHOT_ENTRY_BYTES, `snapshot table entry ${i}`);
    s.readLenient(at, head);
    const l1 = Number(v.getBigUint64(0));
    const l1Size = v.getUint32(8);
    const length = SNAPSHOT_ENTRY_BYTES + v.getUint32(36) + v.getUint16(12) + v.getUint16(14);
    if (!Number.isSafeInteger(l1) || l1Size > s.l1Entries * 64 + 65536) {
      s.corrupt(`snapshot ${i} has an L1 table of ${l1Size} entries at ${l1}`);
    }
    l1s.push([l1, l1Size]);
    at += Math.ceil(length / 8) * 8;
  }
  metadata(s.snapshotsOffset, at - s.snapshotsOffset, "snapshot table");
  const entry = new Uint8Array(8);
  const ev = new DataView(entry.buffer);
  l1s.forEach(([l1, l1Size], i) => {
    if (l1Size === 0) return;
    if (l1 % cs !== 0) s.corrupt(`snapshot ${i}'s L1 table is at unaligned offset ${l1}`);
    inside(l1, l1Size * 8, `L1 table of snapshot ${i}`);
    metadata(l1, l1Size * 8, `L1 table of snapshot ${i}`);
    for (let j = 0; j < l1Size; j++) {
      s.readLenient(l1 + j * 8, entry);
      const table = qcow2EntryOffset(ev.getUint32(0), ev.getUint32(4));
      if (table === 0) continue;
      if (table % cs !== 0) s.corrupt(`snapshot ${i}'s L1 entry ${j} is unaligned`);
      scanL2(table, `L2 table of snapshot ${i}'s L1 entry ${j}`, true);
    }
  });
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
