/**
 * A read-only SCSI CD-ROM logical unit (MMC, 2048-byte blocks) over an
 * image file: the commands BIOSes, boot loaders and kernels send a CD drive.
 * It sees CDBs and returns status, sense data and the data-in bytes; the
 * transport (virtio-scsi) moves them.
 *
 * | opcode | command | notes |
 * | --- | --- | --- |
 * | 0x00 | TEST UNIT READY | GOOD: the medium is always present |
 * | 0x03 | REQUEST SENSE | the last CHECK CONDITION's sense, then NO SENSE |
 * | 0x12 | INQUIRY | standard data (type 5, removable); VPD pages 0x00, 0x80 |
 * | 0x1A / 0x5A | MODE SENSE (6) / (10) | header (WP set), page 0x2A (capabilities) |
 * | 0x1B, 0x1E | START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL | GOOD, no effect |
 * | 0x25 | READ CAPACITY (10) | last LBA and 2048 |
 * | 0x9E/0x10 | READ CAPACITY (16) | the same, 64-bit |
 * | 0x28 / 0xA8 / 0x88 | READ (10) / (12) / (16) | beyond the end: LBA OUT OF RANGE |
 * | 0x43 | READ TOC/PMA/ATIP | formats 0 (TOC) and 1 (session info), LBA or MSF |
 * | 0x46 | GET CONFIGURATION | profile CD-ROM (0x0008) current |
 * | 0xA0 | REPORT LUNS | LUN 0 |
 * | 0x2A, 0xAA, 0x8A, ... | writes | DATA PROTECT, WRITE PROTECTED |
 * | others | | CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE |
 *
 * A CDB shorter than its command's length, or with a field out of range,
 * answers ILLEGAL REQUEST with INVALID FIELD IN CDB; reads larger than
 * {@link CDROM_MAX_TRANSFER_BYTES} are refused the same way, so a guest
 * cannot make the host allocate without bound.
 *
 * @example
 * ```ts
 * import { ScsiCdrom } from "./scsi_cdrom.ts";
 * const iso = new Uint8Array(2048 * 20);
 * const cd = new ScsiCdrom({ sizeBytes: iso.length, read: (o, into) => into.set(iso.subarray(o, o + into.length)) });
 * const r = cd.execute(Uint8Array.of(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), 8);
 * r.data; // 00 00 00 13 00 00 08 00: last LBA 19, 2048-byte blocks
 * ```
 * @module
 */

/** SCSI status: GOOD. */
export const SCSI_STATUS_GOOD = 0x00;
/** SCSI status: CHECK CONDITION (sense data follows). */
export const SCSI_STATUS_CHECK_CONDITION = 0x02;

/** Sense key: no sense. */
export const SENSE_NO_SENSE = 0x00;
/** Sense key: not ready. */
export const SENSE_NOT_READY = 0x02;
/** Sense key: medium error. */
export const SENSE_MEDIUM_ERROR = 0x03;
/** Sense key: illegal request. */
export const SENSE_ILLEGAL_REQUEST = 0x05;
/** Sense key: data protect. */
export const SENSE_DATA_PROTECT = 0x07;

/** ASC: invalid command operation code. */
export const ASC_INVALID_OPCODE = 0x20;
/** ASC: logical block address out of range. */
export const ASC_LBA_OUT_OF_RANGE = 0x21;
/** ASC: invalid field in CDB. */
export const ASC_INVALID_FIELD_IN_CDB = 0x24;
/** ASC: write protected. */
export const ASC_WRITE_PROTECTED = 0x27;
/** ASC: unrecovered read error. */
export const ASC_UNRECOVERED_READ_ERROR = 0x11;

/** CD-ROM logical block size. */
export const CDROM_BLOCK_BYTES = 2048;
/** Largest READ served in one command. */
export const CDROM_MAX_TRANSFER_BYTES = 8 * 1024 * 1024;
/** Bytes of fixed-format sense data. */
export const SENSE_BYTES = 18;
/** MMC profile: CD-ROM. */
export const MMC_PROFILE_CDROM = 0x0008;

/** What the unit reads from: the image, in bytes. */
export interface CdromMedium {
  readonly sizeBytes: number;
  /** Fills `into` from byte `offset`; throws on a host I/O error. */
  read(offset: number, into: Uint8Array): void;
}

/** The answer to one command. */
export interface ScsiResult {
  status: number;
  /** Fixed-format sense data (with CHECK CONDITION). */
  sense?: Uint8Array;
  /** Data-in bytes (at most the allocation/transfer length and the buffer). */
  data: Uint8Array;
}

/** Options of {@link ScsiCdrom}. */
export interface ScsiCdromOptions {
  /** Unit serial number (VPD page 0x80). */
  serial?: string;
}

/** CDB length of each group (opcode bits 7-5). */
const GROUP_CDB_BYTES = [6, 10, 10, 0, 16, 12, 0, 0];
/** Opcodes that write the medium. */
const WRITE_OPCODES = new Set([0x0a, 0x2a, 0x2e, 0x3b, 0x41, 0x53, 0x5b, 0x8a, 0x8e, 0xaa]);

