/**
 * A test block back end that records every write and fdatasync, and builds
 * the file as a power cut at any point would leave it.
 *
 * The model of a disk with a volatile write cache: everything written
 * before the last completed fdatasync is durable; of the writes since, each
 * one independently reached the medium or not, and one that did may be torn
 * (only some of its 512-byte sectors made it). A SIGKILL never loses the
 * page cache, so only this model catches a missing fdatasync.
 *
 * @example
 * ```ts
 * import { powerCut, RecordingFile } from "./power_loss_file.ts";
 * import { Rng } from "./test_helpers.ts";
 * const file = new RecordingFile("mem.img", new Uint8Array(4096));
 * file.write(0, new Uint8Array(512).fill(1));
 * file.syncData();
 * file.write(512, new Uint8Array(512).fill(2));
 * const after = powerCut(file, file.ops.length, new Rng(1)); // sector 1 may or may not be 2
 * ```
 * @module
 */

import { DiskIoError } from "./errors.ts";
import type { BlockFile } from "./file.ts";
import type { Rng } from "./test_helpers.ts";

/** Sector size of the torn-write model. */
export const TEAR_BYTES = 512;

/** One recorded operation. */
export type FileOp = { kind: "write"; offset: number; data: Uint8Array } | { kind: "sync" };

/** A {@linkcode BlockFile} in memory. */
export class MemFile implements BlockFile {
  readonly path: string;
  readonly readonly: boolean;
  #bytes: Uint8Array;
  #length: number;
  #closed = false;

  constructor(path: string, bytes: Uint8Array, readonly = false) {
    this.path = path;
    this.readonly = readonly;
    this.#bytes = bytes.slice();
    this.#length = bytes.length;
  }

  /** The file's current contents. */
  get bytes(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }
  get closed(): boolean {
    return this.#closed;
  }
  sizeBytes(): number {
    return this.#length;
  }
  read(offset: number, into: Uint8Array): void {
    if (this.readUpTo(offset, into) < into.length) {
      throw new DiskIoError(this.path, `Unexpected end of "${this.path}" at ${offset}`);
    }
  }
  readUpTo(offset: number, into: Uint8Array): number {
    const n = Math.max(0, Math.min(into.length, this.#length - offset));
    into.set(this.#bytes.subarray(offset, offset + n));
    return n;
  }
  write(offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    if (end > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(end, this.#bytes.length * 2));
      grown.set(this.#bytes.subarray(0, this.#length));
      this.#bytes = grown;
    }
    this.#bytes.set(data, offset);
    this.#length = Math.max(this.#length, end);
  }
  syncData(): void {}
  close(): void {
    this.#closed = true;
  }
}

/** A {@linkcode MemFile} that records every write and sync, starting from `initial`. */
export class RecordingFile extends MemFile {
  /** The file as it was before the first op. */
  readonly initial: Uint8Array;
  /** Every write and sync, in order. */
  readonly ops: FileOp[] = [];

  constructor(path: string, initial: Uint8Array) {
    super(path, initial);
    this.initial = initial.slice();
  }
  override write(offset: number, data: Uint8Array): void {
    this.ops.push({ kind: "write", offset, data: data.slice() });
    super.write(offset, data);
  }
  override syncData(): void {
    this.ops.push({ kind: "sync" });
  }
}

/** How {@linkcode powerCut} treats the writes after the last sync. */
export interface PowerCutOptions {
  /** Chance that each unsynced write reached the medium (default 0.5). */
  keep?: number;
  /** Tear kept writes at sector granularity now and then (default true). */
  tear?: boolean;
}

/**
 * The file as it is after power fails once the first `cut` ops were issued
 * (see the module comment). Deterministic for a given `rng` state.
 */
export function powerCut(
  file: RecordingFile,
  cut: number,
  rng: Rng,
  options: PowerCutOptions = {},
): Uint8Array {
  const keep = options.keep ?? 0.5;
  const tear = options.tear ?? true;
  let lastSync = -1;
  for (let i = 0; i < cut; i++) if (file.ops[i].kind === "sync") lastSync = i;
  const out = new MemFile(file.path, file.initial);
  for (let i = 0; i < cut; i++) {
    const op = file.ops[i];
    if (op.kind !== "write") continue;
    if (i < lastSync) {
      out.write(op.offset, op.data);
      continue;
    }
    if (rng.next() / 2 ** 32 >= keep) continue;
    if (!tear || op.data.length <= TEAR_BYTES || rng.below(4) !== 0) {
      out.write(op.offset, op.data);
      continue;
    }
    // Torn: each sector of the file it covers made it or not (a sector itself is atomic).
    let at = 0;
    while (at < op.data.length) {
      const sectorEnd = (Math.floor((op.offset + at) / TEAR_BYTES) + 1) * TEAR_BYTES;
      const next = Math.min(op.data.length, sectorEnd - op.offset);
      if (rng.below(2) === 0) out.write(op.offset + at, op.data.subarray(at, next));
      at = next;
    }
  }
  return out.bytes.slice();
}
