import assert from "node:assert/strict";
import {
  ASC_INVALID_FIELD_IN_CDB,
  ASC_INVALID_OPCODE,
  ASC_LBA_OUT_OF_RANGE,
  ASC_WRITE_PROTECTED,
  CDROM_MAX_TRANSFER_BYTES,
  SCSI_STATUS_CHECK_CONDITION,
  SCSI_STATUS_GOOD,
  ScsiCdrom,
  SENSE_DATA_PROTECT,
  SENSE_ILLEGAL_REQUEST,
  SENSE_MEDIUM_ERROR,
} from "./scsi_cdrom.ts";

/** An image of `blocks` 2048-byte blocks; block n starts with n as a u32. */
function cd(blocks: number, fail = false) {
  const bytes = new Uint8Array(blocks * 2048 + 100); // a partial last block is not addressable
  for (let n = 0; n < blocks; n++) new DataView(bytes.buffer).setUint32(n * 2048, n);
  return new ScsiCdrom({
    sizeBytes: bytes.length,
    read: (o, into) => {
      if (fail) throw new Error("EIO");
      into.set(bytes.subarray(o, o + into.length));
    },
  });
}

const cdb = (...b: number[]) => Uint8Array.from(b);
const be32 = (d: Uint8Array, at: number) => new DataView(d.buffer, d.byteOffset).getUint32(at);

function expectCheck(r: ReturnType<ScsiCdrom["execute"]>, key: number, asc: number) {
  assert.equal(r.status, SCSI_STATUS_CHECK_CONDITION);
  assert.equal(r.sense?.[0], 0x70);
  assert.equal(r.sense?.[2], key);
  assert.equal(r.sense?.[12], asc);
  assert.equal(r.data.length, 0);
}

Deno.test("cdrom: TEST UNIT READY, INQUIRY standard data and VPD pages", () => {
  const u = cd(10);
  assert.equal(u.execute(cdb(0, 0, 0, 0, 0, 0), 0).status, SCSI_STATUS_GOOD);
  const inq = u.execute(cdb(0x12, 0, 0, 0, 96, 0), 4096);
  assert.equal(inq.status, SCSI_STATUS_GOOD);
  assert.equal(inq.data.length, 36);
  assert.equal(inq.data[0], 0x05, "CD/DVD");
  assert.equal(inq.data[1], 0x80, "removable");
  assert.equal(inq.data[4], 31);
  assert.equal(new TextDecoder().decode(inq.data.subarray(8, 16)), "VMMCTL  ");
  // The allocation length and the buffer both bound the answer.
  assert.equal(u.execute(cdb(0x12, 0, 0, 0, 5, 0), 4096).data.length, 5);
  assert.equal(u.execute(cdb(0x12, 0, 0, 0, 96, 0), 8).data.length, 8);
  assert.deepEqual([...u.execute(cdb(0x12, 1, 0, 0, 96, 0), 4096).data], [5, 0, 0, 2, 0, 0x80]);
  const serial = u.execute(cdb(0x12, 1, 0x80, 0, 96, 0), 4096).data;
  assert.equal(new TextDecoder().decode(serial.subarray(4)), "vmmctl-cd0");
  expectCheck(u.execute(cdb(0x12, 1, 0x83, 0, 96, 0), 4096), SENSE_ILLEGAL_REQUEST, 0x24);
  expectCheck(u.execute(cdb(0x12, 0, 0x80, 0, 96, 0), 4096), SENSE_ILLEGAL_REQUEST, 0x24);
});

Deno.test("cdrom: READ CAPACITY (10) and (16) give the last LBA and 2048", () => {
  const u = cd(10);
  const r10 = u.execute(cdb(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), 8);
  assert.deepEqual([...r10.data], [0, 0, 0, 9, 0, 0, 8, 0]);
  const r16 = u.execute(cdb(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0), 32);
  assert.equal(r16.data.length, 32);
  assert.equal(be32(r16.data, 4), 9);
  assert.equal(be32(r16.data, 8), 2048);
  expectCheck(
    u.execute(cdb(0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0), 32),
    SENSE_ILLEGAL_REQUEST,
    ASC_INVALID_FIELD_IN_CDB,
  );
});