/** A read-only CD-ROM LUN. */
export class ScsiCdrom {
  readonly medium: CdromMedium;
  readonly serial: string;
  /** Number of 2048-byte blocks (a partial last block is not addressable). */
  readonly blocks: number;
  #sense: Uint8Array | undefined;

  constructor(medium: CdromMedium, options: ScsiCdromOptions = {}) {
    this.medium = medium;
    this.serial = options.serial ?? "vmmctl-cd0";
    this.blocks = Math.floor(medium.sizeBytes / CDROM_BLOCK_BYTES);
  }

  /**
   * Runs `cdb`; `maxDataIn` is the room in the data-in buffer. Never throws
   * for what the CDB says; a host read error is a MEDIUM ERROR.
   */
  execute(cdb: Uint8Array, maxDataIn: number): ScsiResult {
    if (cdb.length === 0) return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    const op = cdb[0];
    const need = GROUP_CDB_BYTES[op >> 5];
    if (need === 0) return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    if (cdb.length < need) return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    const v = new DataView(cdb.buffer, cdb.byteOffset, cdb.length);
    const out = (bytes: Uint8Array, alloc: number) =>
      this.#good(bytes.subarray(0, Math.min(bytes.length, alloc, maxDataIn)));
    switch (op) {
      case 0x00: // TEST UNIT READY
      case 0x1b: // START STOP UNIT (no tray to move)
      case 0x1e: // PREVENT ALLOW MEDIUM REMOVAL
        return this.#good(new Uint8Array());
      case 0x03: { // REQUEST SENSE
        const sense = this.#sense ?? fixedSense(SENSE_NO_SENSE, 0);
        this.#sense = undefined;
        return { status: SCSI_STATUS_GOOD, data: sense.subarray(0, Math.min(cdb[4], maxDataIn)) };
      }
      case 0x12:
        return this.#inquiry(cdb, v.getUint16(3), maxDataIn);
      case 0x1a: // MODE SENSE (6)
        return this.#modeSense(cdb[2], cdb[4], false, maxDataIn);
      case 0x5a: // MODE SENSE (10)
        return this.#modeSense(cdb[2], v.getUint16(7), true, maxDataIn);
      case 0x25: { // READ CAPACITY (10)
        const b = new Uint8Array(8);
        const d = new DataView(b.buffer);
        d.setUint32(0, Math.min(this.blocks - 1, 0xffffffff) >>> 0);
        d.setUint32(4, CDROM_BLOCK_BYTES);
        if (this.blocks === 0) d.setUint32(0, 0);
        return out(b, 8);
      }
      case 0x9e: { // SERVICE ACTION IN (16)
        if ((cdb[1] & 0x1f) !== 0x10) {
          return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
        }
        const b = new Uint8Array(32);
        const d = new DataView(b.buffer);
        d.setBigUint64(0, BigInt(Math.max(0, this.blocks - 1)));
        d.setUint32(8, CDROM_BLOCK_BYTES);
        return out(b, v.getUint32(10));
      }
      case 0x28: // READ (10)
        return this.#read(v.getUint32(2), v.getUint16(7), maxDataIn);
      case 0xa8: // READ (12)
        return this.#read(v.getUint32(2), v.getUint32(6), maxDataIn);
      case 0x88: // READ (16)
        return this.#read(Number(v.getBigUint64(2)), v.getUint32(10), maxDataIn);
      case 0x43:
        return this.#readToc(cdb, v.getUint16(7), maxDataIn);
      case 0x46: { // GET CONFIGURATION: header + feature 0 (profile list)
        const b = new Uint8Array(16);
        const d = new DataView(b.buffer);
        d.setUint32(0, b.length - 4);
        d.setUint16(6, MMC_PROFILE_CDROM);
        d.setUint16(8, 0x0000); // feature 0: profile list
        b[10] = 0x03; // persistent, current
        b[11] = 4;
        d.setUint16(12, MMC_PROFILE_CDROM);
        b[14] = 0x01; // current
        return out(b, v.getUint16(7));
      }
      case 0xa0: { // REPORT LUNS: one LUN, number 0
        const b = new Uint8Array(16);
        new DataView(b.buffer).setUint32(0, 8);
        const alloc = v.getUint32(6);
        if (alloc < 16) return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
        return out(b, alloc);
      }
    }
    if (WRITE_OPCODES.has(op)) return this.#check(SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
    return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
  }

