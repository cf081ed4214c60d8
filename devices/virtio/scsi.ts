/**
 * virtio-scsi with one target holding one read-only CD-ROM LUN (what vmd
 * calls vioscsi): SeaBIOS boots from it, and guests' virtio_scsi drivers
 * see a CD drive.
 *
 * Queues: 0 control (task management and async-notification requests, all
 * answered "complete" / no events), 1 event (buffers are held: no events
 * are ever sent), 2 requests. A request chain is the device-readable
 * header (LUN 8, tag 8, task attribute, priority, CRN, CDB of `cdb_size`),
 * then the device-writable response (sense_len, resid, status qualifier,
 * status, response, sense of `sense_size`) followed by the data-in buffers.
 * LUNs other than target 0 LUN 0 answer BAD_TARGET; chains too short for the
 * header or the response are dropped (length 0, logged).
 *
 * Configuration space (little-endian u32 unless noted):
 *
 * | offset | field | value |
 * | --- | --- | --- |
 * | 0x00 | num_queues | 1 |
 * | 0x04 | seg_max | 126 |
 * | 0x08 | max_sectors | 16384 (512-byte units: the CD-ROM's 8 MiB transfer limit) |
 * | 0x0C | cmd_per_lun | 128 |
 * | 0x10 | event_info_size | 16 |
 * | 0x14 | sense_size | 96 (driver-writable, 0..96) |
 * | 0x18 | cdb_size | 32 (driver-writable, 6..32) |
 * | 0x1C | max_channel (u16) | 0 |
 * | 0x1E | max_target (u16) | 0 |
 * | 0x20 | max_lun | 0 |
 *
 * @module
 */

import { guestLog, type RateLimitedLog } from "../../core/device.ts";
import { type CdromMedium, ScsiCdrom } from "../scsi_cdrom.ts";
import type { DescriptorChain, Virtqueue } from "./queue.ts";
import {
  featureBit,
  VIRTIO_F_INDIRECT_DESC,
  type VirtioBackend,
  type VirtioDeviceContext,
} from "./virtio.ts";

/** Virtio device type: SCSI host. */
export const VIRTIO_ID_SCSI = 8;
/** Queue index: control. */
export const VIRTIO_SCSI_CONTROL_QUEUE = 0;
/** Queue index: events. */
export const VIRTIO_SCSI_EVENT_QUEUE = 1;
/** Queue index: the (only) request queue. */
export const VIRTIO_SCSI_REQUEST_QUEUE = 2;
/** Queue size of each queue. */
export const VIRTIO_SCSI_QUEUE_SIZE = 128;
/** Default and largest sense size. */
export const VIRTIO_SCSI_SENSE_SIZE = 96;
/** Default and largest CDB size. */
export const VIRTIO_SCSI_CDB_SIZE = 32;
/** Bytes of the request header before the CDB. */
export const VIRTIO_SCSI_REQ_HEADER_BYTES = 19;
/** Bytes of the response before the sense data. */
export const VIRTIO_SCSI_RESP_HEADER_BYTES = 12;
/** Configuration bytes. */
export const VIRTIO_SCSI_CONFIG_BYTES = 36;

/** Response: completed (the SCSI status says how). */
export const VIRTIO_SCSI_S_OK = 0;
/** Response: the data-in buffer was too small. */
export const VIRTIO_SCSI_S_OVERRUN = 1;
/** Response: no such target. */
export const VIRTIO_SCSI_S_BAD_TARGET = 3;
/** Control request type: task management function. */
export const VIRTIO_SCSI_T_TMF = 0;
/** Control request type: asynchronous notification query. */
export const VIRTIO_SCSI_T_AN_QUERY = 1;
/** Control request type: asynchronous notification subscribe. */
export const VIRTIO_SCSI_T_AN_SUBSCRIBE = 2;
/** Task management response: function complete. */
export const VIRTIO_SCSI_S_FUNCTION_COMPLETE = 0;

/** Options of {@link VirtioScsi}. */
export interface VirtioScsiOptions {
  index?: number;
  log?: RateLimitedLog;
}

/** virtio-scsi with a CD-ROM at target 0, LUN 0. */
export class VirtioScsi implements VirtioBackend {
  readonly name: string;
  readonly deviceType = VIRTIO_ID_SCSI;
  readonly queueSizes: readonly number[] = [
    VIRTIO_SCSI_QUEUE_SIZE,
    VIRTIO_SCSI_QUEUE_SIZE,
    VIRTIO_SCSI_QUEUE_SIZE,
  ];
  readonly features: bigint = featureBit(VIRTIO_F_INDIRECT_DESC);
  readonly configBytes = VIRTIO_SCSI_CONFIG_BYTES;
  readonly cdrom: ScsiCdrom;
  readonly #medium: CdromMedium & { close?(): void };
  readonly #log: RateLimitedLog;
  #senseSize = VIRTIO_SCSI_SENSE_SIZE;
  #cdbSize = VIRTIO_SCSI_CDB_SIZE;

  constructor(medium: CdromMedium & { close?(): void }, options: VirtioScsiOptions = {}) {
    const index = options.index ?? 0;
    this.name = `virtio-scsi${index}`;
    this.#medium = medium;
    this.#log = options.log ?? guestLog;
    this.cdrom = new ScsiCdrom(medium, { serial: `vmmctl-cd${index}` });
  }

