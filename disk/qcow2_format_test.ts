import assert from "node:assert/strict";
import { DiskFormatError } from "./errors.ts";
import {
  encodeQcow2Header,
  parseQcow2Header,
  QCOW2_EXT_FEATURE_TABLE,
  QCOW2_HDR_CLUSTER_BITS,
  QCOW2_HDR_CRYPT_METHOD,
  QCOW2_HDR_HEADER_LENGTH,
  QCOW2_HDR_INCOMPATIBLE_FEATURES,
  QCOW2_HDR_L1_SIZE,
  QCOW2_HDR_VERSION,
  QCOW2_HEADER_V3_BYTES,
  qcow2HeaderBytesNeeded,
} from "./qcow2_format.ts";

const CLUSTER = 65536;

function sample(extra: Partial<Parameters<typeof encodeQcow2Header>[0]> = {}): Uint8Array {
  const bytes = encodeQcow2Header({
    clusterBits: 16,
    sizeBytes: 1 << 30,
    l1Size: 2,
    l1TableOffset: 3 * CLUSTER,
    refcountTableOffset: CLUSTER,
    refcountTableClusters: 1,
    refcountOrder: 4,
    ...extra,
  });
  const cluster = new Uint8Array(CLUSTER);
  cluster.set(bytes);
  return cluster;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

Deno.test("encodeQcow2Header output parses back to the same fields", () => {
  const h = parseQcow2Header(sample({ backingFile: "base.img", backingFormat: "raw" }), "x.qcow2");
  assert.equal(h.version, 3);
  assert.equal(h.clusterBits, 16);
  assert.equal(h.sizeBytes, 1 << 30);
  assert.equal(h.l1Size, 2);
  assert.equal(h.l1TableOffset, 3 * CLUSTER);
  assert.equal(h.refcountTableOffset, CLUSTER);
  assert.equal(h.refcountTableClusters, 1);
  assert.equal(h.refcountOrder, 4);
  assert.equal(h.headerLength, QCOW2_HEADER_V3_BYTES);
  assert.equal(h.backingFile, "base.img");
  assert.equal(h.backingFormat, "raw");
  assert.equal(h.featureNames.get("0:4"), "extended L2 entries");
  assert.ok(h.extensions.some((e) => e.type === QCOW2_EXT_FEATURE_TABLE));
  assert.equal(qcow2HeaderBytesNeeded(sample().subarray(0, 112)), CLUSTER);
});

Deno.test("parseQcow2Header rejects other versions, naming the version", () => {
  const b = sample();
  view(b).setUint32(QCOW2_HDR_VERSION, 4);
  assert.throws(() => parseQcow2Header(b, "v4.qcow2"), (e: Error) => {
    assert.ok(e instanceof DiskFormatError);
    assert.match(e.message, /Unsupported qcow2 version 4 in "v4\.qcow2"/);
    return true;
  });
  view(b).setUint32(QCOW2_HDR_VERSION, 1);
  assert.throws(() => parseQcow2Header(b, "v1.qcow2"), /version 1/);
});

Deno.test("parseQcow2Header rejects a bad magic and short files", () => {
  const b = sample();
  b[3] = 0xfa;
  assert.throws(() => parseQcow2Header(b, "m.qcow2"), /magic/);
  assert.throws(() => parseQcow2Header(sample().subarray(0, 40), "s.qcow2"), /shorter/);
});

Deno.test("parseQcow2Header rejects encrypted images by method", () => {
  const b = sample();
  view(b).setUint32(QCOW2_HDR_CRYPT_METHOD, 1);
  assert.throws(() => parseQcow2Header(b, "e.qcow2"), /encrypted \(qcow2 AES encryption\)/);
  view(b).setUint32(QCOW2_HDR_CRYPT_METHOD, 2);
  assert.throws(() => parseQcow2Header(b, "e.qcow2"), /LUKS/);
});

Deno.test("parseQcow2Header names unknown incompatible bits, from the image's table when it has one", () => {
  const b = sample();
  view(b).setBigUint64(QCOW2_HDR_INCOMPATIBLE_FEATURES, 1n << 10n);
  assert.throws(() => parseQcow2Header(b, "u.qcow2"), /incompatible feature bit 10/);
  // Rename entry 0 of our feature table (the dirty bit) into an entry for bit 10.
  const h = parseQcow2Header(sample(), "u.qcow2");
  const table = h.extensions.find((e) => e.type === QCOW2_EXT_FEATURE_TABLE)!;
  b[table.offset + 1] = 10;
  b.fill(0, table.offset + 2, table.offset + 48);
  b.set(new TextEncoder().encode("frobnication"), table.offset + 2);
  assert.throws(() => parseQcow2Header(b, "u.qcow2"), /"frobnication" \(bit 10\)/);
  view(b).setBigUint64(QCOW2_HDR_INCOMPATIBLE_FEATURES, 1n << 4n);
  assert.throws(() => parseQcow2Header(b, "u.qcow2"), /"extended L2 entries" \(bit 4\)/);
  // Dirty and corrupt are left for the open to judge (read-only is fine).
  view(b).setBigUint64(QCOW2_HDR_INCOMPATIBLE_FEATURES, 3n);
  assert.equal(parseQcow2Header(b, "u.qcow2").incompatibleFeatures, 3n);
});

Deno.test("parseQcow2Header checks cluster_bits, header_length and l1_size", () => {
  for (const bits of [8, 22]) {
    const b = sample();
    view(b).setUint32(QCOW2_HDR_CLUSTER_BITS, bits);
    assert.throws(() => parseQcow2Header(b, "c.qcow2"), new RegExp(`cluster size 2\\^${bits}`));
  }
  const b = sample();
  view(b).setUint32(QCOW2_HDR_HEADER_LENGTH, 108);
  assert.throws(() => parseQcow2Header(b, "h.qcow2"), /header_length 108/);
  const c = sample();
  view(c).setUint32(QCOW2_HDR_L1_SIZE, 1); // 1 GiB needs 2 entries with 64 KiB clusters
  assert.throws(() => parseQcow2Header(c, "l.qcow2"), /l1_size 1 is too small/);
});
