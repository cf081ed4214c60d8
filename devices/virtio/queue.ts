/**
 * Split virtqueues: the only code that parses virtio rings.
 *
 * Every descriptor, ring and buffer access goes through {@link GuestMemory}
 * at the moment it is needed; nothing keeps a view of guest memory across
 * requests. The guest owns the rings and may change them at any time, so
 * every value read from them is checked before use:
 *
 * - head and `next` indexes must be below the queue (or indirect table) size;
 * - a chain visits at most queue-size descriptors in all, indirect ones
 *   included (virtio 1.x 2.7.5.3.1), which also ends loops;
 * - the available index may run ahead of ours by at most the queue size;
 * - rings and buffers must lie inside guest RAM (overflow-safe checks);
 * - an indirect table must be a non-empty multiple of 16 bytes, no longer
 *   than the queue size, may not be nested, and is only accepted when
 *   VIRTIO_F_INDIRECT_DESC was negotiated;
 * - device-readable buffers must come before device-writable ones.
 *
 * A violation makes the queue *broken*: {@link Virtqueue.pop} throws a
 * {@link VirtqueueError}, the transport catches it, puts the device into
 * NEEDS_RESET and stops serving it until the driver resets it.
 *
 * Ring layout (virtio 1.x section 2.7; legacy differs only in placement):
 *
 * | ring | layout |
 * | --- | --- |
 * | descriptor table | size x { addr u64, len u32, flags u16, next u16 } |
 * | available (driver) | flags u16, idx u16, ring[size] u16, used_event u16 |
 * | used (device) | flags u16, idx u16, ring[size] { id u32, len u32 }, avail_event u16 |
 *
 * @example
 * ```ts
 * import { GuestMemory } from "../../core/guest_memory.ts";
 * import { Virtqueue } from "./queue.ts";
 * const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x10000 }]);
 * const q = new Virtqueue(256);
 * q.size = 4;
 * q.descGpa = 0x1000; q.availGpa = 0x2000; q.usedGpa = 0x3000;
 * q.activate(mem, { indirect: true, eventIdx: false });
 * q.pop(); // undefined: the driver has posted nothing yet
 * ```
 * @module
 */

import type { GuestMemory } from "../../core/guest_memory.ts";

/** Descriptor flag: the chain continues at `next`. */
export const VIRTQ_DESC_F_NEXT = 1;
/** Descriptor flag: the buffer is device-writable. */
export const VIRTQ_DESC_F_WRITE = 2;
/** Most entries an indirect table may have whatever the queue size (a u16 `next` indexes it). */
export const MAX_INDIRECT_ENTRIES = 65536;
/** Descriptor flag: the buffer is a table of indirect descriptors. */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Available ring flag: the driver wants no interrupt (without EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Used ring flag: the device wants no notifications (we never set it). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** Bytes of one descriptor. */
export const VIRTQ_DESC_BYTES = 16;
/** Largest queue size the split ring allows. */
export const VIRTQ_MAX_SIZE = 32768;
/** Legacy interface: the used ring starts at the next multiple of this. */
export const VIRTIO_LEGACY_VRING_ALIGN = 4096;

/** A ring the guest broke: the device goes to NEEDS_RESET. */
export class VirtqueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VirtqueueError";
  }
}

/** One guest buffer of a chain (already checked to lie inside guest RAM). */
export interface VirtqBuffer {
  readonly gpa: number;
  readonly length: number;
}

/** Which ring features the driver negotiated. */
export interface QueueFeatures {
  /** VIRTIO_F_INDIRECT_DESC. */
  indirect: boolean;
  /** VIRTIO_F_RING_EVENT_IDX. */
  eventIdx: boolean;
}

/**
 * A popped descriptor chain: the device-readable buffers, then the
 * device-writable ones. `read`/`write` copy through {@link GuestMemory} as
 * if the buffers were one contiguous stream.
 */
