import assert from "node:assert/strict";
import {
  MFT_DEV_BLOCK_BASIC,
  MFT_DEV_NET_BASIC,
  MFT_ENTRY,
  MFT_ENTRY_BYTES,
  MFT_HEADER_BYTES,
  MFT_RESERVED_FIRST,
} from "./abi.ts";
import {
  describeDevices,
  encodeManifest,
  type Manifest,
  ManifestError,
  parseManifest,
} from "./manifest.ts";

const sample: Manifest = {
  entries: [
    { name: "", type: MFT_RESERVED_FIRST },
    { name: "storage", type: MFT_DEV_BLOCK_BASIC },
    { name: "service", type: MFT_DEV_NET_BASIC },
  ],
};

Deno.test("manifest: encode and parse round trip; devices listed by name and type", () => {
  const bytes = encodeManifest(sample);
  assert.equal(bytes.length, MFT_HEADER_BYTES + 3 * MFT_ENTRY_BYTES);
  const m = parseManifest(bytes);
  assert.deepEqual(m.entries.map((e) => [e.name, e.type]), [
    ["", MFT_RESERVED_FIRST],
    ["storage", MFT_DEV_BLOCK_BASIC],
    ["service", MFT_DEV_NET_BASIC],
  ]);
  assert.equal(describeDevices(m), '"storage" (BLOCK_BASIC), "service" (NET_BASIC)');
});

Deno.test("manifest: attached entries carry capacity, sector size, MAC and MTU in the guest layout", () => {
  const mac = new Uint8Array([2, 0, 0, 0, 0, 7]);
  const bytes = encodeManifest({
    entries: [
      sample.entries[0],
      { ...sample.entries[1], attached: true, capacityBytes: 1 << 20, blockSize: 4096 },
      { ...sample.entries[2], attached: true, mac, mtu: 1500 },
    ],
  });
  const v = new DataView(bytes.buffer);
  const e1 = MFT_HEADER_BYTES + MFT_ENTRY_BYTES;
  const e2 = e1 + MFT_ENTRY_BYTES;
  assert.equal(v.getBigUint64(e1 + MFT_ENTRY.BLOCK_CAPACITY, true), 1n << 20n);
  assert.equal(v.getUint16(e1 + MFT_ENTRY.BLOCK_SIZE, true), 4096);
  assert.equal(bytes[e1 + MFT_ENTRY.ATTACHED], 1);
  assert.deepEqual(bytes.subarray(e2 + MFT_ENTRY.NET_MAC, e2 + MFT_ENTRY.NET_MAC + 6), mac);
  assert.equal(v.getUint16(e2 + MFT_ENTRY.NET_MTU, true), 1500);
  assert.equal(bytes[MFT_HEADER_BYTES + MFT_ENTRY.ATTACHED], 0);
});

Deno.test("manifest: every rule a tender checks is enforced with a message", () => {
  const good = encodeManifest(sample);
  const bad = (edit: (b: Uint8Array, v: DataView) => Uint8Array | void, message: RegExp) => {
    const b = good.slice();
    const out = edit(b, new DataView(b.buffer)) ?? b;
    assert.throws(
      () => parseManifest(out),
      (e) => e instanceof ManifestError && message.test(e.message),
    );
  };
  bad((_, v) => v.setUint32(0, 2, true), /version "2" is not 1/);
  bad((_, v) => v.setUint32(4, 65, true), /"65" entries \(at most 64\)/);
  bad((_, v) => v.setUint32(4, 2, true), /need/);
  bad((b) => b.subarray(0, 4), /shorter than its header/);
  bad((_, v) => v.setUint32(MFT_HEADER_BYTES + MFT_ENTRY.TYPE, 1, true), /reserved first/);
  bad(
    (b) =>
      b.fill(0x41, MFT_HEADER_BYTES + MFT_ENTRY_BYTES, MFT_HEADER_BYTES + MFT_ENTRY_BYTES + 68),
    /unterminated name/,
  );
  bad((b) => {
    b[MFT_HEADER_BYTES + MFT_ENTRY_BYTES + MFT_ENTRY.ATTACHED] = 1;
  }, /marked attached/);
  bad((b) => {
    b.set(new TextEncoder().encode("storage\0"), MFT_HEADER_BYTES + 2 * MFT_ENTRY_BYTES);
    new DataView(b.buffer).setUint32(
      MFT_HEADER_BYTES + 2 * MFT_ENTRY_BYTES + MFT_ENTRY.TYPE,
      1,
      true,
    );
  }, /declares "storage" \(BLOCK_BASIC\) twice/);
  bad(() => encodeManifest({ entries: [] }), /no entries/);
});