Deno.test("cdrom: READ (10), (12), (16) read whole blocks; out of range and oversize refused", () => {
  const u = cd(10);
  const r10 = u.execute(cdb(0x28, 0, 0, 0, 0, 3, 0, 0, 2, 0), 8192);
  assert.equal(r10.status, SCSI_STATUS_GOOD);
  assert.equal(r10.data.length, 4096);
  assert.equal(be32(r10.data, 0), 3);
  assert.equal(be32(r10.data, 2048), 4);
  const r12 = u.execute(cdb(0xa8, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0), 2048);
  assert.equal(be32(r12.data, 0), 9);
  const r16 = u.execute(cdb(0x88, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0), 2048);
  assert.equal(be32(r16.data, 0), 5);
  assert.equal(u.execute(cdb(0x28, 0, 0, 0, 0, 10, 0, 0, 0, 0), 0).status, SCSI_STATUS_GOOD);
  for (
    const bad of [
      cdb(0x28, 0, 0, 0, 0, 9, 0, 0, 2, 0), // runs past the end
      cdb(0x28, 0, 0, 0, 0, 11, 0, 0, 0, 0),
      cdb(0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0),
      cdb(0x88, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0),
    ]
  ) {
    expectCheck(u.execute(bad, 1 << 20), SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
  }
  // REQUEST SENSE returns the last error once.
  const sense = u.execute(cdb(0x03, 0, 0, 0, 18, 0), 18);
  assert.equal(sense.data[2], SENSE_ILLEGAL_REQUEST);
  assert.equal(sense.data[12], ASC_LBA_OUT_OF_RANGE);
  assert.equal(u.execute(cdb(0x03, 0, 0, 0, 18, 0), 18).data[2], 0);
  // A read larger than the buffer, or than the per-command limit, is an invalid field.
  expectCheck(u.execute(cdb(0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0), 2048), SENSE_ILLEGAL_REQUEST, 0x24);
  const huge = cd(CDROM_MAX_TRANSFER_BYTES / 2048 + 8);
  const blocks = CDROM_MAX_TRANSFER_BYTES / 2048 + 1;
  expectCheck(
    huge.execute(
      cdb(0xa8, 0, 0, 0, 0, 0, blocks >>> 24, blocks >> 16, blocks >> 8, blocks, 0, 0),
      1 << 30,
    ),
    SENSE_ILLEGAL_REQUEST,
    ASC_INVALID_FIELD_IN_CDB,
  );
  expectCheck(
    cd(4, true).execute(cdb(0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0), 2048),
    SENSE_MEDIUM_ERROR,
    0x11,
  );
});

Deno.test("cdrom: READ TOC formats 0 and 1, LBA and MSF; GET CONFIGURATION; REPORT LUNS", () => {
  const u = cd(10);
  const toc = u.execute(cdb(0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0), 100).data;
  assert.equal(toc.length, 20);
  assert.deepEqual([...toc.subarray(0, 4)], [0, 18, 1, 1]);
  assert.equal(toc[6], 1, "track 1");
  assert.equal(toc[5], 0x14, "data track");
  assert.equal(toc[14], 0xaa, "lead-out");
  assert.equal(be32(toc, 16), 10);
  const msf = u.execute(cdb(0x43, 2, 0, 0, 0, 0, 0, 0, 100, 0), 100).data;
  assert.deepEqual([...msf.subarray(8, 12)], [0, 0, 2, 0], "LBA 0 = 00:02:00");
  const session = u.execute(cdb(0x43, 0, 1, 0, 0, 0, 0, 0, 100, 0), 100).data;
  assert.equal(session.length, 12);
  expectCheck(u.execute(cdb(0x43, 0, 5, 0, 0, 0, 0, 0, 100, 0), 100), SENSE_ILLEGAL_REQUEST, 0x24);
  expectCheck(u.execute(cdb(0x43, 0, 0, 0, 0, 0, 7, 0, 100, 0), 100), SENSE_ILLEGAL_REQUEST, 0x24);
  const conf = u.execute(cdb(0x46, 0, 0, 0, 0, 0, 0, 0, 64, 0), 64).data;
  assert.equal(be32(conf, 4) & 0xffff, 0x0008, "current profile CD-ROM");
  const luns = u.execute(cdb(0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0), 16).data;
  assert.deepEqual([...luns], [0, 0, 0, 8, ...new Array(12).fill(0)]);
  expectCheck(
    u.execute(cdb(0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0), 16),
    SENSE_ILLEGAL_REQUEST,
    0x24,
  );
});

Deno.test("cdrom: MODE SENSE (6)/(10) report write protect and page 0x2A", () => {
  const u = cd(10);
  const m6 = u.execute(cdb(0x1a, 0, 0x2a, 0, 255, 0), 255).data;
  assert.equal(m6[0], m6.length - 1);
  assert.equal(m6[2] & 0x80, 0x80);
  assert.equal(m6[4], 0x2a);
  const m10 = u.execute(cdb(0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 255, 0), 255).data;
  assert.equal(new DataView(m10.buffer).getUint16(0), m10.length - 2);
  assert.equal(m10[8], 0x2a);
  assert.equal(u.execute(cdb(0x1a, 0, 0, 0, 255, 0), 255).data.length, 4);
  expectCheck(u.execute(cdb(0x1a, 0, 0x08, 0, 255, 0), 255), SENSE_ILLEGAL_REQUEST, 0x24);
  expectCheck(u.execute(cdb(0x1a, 0, 0xc0, 0, 255, 0), 255), SENSE_ILLEGAL_REQUEST, 0x39);
});

Deno.test("cdrom: writes are DATA PROTECT; unknown, short and empty CDBs are ILLEGAL REQUEST", () => {
  const u = cd(10);
  expectCheck(
    u.execute(cdb(0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0),
    SENSE_DATA_PROTECT,
    ASC_WRITE_PROTECTED,
  );
  expectCheck(
    u.execute(cdb(0x4a, 0, 0, 0, 0, 0, 0, 0, 8, 0), 8),
    SENSE_ILLEGAL_REQUEST,
    ASC_INVALID_OPCODE,
  );
  expectCheck(u.execute(cdb(0x28, 0, 0), 8), SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
  expectCheck(u.execute(new Uint8Array(), 8), SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
  expectCheck(u.execute(cdb(0x60, 0, 0, 0, 0, 0), 8), SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
  for (const op of [0x1b, 0x1e]) assert.equal(u.execute(cdb(op, 0, 0, 0, 0, 0), 0).status, 0);
  const empty = new ScsiCdrom({ sizeBytes: 0, read: () => {} });
  assert.deepEqual([...empty.execute(cdb(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), 8).data], [
    0,
    0,
    0,
    0,
    0,
    0,
    8,
    0,
  ]);
  expectCheck(
    empty.execute(cdb(0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0), 2048),
    SENSE_ILLEGAL_REQUEST,
    0x21,
  );
});