  #config(): Uint8Array {
    const b = new Uint8Array(VIRTIO_SCSI_CONFIG_BYTES);
    const v = new DataView(b.buffer);
    v.setUint32(0x00, 1, true);
    v.setUint32(0x04, VIRTIO_SCSI_QUEUE_SIZE - 2, true);
    v.setUint32(0x08, 16384, true);
    v.setUint32(0x0c, VIRTIO_SCSI_QUEUE_SIZE, true);
    v.setUint32(0x10, 16, true);
    v.setUint32(0x14, this.#senseSize, true);
    v.setUint32(0x18, this.#cdbSize, true);
    return b;
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.#config().subarray(offset, offset + data.length));
  }

  writeConfig(offset: number, data: Uint8Array): void {
    if (data.length !== 4 || (offset !== 0x14 && offset !== 0x18)) return;
    const value = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);
    if (offset === 0x14 && value <= VIRTIO_SCSI_SENSE_SIZE) this.#senseSize = value;
    else if (offset === 0x18 && value >= 6 && value <= VIRTIO_SCSI_CDB_SIZE) this.#cdbSize = value;
    else {this.#log.log(
        `${this.name}: config write of ${value} at 0x${offset.toString(16)} ignored`,
      );}
  }

  reset(): void {
    this.#senseSize = VIRTIO_SCSI_SENSE_SIZE;
    this.#cdbSize = VIRTIO_SCSI_CDB_SIZE;
  }

  process(index: number, queue: Virtqueue, _ctx: VirtioDeviceContext): boolean {
    if (index === VIRTIO_SCSI_EVENT_QUEUE) return false; // held until an event (never)
    for (let served = 0; served < VIRTIO_SCSI_QUEUE_SIZE; served++) {
      const chain = queue.pop();
      if (!chain) return false;
      const written = index === VIRTIO_SCSI_CONTROL_QUEUE
        ? this.#control(chain)
        : this.#request(chain);
      queue.pushUsed(chain.head, written);
    }
    return queue.pending() > 0;
  }

  /** Serves one command request; returns the bytes written. */
  handleRequest(chain: DescriptorChain): number {
    return this.#request(chain);
  }

  #request(chain: DescriptorChain): number {
    const reqBytes = VIRTIO_SCSI_REQ_HEADER_BYTES + this.#cdbSize;
    const respBytes = VIRTIO_SCSI_RESP_HEADER_BYTES + this.#senseSize;
    const req = new Uint8Array(reqBytes);
    if (chain.read(0, req) < reqBytes) {
      this.#log.log(`${this.name}: request shorter than its ${reqBytes}-byte header dropped`);
      return 0;
    }
    const writable = chain.writableBytes;
    if (writable < respBytes) {
      this.#log.log(`${this.name}: request without room for its response dropped`);
      return 0;
    }
    const resp = new Uint8Array(respBytes);
    const rv = new DataView(resp.buffer);
    const dataIn = writable - respBytes;
    if (!isLun0(req)) {
      resp[11] = VIRTIO_SCSI_S_BAD_TARGET;
      chain.write(0, resp);
      return respBytes;
    }
    const cdb = req.subarray(VIRTIO_SCSI_REQ_HEADER_BYTES);
    const result = this.cdrom.execute(cdb, dataIn);
    if (result.data.length > 0) chain.write(respBytes, result.data);
    const sense = result.sense?.subarray(0, this.#senseSize);
    if (sense) {
      rv.setUint32(0, sense.length, true);
      resp.set(sense, VIRTIO_SCSI_RESP_HEADER_BYTES);
    }
    rv.setUint32(4, dataIn - result.data.length, true); // resid
    resp[10] = result.status;
    resp[11] = VIRTIO_SCSI_S_OK;
    chain.write(0, resp);
    return respBytes + result.data.length;
  }

  #control(chain: DescriptorChain): number {
    const type = new Uint8Array(4);
    if (chain.read(0, type) < 4) {
      this.#log.log(`${this.name}: control request without a type dropped`);
      return 0;
    }
    const t = new DataView(type.buffer).getUint32(0, true);
    if (t === VIRTIO_SCSI_T_TMF) {
      if (chain.writableBytes < 1) return 0;
      chain.write(0, Uint8Array.of(VIRTIO_SCSI_S_FUNCTION_COMPLETE));
      return 1;
    }
    if (t === VIRTIO_SCSI_T_AN_QUERY || t === VIRTIO_SCSI_T_AN_SUBSCRIBE) {
      if (chain.writableBytes < 5) return 0;
      chain.write(0, Uint8Array.of(0, 0, 0, 0, VIRTIO_SCSI_S_OK)); // no events supported
      return 5;
    }
    this.#log.log(`${this.name}: unknown control request type ${t} dropped`);
    return 0;
  }

  close(): void {
    this.#medium.close?.();
  }
}

/** Whether the 8-byte LUN field addresses target 0, LUN 0 (single-level, flat). */
function isLun0(req: Uint8Array): boolean {
  const lun = ((req[2] & 0x3f) << 8) | req[3];
  return req[0] === 1 && req[1] === 0 && lun === 0;
}