  #good(data: Uint8Array): ScsiResult {
    this.#sense = undefined;
    return { status: SCSI_STATUS_GOOD, data };
  }

  #check(key: number, asc: number, ascq = 0): ScsiResult {
    const sense = fixedSense(key, asc, ascq);
    this.#sense = sense;
    return { status: SCSI_STATUS_CHECK_CONDITION, sense, data: new Uint8Array() };
  }

  #inquiry(cdb: Uint8Array, alloc: number, maxDataIn: number): ScsiResult {
    const evpd = (cdb[1] & 0x01) !== 0;
    const page = cdb[2];
    let b: Uint8Array;
    if (!evpd) {
      if (page !== 0) return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
      b = new Uint8Array(36);
      b[0] = 0x05; // peripheral device type: CD/DVD
      b[1] = 0x80; // removable
      b[2] = 0x05; // SPC-3
      b[3] = 0x02; // response data format 2
      b[4] = b.length - 5;
      b.set(ascii("VMMCTL  ", 8), 8);
      b.set(ascii("VIRTUAL CD-ROM", 16), 16);
      b.set(ascii("1.0", 4), 32);
    } else if (page === 0x00) {
      b = Uint8Array.of(0x05, 0x00, 0x00, 2, 0x00, 0x80);
    } else if (page === 0x80) {
      const s = ascii(this.serial, Math.min(this.serial.length, 32));
      b = new Uint8Array(4 + s.length);
      b[0] = 0x05;
      b[1] = 0x80;
      b[3] = s.length;
      b.set(s, 4);
    } else {
      return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    }
    return this.#good(b.subarray(0, Math.min(b.length, alloc, maxDataIn)));
  }

  #modeSense(pageByte: number, alloc: number, ten: boolean, maxDataIn: number): ScsiResult {
    const page = pageByte & 0x3f;
    const pc = pageByte >> 6;
    if (pc === 3) return this.#check(SENSE_ILLEGAL_REQUEST, 0x39); // saving not supported
    const pages: number[] = [];
    if (page === 0x2a || page === 0x3f) {
      // CD capabilities and mechanical status: reads CD-ROM, tray loading mechanism.
      const p = new Array(22).fill(0);
      p[0] = 0x2a;
      p[1] = 20;
      p[2] = 0x01; // CD-R read (harmless); CD-ROM read is implied
      p[6] = 0x29; // lock, eject, tray
      pages.push(...p);
    } else if (page !== 0x00) {
      return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    }
    const header = ten ? 8 : 4;
    const b = new Uint8Array(header + pages.length);
    b.set(pages, header);
    if (ten) {
      new DataView(b.buffer).setUint16(0, b.length - 2);
      b[3] = 0x80; // WP
    } else {
      b[0] = b.length - 1;
      b[2] = 0x80;
    }
    return this.#good(b.subarray(0, Math.min(b.length, alloc, maxDataIn)));
  }

  #read(lba: number, blocks: number, maxDataIn: number): ScsiResult {
    if (!Number.isSafeInteger(lba) || lba > this.blocks || lba + blocks > this.blocks) {
      return this.#check(SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    }
    const bytes = blocks * CDROM_BLOCK_BYTES;
    if (bytes > CDROM_MAX_TRANSFER_BYTES || bytes > maxDataIn) {
      return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    }
    const data = new Uint8Array(bytes);
    try {
      this.medium.read(lba * CDROM_BLOCK_BYTES, data);
    } catch {
      return this.#check(SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
    }
    return this.#good(data);
  }

  #readToc(cdb: Uint8Array, alloc: number, maxDataIn: number): ScsiResult {
    const msf = (cdb[1] & 0x02) !== 0;
    const format = (cdb[2] & 0x0f) || (cdb[9] >> 6); // old drives put the format in byte 9
    const address = (lba: number) => {
      const b = new Uint8Array(4);
      if (msf) {
        const f = lba + 150;
        b[1] = Math.floor(f / (75 * 60));
        b[2] = Math.floor(f / 75) % 60;
        b[3] = f % 75;
      } else {
        new DataView(b.buffer).setUint32(0, lba);
      }
      return b;
    };
    const track = (number: number, lba: number) => {
      const t = new Uint8Array(8);
      t[1] = 0x14; // ADR 1, data track
      t[2] = number;
      t.set(address(lba), 4);
      return t;
    };
    let body: Uint8Array[];
    if (format === 0) {
      const start = cdb[6];
      if (start > 1 && start !== 0xaa) {
        return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
      }
      body = start === 0xaa ? [track(0xaa, this.blocks)] : [track(1, 0), track(0xaa, this.blocks)];
    } else if (format === 1) {
      body = [track(1, 0)];
    } else {
      return this.#check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    }
    const b = new Uint8Array(4 + 8 * body.length);
    body.forEach((t, i) => b.set(t, 4 + 8 * i));
    new DataView(b.buffer).setUint16(0, b.length - 2);
    b[2] = 1; // first track / session
    b[3] = 1; // last
    return this.#good(b.subarray(0, Math.min(b.length, alloc, maxDataIn)));
  }
}

/** Fixed-format sense data (response code 0x70, current). */
export function fixedSense(key: number, asc: number, ascq = 0): Uint8Array {
  const s = new Uint8Array(SENSE_BYTES);
  s[0] = 0x70;
  s[2] = key & 0x0f;
  s[7] = SENSE_BYTES - 8;
  s[12] = asc;
  s[13] = ascq;
  return s;
}

function ascii(text: string, width: number): Uint8Array {
  const b = new Uint8Array(width).fill(0x20);
  for (let i = 0; i < Math.min(width, text.length); i++) b[i] = text.charCodeAt(i) & 0x7f;
  return b;
}
