/**
 * virtio-blk: a disk image as a virtio block device (one request queue).
 *
 * A request is a chain: a 16-byte header the device reads (type u32,
 * reserved u32, sector u64), data buffers (read for OUT, written for IN),
 * and a final device-writable status byte. Requests outside the disk, of a
 * length that is not whole sectors, or writes to a read-only disk get
 * VIRTIO_BLK_S_IOERR and touch nothing; unknown types get UNSUPP. A chain
 * too short for its header or without a status byte is dropped: it goes back
 * in the used ring with length 0 and the event is logged.
 *
 * Configuration space:
 *
 * | offset | field |
 * | --- | --- |
 * | 0x00 | capacity (u64, 512-byte sectors) |
 * | 0x08 | size_max (u32, VIRTIO_BLK_F_SIZE_MAX) |
 * | 0x0C | seg_max (u32, VIRTIO_BLK_F_SEG_MAX) |
 * | 0x10 | geometry (cylinders u16, heads u8, sectors u8; not offered) |
 * | 0x14 | blk_size (u32, VIRTIO_BLK_F_BLK_SIZE) |
 *
 * @example
 * ```ts
 * import { VirtioBlk } from "./blk.ts";
 * import type { DiskImage } from "../../disk/image.ts";
 * const bytes = new Uint8Array(4096);
 * const disk: DiskImage = {
 *   sizeBytes: bytes.length, readonly: false, format: "raw",
 *   read: (o, into) => into.set(bytes.subarray(o, o + into.length)),
 *   write: (o, data) => bytes.set(data, o), flush: () => {}, close: () => {},
 * };
 * const blk = new VirtioBlk(disk, { index: 0 });
 * const cap = new Uint8Array(8);
 * blk.readConfig(0, cap); // capacity 8 sectors
 * ```
 * @module
 */

import type { DiskImage } from "../../disk/image.ts";
import { DiskError } from "../../disk/errors.ts";
import { guestLog, type RateLimitedLog } from "../../core/device.ts";
import type { DescriptorChain } from "./queue.ts";
import {
  featureBit,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_ID_BLOCK,
  type VirtioBackend,
} from "./virtio.ts";

/** Feature: size_max is valid. */
export const VIRTIO_BLK_F_SIZE_MAX = 1n;
/** Feature: seg_max is valid. */
export const VIRTIO_BLK_F_SEG_MAX = 2n;
/** Feature: the disk is read-only. */
export const VIRTIO_BLK_F_RO = 5n;
/** Feature: blk_size is valid. */
export const VIRTIO_BLK_F_BLK_SIZE = 6n;
/** Feature: FLUSH requests are supported. */
export const VIRTIO_BLK_F_FLUSH = 9n;

/** Request type: read sectors. */
export const VIRTIO_BLK_T_IN = 0;
/** Request type: write sectors. */
export const VIRTIO_BLK_T_OUT = 1;
/** Request type: make completed writes durable. */
export const VIRTIO_BLK_T_FLUSH = 4;
/** Request type: read the 20-byte device ID string. */
export const VIRTIO_BLK_T_GET_ID = 8;

/** Status: success. */
export const VIRTIO_BLK_S_OK = 0;
/** Status: I/O error (also: out of range, read-only). */
export const VIRTIO_BLK_S_IOERR = 1;
/** Status: unsupported request. */
export const VIRTIO_BLK_S_UNSUPP = 2;

/** Bytes of a request header. */
export const VIRTIO_BLK_HEADER_BYTES = 16;
/** A virtio-blk sector. */
export const VIRTIO_BLK_SECTOR_BYTES = 512;
/** Length of the GET_ID string. */
export const VIRTIO_BLK_ID_BYTES = 20;
/** Queue size of the request queue. */
export const VIRTIO_BLK_QUEUE_SIZE = 128;
/** Largest single data segment we announce (size_max). */
export const VIRTIO_BLK_SIZE_MAX = 1024 * 1024;
/** Most data segments per request (seg_max): the queue minus header and status. */
export const VIRTIO_BLK_SEG_MAX = VIRTIO_BLK_QUEUE_SIZE - 2;
/** Largest data transfer of one request we serve (bigger ones get IOERR). */
export const VIRTIO_BLK_MAX_TRANSFER_BYTES = 16 * 1024 * 1024;
/** Bytes of configuration space we expose (through blk_size). */
export const VIRTIO_BLK_CONFIG_BYTES = 24;

/** Options of {@link VirtioBlk}. */
export interface VirtioBlkOptions {
  /** The disk's index, for the name and the serial "vmmctl-<index>". */
  index: number;
  log?: RateLimitedLog;
}

/** A virtio block device backed by a {@link DiskImage}. */
export class VirtioBlk implements VirtioBackend {
  readonly name: string;
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly queueSizes: readonly number[] = [VIRTIO_BLK_QUEUE_SIZE];
  readonly features: bigint;
  readonly configBytes = VIRTIO_BLK_CONFIG_BYTES;
  readonly disk: DiskImage;
  /** The GET_ID answer. */
  readonly serial: string;
  readonly #config = new Uint8Array(VIRTIO_BLK_CONFIG_BYTES);
  readonly #log: RateLimitedLog;
  readonly #sectors: number;