export class DescriptorChain {
  /** The head descriptor index (what goes back in the used ring). */
  readonly head: number;
  readonly readable: readonly VirtqBuffer[];
  readonly writable: readonly VirtqBuffer[];
  readonly #mem: GuestMemory;

  constructor(
    mem: GuestMemory,
    head: number,
    readable: readonly VirtqBuffer[],
    writable: readonly VirtqBuffer[],
  ) {
    this.#mem = mem;
    this.head = head;
    this.readable = readable;
    this.writable = writable;
  }

  /** Total bytes of the device-readable buffers. */
  get readableBytes(): number {
    return this.readable.reduce((n, b) => n + b.length, 0);
  }

  /** Total bytes of the device-writable buffers. */
  get writableBytes(): number {
    return this.writable.reduce((n, b) => n + b.length, 0);
  }

  /**
   * Copies up to `into.length` readable bytes starting at stream offset
   * `offset`; returns how many were copied.
   */
  read(offset: number, into: Uint8Array): number {
    return this.#copy(this.readable, offset, into.length, (gpa, at, n) => {
      into.set(this.#mem.slice(gpa, n), at);
    });
  }

  /**
   * Copies `data` into the writable buffers at stream offset `offset`
   * (truncated at their end); returns how many bytes were written.
   */
  write(offset: number, data: Uint8Array): number {
    return this.#copy(this.writable, offset, data.length, (gpa, at, n) => {
      this.#mem.write(gpa, data.subarray(at, at + n));
    });
  }

  #copy(
    buffers: readonly VirtqBuffer[],
    offset: number,
    length: number,
    step: (gpa: number, at: number, n: number) => void,
  ): number {
    let skip = offset;
    let done = 0;
    for (const b of buffers) {
      if (done >= length) break;
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      const n = Math.min(b.length - skip, length - done);
      step(b.gpa + skip, done, n);
      done += n;
      skip = 0;
    }
    return done;
  }
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

const hex = (n: number) => "0x" + n.toString(16);

/**
 * One split virtqueue: its configuration (written by the transport) and the
 * device-side state (next available entry to take, next used entry to fill).
 */
export class Virtqueue {
  /** The largest size the device supports (what the driver reads first). */
  readonly maxSize: number;
  /** Size the driver chose (modern) or `maxSize` (legacy). */
  size: number;
  /** Guest-physical address of the descriptor table. */
  descGpa = 0;
  /** Guest-physical address of the available ring. */
  availGpa = 0;
  /** Guest-physical address of the used ring. */
  usedGpa = 0;
  /** The driver enabled the queue (modern `queue_enable`, legacy PFN != 0). */
  enabled = false;

  #mem: GuestMemory | undefined;
  #features: QueueFeatures = { indirect: false, eventIdx: false };
  #lastAvail = 0;
  #usedIdx = 0;
  #signalledUsed = 0;

  constructor(maxSize: number) {
    if (!isPowerOfTwo(maxSize) || maxSize > VIRTQ_MAX_SIZE) {
      throw new RangeError(`Virtqueue size ${maxSize} is not a power of two up to 32768`);
    }
    this.maxSize = maxSize;
    this.size = maxSize;
  }

  /** Whether the queue was activated (DRIVER_OK with the queue enabled) and serves requests. */
  get active(): boolean {
    return this.#mem !== undefined;
  }

  /** Back to the state after device reset. */
  reset(): void {
    this.size = this.maxSize;
    this.descGpa = 0;
    this.availGpa = 0;
    this.usedGpa = 0;
    this.enabled = false;
    this.#mem = undefined;
    this.#lastAvail = 0;
    this.#usedIdx = 0;
    this.#signalledUsed = 0;
  }

