/**
 * Test helpers: a driver-side split ring built by hand in guest memory, and
 * a {@link GuestMemory} that records every access so tests can prove the
 * device never touched anything outside RAM.
 *
 * @example
 * ```ts
 * import { GuestMemory } from "../../core/guest_memory.ts";
 * import { DriverRing } from "./testing.ts";
 * const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }]);
 * const ring = new DriverRing(mem, { size: 8, descGpa: 0x1000, availGpa: 0x2000, usedGpa: 0x3000 });
 * ring.post([{ gpa: 0x8000, length: 16 }, { gpa: 0x9000, length: 1, write: true }]);
 * ring.usedIdx(); // 0 until the device serves it
 * ```
 * @module
 */

import { GuestMemory, type MemoryRegion } from "../../core/guest_memory.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "./queue.ts";

/** One buffer the test driver posts. */
export interface DriverBuffer {
  gpa: number;
  length: number;
  write?: boolean;
}

/** Where a test ring lives. */
export interface DriverRingLayout {
  size: number;
  descGpa: number;
  availGpa: number;
  usedGpa: number;
}

/** The driver side of a split ring, for tests. */
export class DriverRing {
  readonly mem: GuestMemory;
  readonly layout: DriverRingLayout;
  #nextDesc = 0;
  #availIdx = 0;

  constructor(mem: GuestMemory, layout: DriverRingLayout) {
    this.mem = mem;
    this.layout = layout;
  }

  /** Writes descriptor `index` raw. */
  setDesc(index: number, gpa: number | bigint, length: number, flags: number, next: number): void {
    const at = this.layout.descGpa + 16 * index;
    this.mem.writeU64(at, BigInt(gpa));
    this.mem.writeU32(at + 8, length);
    this.mem.writeU16(at + 12, flags);
    this.mem.writeU16(at + 14, next);
  }

  /** Writes a descriptor into a table at `tableGpa` (indirect tables). */
  setTableDesc(
    tableGpa: number,
    index: number,
    gpa: number,
    length: number,
    flags: number,
    next: number,
  ): void {
    const at = tableGpa + 16 * index;
    this.mem.writeU64(at, BigInt(gpa));
    this.mem.writeU32(at + 8, length);
    this.mem.writeU16(at + 12, flags);
    this.mem.writeU16(at + 14, next);
  }

  /** Puts `head` in the next available slot and bumps the index by `bump` (default 1). */
  publish(head: number, bump = 1): void {
    const { size, availGpa } = this.layout;
    this.mem.writeU16(availGpa + 4 + 2 * (this.#availIdx % size), head);
    this.#availIdx = (this.#availIdx + bump) & 0xffff;
    this.mem.writeU16(availGpa + 2, this.#availIdx);
  }

  /** Writes the available index raw. */
  setAvailIdx(idx: number): void {
    this.#availIdx = idx & 0xffff;
    this.mem.writeU16(this.layout.availGpa + 2, this.#availIdx);
  }

  /** Builds a chain from the next free descriptors and publishes it; returns the head. */
  post(buffers: readonly DriverBuffer[]): number {
    const size = this.layout.size;
    const head = this.#nextDesc;
    buffers.forEach((b, i) => {
      const index = (head + i) % size;
      const last = i === buffers.length - 1;
      this.setDesc(
        index,
        b.gpa,
        b.length,
        (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        (index + 1) % size,
      );
    });
    this.#nextDesc = (head + buffers.length) % size;
    this.publish(head);
    return head;
  }

  /** Builds an indirect table at `tableGpa` for `buffers` and posts one descriptor for it. */
  postIndirect(tableGpa: number, buffers: readonly DriverBuffer[]): number {
    buffers.forEach((b, i) => {
      const last = i === buffers.length - 1;
      this.setTableDesc(
        tableGpa,
        i,
        b.gpa,
        b.length,
        (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        i + 1,
      );
    });
    const head = this.#nextDesc;
    this.setDesc(head, tableGpa, 16 * buffers.length, VIRTQ_DESC_F_INDIRECT, 0);
    this.#nextDesc = (head + 1) % this.layout.size;
    this.publish(head);
    return head;
  }

  /** The device's used index. */
  usedIdx(): number {
    return this.mem.readU16(this.layout.usedGpa + 2);
  }

  /** Used ring entry `i` (by position, modulo size). */
  used(i: number): { id: number; length: number } {
    const at = this.layout.usedGpa + 4 + 8 * (i % this.layout.size);
    return { id: this.mem.readU32(at), length: this.mem.readU32(at + 4) };
  }

  /** Sets used_event (EVENT_IDX) in the available ring. */
  setUsedEvent(value: number): void {
    this.mem.writeU16(this.layout.availGpa + 4 + 2 * this.layout.size, value);
  }

  /** Sets the available ring's flags. */
  setAvailFlags(flags: number): void {
    this.mem.writeU16(this.layout.availGpa, flags);
  }
}

/** A guest memory that records the range of every access made through it. */
export class RecordingGuestMemory extends GuestMemory {
  /** Every access attempted: [gpa, length]. */
  readonly accesses: [number, number][] = [];

  constructor(regions: readonly MemoryRegion[]) {
    super(regions);
  }

  /** Zeroed anonymous regions. */
  static override anonymous(
    layout: readonly { gpa: number; size: number }[],
  ): RecordingGuestMemory {
    return new RecordingGuestMemory(
      layout.map(({ gpa, size }) => ({ gpa, bytes: new Uint8Array(size) })),
    );
  }

  override slice(gpa: number, length: number): Uint8Array {
    this.accesses.push([gpa, length]);
    return super.slice(gpa, length);
  }
  override readU8(gpa: number): number {
    this.accesses.push([gpa, 1]);
    return super.readU8(gpa);
  }
  override readU16(gpa: number): number {
    this.accesses.push([gpa, 2]);
    return super.readU16(gpa);
  }
  override readU32(gpa: number): number {
    this.accesses.push([gpa, 4]);
    return super.readU32(gpa);
  }
  override readU64(gpa: number): bigint {
    this.accesses.push([gpa, 8]);
    return super.readU64(gpa);
  }
  override writeU8(gpa: number, value: number): void {
    this.accesses.push([gpa, 1]);
    super.writeU8(gpa, value);
  }
  override writeU16(gpa: number, value: number): void {
    this.accesses.push([gpa, 2]);
    super.writeU16(gpa, value);
  }
  override writeU32(gpa: number, value: number): void {
    this.accesses.push([gpa, 4]);
    super.writeU32(gpa, value);
  }
  override writeU64(gpa: number, value: bigint): void {
    this.accesses.push([gpa, 8]);
    super.writeU64(gpa, value);
  }

  /** Accesses that fell outside RAM (the gateway refused them, but they were attempted). */
  outside(): [number, number][] {
    return this.accesses.filter(([gpa, length]) => !this.contains(gpa, length));
  }
}