  constructor(disk: DiskImage, options: VirtioBlkOptions) {
    this.disk = disk;
    this.name = `virtio-blk${options.index}`;
    this.serial = `vmmctl-${options.index}`;
    this.#log = options.log ?? guestLog;
    this.#sectors = Math.floor(disk.sizeBytes / VIRTIO_BLK_SECTOR_BYTES);
    let features = featureBit(VIRTIO_BLK_F_SIZE_MAX) | featureBit(VIRTIO_BLK_F_SEG_MAX) |
      featureBit(VIRTIO_BLK_F_BLK_SIZE) | featureBit(VIRTIO_BLK_F_FLUSH) |
      featureBit(VIRTIO_F_INDIRECT_DESC) | featureBit(VIRTIO_F_RING_EVENT_IDX);
    if (disk.readonly) features |= featureBit(VIRTIO_BLK_F_RO);
    this.features = features;
    const view = new DataView(this.#config.buffer);
    view.setBigUint64(0, BigInt(this.#sectors), true);
    view.setUint32(8, VIRTIO_BLK_SIZE_MAX, true);
    view.setUint32(12, VIRTIO_BLK_SEG_MAX, true);
    view.setUint32(20, VIRTIO_BLK_SECTOR_BYTES, true);
  }

  /** Capacity in 512-byte sectors. */
  get capacitySectors(): number {
    return this.#sectors;
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.#config.subarray(offset, offset + data.length));
  }

  handle(_index: number, chain: DescriptorChain): number {
    const header = new Uint8Array(VIRTIO_BLK_HEADER_BYTES);
    if (chain.read(0, header) < VIRTIO_BLK_HEADER_BYTES) {
      this.#log.log(
        `${this.name}: request with a short header (${chain.readableBytes} bytes) dropped`,
      );
      return 0;
    }
    const writable = chain.writableBytes;
    if (writable < 1) {
      this.#log.log(`${this.name}: request without a status byte dropped`);
      return 0;
    }
    const view = new DataView(header.buffer);
    const type = view.getUint32(0, true);
    const sector = view.getBigUint64(8, true);
    const statusAt = writable - 1;
    const finish = (status: number, dataBytes: number): number => {
      chain.write(statusAt, Uint8Array.of(status));
      return dataBytes + 1;
    };
    // seg_max is a promise the driver made: more segments than that (besides header and status) fail.
    const segments = chain.readable.length + chain.writable.length - 2;
    if (segments > VIRTIO_BLK_SEG_MAX) {
      this.#log.log(
        `${this.name}: request of ${segments} segments (seg_max ${VIRTIO_BLK_SEG_MAX})`,
      );
      return finish(VIRTIO_BLK_S_IOERR, 0);
    }
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        const length = statusAt;
        const offset = this.#checkRange(sector, length, "read");
        if (offset === undefined) return finish(VIRTIO_BLK_S_IOERR, 0);
        const data = new Uint8Array(length);
        if (!this.#disk(() => this.disk.read(offset, data), "read")) {
          return finish(VIRTIO_BLK_S_IOERR, 0);
        }
        chain.write(0, data);
        return finish(VIRTIO_BLK_S_OK, length);
      }
      case VIRTIO_BLK_T_OUT: {
        const length = chain.readableBytes - VIRTIO_BLK_HEADER_BYTES;
        if (this.disk.readonly) {
          this.#log.log(`${this.name}: write to a read-only disk refused`);
          return finish(VIRTIO_BLK_S_IOERR, 0);
        }
        const offset = this.#checkRange(sector, length, "write");
        if (offset === undefined) return finish(VIRTIO_BLK_S_IOERR, 0);
        const data = new Uint8Array(length);
        chain.read(VIRTIO_BLK_HEADER_BYTES, data);
        const ok = this.#disk(() => this.disk.write(offset, data), "write");
        return finish(ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, 0);
      }
      case VIRTIO_BLK_T_FLUSH: {
        const ok = this.disk.readonly || this.#disk(() => this.disk.flush(), "flush");
        return finish(ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, 0);
      }
      case VIRTIO_BLK_T_GET_ID: {
        const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
        id.set(new TextEncoder().encode(this.serial).subarray(0, VIRTIO_BLK_ID_BYTES));
        const n = Math.min(statusAt, VIRTIO_BLK_ID_BYTES);
        chain.write(0, id.subarray(0, n));
        return finish(VIRTIO_BLK_S_OK, n);
      }
      default:
        this.#log.log(`${this.name}: unsupported request type ${type}`);
        return finish(VIRTIO_BLK_S_UNSUPP, 0);
    }
  }

  /** The byte offset of a transfer when it is whole sectors inside the disk. */
  #checkRange(sector: bigint, length: number, what: string): number | undefined {
    if (length % VIRTIO_BLK_SECTOR_BYTES !== 0 || length > VIRTIO_BLK_MAX_TRANSFER_BYTES) {
      this.#log.log(`${this.name}: ${what} of ${length} bytes is not whole sectors or too big`);
      return undefined;
    }
    const sectors = BigInt(length / VIRTIO_BLK_SECTOR_BYTES);
    if (sector > BigInt(this.#sectors) || sector + sectors > BigInt(this.#sectors)) {
      this.#log.log(`${this.name}: ${what} at sector ${sector} (+${sectors}) is beyond the disk`);
      return undefined;
    }
    return Number(sector) * VIRTIO_BLK_SECTOR_BYTES;
  }

  /** Runs a disk operation; a DiskError becomes `false` (IOERR), anything else throws. */
  #disk(op: () => void, what: string): boolean {
    try {
      op();
      return true;
    } catch (e) {
      if (e instanceof DiskError) {
        this.#log.log(`${this.name}: ${what} failed: ${e.message}`);
        return false;
      }
      throw e;
    }
  }

  close(): void {
    this.disk.close();
  }
}