  /**
   * Places the rings the legacy way: descriptors at `pfn * 4096`, the
   * available ring right after them, the used ring at the next 4 KiB
   * boundary. A zero PFN disables the queue.
   */
  setLegacyPfn(pfn: number): void {
    const base = pfn * VIRTIO_LEGACY_VRING_ALIGN;
    this.size = this.maxSize;
    this.descGpa = base;
    this.availGpa = base + VIRTQ_DESC_BYTES * this.size;
    const availEnd = this.availGpa + 6 + 2 * this.size;
    this.usedGpa = Math.ceil(availEnd / VIRTIO_LEGACY_VRING_ALIGN) * VIRTIO_LEGACY_VRING_ALIGN;
    this.enabled = pfn !== 0;
  }

  /** The legacy PFN register's value. */
  get legacyPfn(): number {
    return this.enabled ? Math.floor(this.descGpa / VIRTIO_LEGACY_VRING_ALIGN) : 0;
  }

  /**
   * Checks the configuration and starts serving from `mem`. Throws a
   * {@link VirtqueueError} when the size is not a power of two within
   * `maxSize`, a ring is misaligned, or a ring does not lie inside RAM.
   */
  activate(mem: GuestMemory, features: QueueFeatures): void {
    const size = this.size;
    if (!isPowerOfTwo(size) || size > this.maxSize) {
      throw new VirtqueueError(`queue size ${size} is not a power of two up to ${this.maxSize}`);
    }
    const rings: [string, number, number, number][] = [
      ["descriptor table", this.descGpa, VIRTQ_DESC_BYTES * size, 16],
      ["available ring", this.availGpa, 6 + 2 * size, 2],
      ["used ring", this.usedGpa, 6 + 8 * size, 4],
    ];
    for (const [what, gpa, length, align] of rings) {
      if (!mem.contains(gpa, length)) {
        throw new VirtqueueError(`${what} at ${hex(gpa)} (${length} bytes) is outside guest RAM`);
      }
      if (gpa % align !== 0) {
        throw new VirtqueueError(`${what} at ${hex(gpa)} is not ${align}-byte aligned`);
      }
    }
    this.#mem = mem;
    this.#features = { ...features };
    this.#lastAvail = 0;
    this.#usedIdx = mem.readU16(this.usedGpa + 2);
    this.#signalledUsed = this.#usedIdx;
    // Ask to be notified of the very next buffer (EVENT_IDX).
    if (features.eventIdx) mem.writeU16(this.usedGpa + 4 + 8 * size, this.#lastAvail);
  }

  /** Stops serving (device reset or failure); the configuration stays readable. */
  deactivate(): void {
    this.#mem = undefined;
  }

  #memory(): GuestMemory {
    const mem = this.#mem;
    if (!mem) throw new Error("Virtqueue used before activate()");
    return mem;
  }

  /** How many chains the driver has made available that we have not taken. Throws when broken. */
  pending(): number {
    const mem = this.#memory();
    const availIdx = mem.readU16(this.availGpa + 2);
    const n = (availIdx - this.#lastAvail) & 0xffff;
    if (n > this.size) {
      throw new VirtqueueError(
        `available index ${availIdx} is ${n} entries ahead of ${this.#lastAvail} (queue size ${this.size})`,
      );
    }
    return n;
  }

  /**
   * Takes the next available chain, or `undefined` when there is none.
   * Throws {@link VirtqueueError} when the ring or the chain is broken.
   */
  pop(): DescriptorChain | undefined {
    const mem = this.#memory();
    if (this.pending() === 0) return undefined;
    const size = this.size;
    const head = mem.readU16(this.availGpa + 4 + 2 * (this.#lastAvail % size));
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    if (this.#features.eventIdx) {
      mem.writeU16(this.usedGpa + 4 + 8 * size, this.#lastAvail);
    }
    if (head >= size) throw new VirtqueueError(`head index ${head} >= queue size ${size}`);
    return this.#walk(mem, head);
  }

  /** Puts the last popped chain back (a device that could not serve it yet, e.g. net RX). */
  unpop(): void {
    this.#lastAvail = (this.#lastAvail - 1) & 0xffff;
    if (this.#features.eventIdx) {
      this.#memory().writeU16(this.usedGpa + 4 + 8 * this.size, this.#lastAvail);
    }
  }

  #walk(mem: GuestMemory, head: number): DescriptorChain {
    const readable: VirtqBuffer[] = [];
    const writable: VirtqBuffer[] = [];
    let table = this.descGpa;
    let tableSize = this.size;
    let index = head;
    // Descriptors visited in all: the bound on the work and memory one chain costs.
    let hops = 0;
    let inIndirect = false;
    for (;;) {
      if (index >= tableSize) {
        throw new VirtqueueError(`descriptor index ${index} >= table size ${tableSize}`);
      }
      if (++hops > this.size) {
        throw new VirtqueueError(
          `descriptor chain from head ${head} is longer than the queue size ${this.size} ` +
            "(it loops, or is too long)",
        );
      }
      const at = table + VIRTQ_DESC_BYTES * index;
      const gpa = Number(mem.readU64(at)); // exact: checked against RAM before use
      const length = mem.readU32(at + 8);
      const flags = mem.readU16(at + 12);
      const next = mem.readU16(at + 14);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.#features.indirect) {
          throw new VirtqueueError("indirect descriptor without VIRTIO_F_INDIRECT_DESC");
        }
        if (inIndirect) throw new VirtqueueError("nested indirect descriptor table");
        if (flags & VIRTQ_DESC_F_NEXT) {
          throw new VirtqueueError("indirect descriptor with VIRTQ_DESC_F_NEXT");
        }
        if (length === 0 || length % VIRTQ_DESC_BYTES !== 0) {
          throw new VirtqueueError(`indirect table length ${length} is not a multiple of 16`);
        }
        if (length / VIRTQ_DESC_BYTES > Math.min(this.size, MAX_INDIRECT_ENTRIES)) {
          throw new VirtqueueError(
            `indirect table of ${length / VIRTQ_DESC_BYTES} descriptors is longer than the ` +
              `queue size ${this.size}`,
          );
        }
        if (!mem.contains(gpa, length) || gpa % 16 !== 0) {
          throw new VirtqueueError(`indirect table at ${hex(gpa)} (${length} bytes) is invalid`);
        }
        table = gpa;
        tableSize = length / VIRTQ_DESC_BYTES;
        index = 0;
        inIndirect = true;
        // The descriptor naming the table is no buffer: a full table of queue-size entries is fine.
        hops--;
        continue;
      }
      if (length > 0) {
        if (!mem.contains(gpa, length)) {
          throw new VirtqueueError(`buffer at ${hex(gpa)} (${length} bytes) is outside guest RAM`);
        }
        if (flags & VIRTQ_DESC_F_WRITE) {
          writable.push({ gpa, length });
        } else if (writable.length > 0) {
          throw new VirtqueueError("device-readable buffer after a device-writable one");
        } else {
          readable.push({ gpa, length });
        }
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      index = next;
    }
    return new DescriptorChain(mem, head, readable, writable);
  }

  /** Returns chain `head` to the driver with `writtenBytes` written into it. */
  pushUsed(head: number, writtenBytes: number): void {
    const mem = this.#memory();
    const size = this.size;
    const slot = this.usedGpa + 4 + 8 * (this.#usedIdx % size);
    mem.writeU32(slot, head);
    mem.writeU32(slot + 4, writtenBytes);
    this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
    mem.writeU16(this.usedGpa + 2, this.#usedIdx);
  }

  /**
   * Whether the driver wants an interrupt for the used entries added since
   * the last call (EVENT_IDX's used_event, else the NO_INTERRUPT flag).
   */
  shouldInterrupt(): boolean {
    const mem = this.#memory();
    const oldIdx = this.#signalledUsed;
    const newIdx = this.#usedIdx;
    this.#signalledUsed = newIdx;
    if (oldIdx === newIdx) return false;
    if (this.#features.eventIdx) {
      const usedEvent = mem.readU16(this.availGpa + 4 + 2 * this.size);
      return ((newIdx - usedEvent - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
    }
    return (mem.readU16(this.availGpa) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }
}
