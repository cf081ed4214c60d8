/**
 * The Solo5 application manifest (the "MFT1" note): parsing with the checks
 * the ABI asks of a tender (the manifest is untrusted input), and encoding it
 * back, with the host's answers filled in, for the guest.
 *
 * @example
 * ```ts
 * import { encodeManifest, parseManifest } from "./manifest.ts";
 * const bytes = encodeManifest({ entries: [{ name: "", type: 0x40000000 },
 *   { name: "storage", type: 1 }] });
 * parseManifest(bytes).entries[1].name; // "storage"
 * ```
 * @module
 */

import {
  MFT_DEV_BLOCK_BASIC,
  MFT_DEV_NET_BASIC,
  MFT_ENTRY,
  MFT_ENTRY_BYTES,
  MFT_HEADER_BYTES,
  MFT_MAX_ENTRIES,
  MFT_NAME_SIZE,
  MFT_RESERVED_FIRST,
  MFT_VERSION,
} from "./abi.ts";

/** A manifest problem (the message says which rule the manifest breaks). */
export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ManifestError";
  }
}

/** One manifest entry and, once attached, what the host provides. */
export interface ManifestEntry {
  name: string;
  /** MFT_DEV_BLOCK_BASIC, MFT_DEV_NET_BASIC or MFT_RESERVED_FIRST (others are kept as-is). */
  type: number;
  attached?: boolean;
  /** Block devices: capacity in bytes and sector size. */
  capacityBytes?: number;
  blockSize?: number;
  /** Network devices: MAC and MTU. */
  mac?: Uint8Array;
  mtu?: number;
}

/** A parsed manifest. */
export interface Manifest {
  entries: ManifestEntry[];
}

/** "BLOCK_BASIC" / "NET_BASIC" / ..., for messages. */
export function manifestTypeName(type: number): string {
  switch (type) {
    case MFT_DEV_BLOCK_BASIC:
      return "BLOCK_BASIC";
    case MFT_DEV_NET_BASIC:
      return "NET_BASIC";
    case MFT_RESERVED_FIRST:
      return "RESERVED_FIRST";
    default:
      return `type ${type}`;
  }
}

/** Bytes of a manifest with `n` entries. */
export function manifestBytes(n: number): number {
  return MFT_HEADER_BYTES + n * MFT_ENTRY_BYTES;
}

/**
 * Parses and validates a manifest: version 1, at most 64 entries, exactly
 * the size its entry count implies, entry 0 of type RESERVED_FIRST with an
 * empty name, every name terminated inside its field, no entry pre-attached.
 */
export function parseManifest(bytes: Uint8Array): Manifest {
  if (bytes.length < MFT_HEADER_BYTES) {
    throw new ManifestError(`manifest of ${bytes.length} bytes is shorter than its header`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = v.getUint32(0, true);
  if (version !== MFT_VERSION) {
    throw new ManifestError(`manifest version "${version}" is not ${MFT_VERSION}`);
  }
  const count = v.getUint32(4, true);
  if (count > MFT_MAX_ENTRIES) {
    throw new ManifestError(`manifest has "${count}" entries (at most ${MFT_MAX_ENTRIES})`);
  }
  if (bytes.length !== manifestBytes(count)) {
    throw new ManifestError(
      `manifest is ${bytes.length} bytes but ${count} entries need ${manifestBytes(count)}`,
    );
  }
  if (count < 1) throw new ManifestError("manifest has no entries (entry 0 is mandatory)");
  const entries: ManifestEntry[] = [];
  const names = new Set<string>();
  for (let i = 0; i < count; i++) {
    const at = MFT_HEADER_BYTES + i * MFT_ENTRY_BYTES;
    const field = bytes.subarray(at + MFT_ENTRY.NAME, at + MFT_ENTRY.NAME + MFT_NAME_SIZE);
    const nul = field.indexOf(0);
    if (nul < 0) throw new ManifestError(`manifest entry ${i} has an unterminated name`);
    const name = new TextDecoder().decode(field.subarray(0, nul));
    const type = v.getUint32(at + MFT_ENTRY.TYPE, true);
    if (bytes[at + MFT_ENTRY.ATTACHED] !== 0) {
      throw new ManifestError(`manifest entry ${i} ("${name}") is marked attached`);
    }
    if (i === 0) {
      if (type !== MFT_RESERVED_FIRST || name !== "") {
        throw new ManifestError("manifest entry 0 is not the reserved first entry");
      }
    } else if (type === MFT_DEV_BLOCK_BASIC || type === MFT_DEV_NET_BASIC) {
      const key = `${type}:${name}`;
      if (names.has(key)) {
        throw new ManifestError(`manifest declares "${name}" (${manifestTypeName(type)}) twice`);
      }
      names.add(key);
    }
    entries.push({ name, type });
  }
  return { entries };
}

/**
 * Encodes `manifest` in the guest's layout: names, types and, for attached
 * entries, the attached flag and device properties. The tender-private
 * backing field is always zero.
 */
export function encodeManifest(manifest: Manifest): Uint8Array {
  const n = manifest.entries.length;
  const out = new Uint8Array(manifestBytes(n));
  const v = new DataView(out.buffer);
  v.setUint32(0, MFT_VERSION, true);
  v.setUint32(4, n, true);
  manifest.entries.forEach((e, i) => {
    const at = MFT_HEADER_BYTES + i * MFT_ENTRY_BYTES;
    const name = new TextEncoder().encode(e.name);
    if (name.length >= MFT_NAME_SIZE) {
      throw new ManifestError(`manifest name "${e.name}" is longer than ${MFT_NAME_SIZE - 1}`);
    }
    out.set(name, at + MFT_ENTRY.NAME);
    v.setUint32(at + MFT_ENTRY.TYPE, e.type, true);
    if (e.type === MFT_DEV_BLOCK_BASIC) {
      v.setBigUint64(at + MFT_ENTRY.BLOCK_CAPACITY, BigInt(e.capacityBytes ?? 0), true);
      v.setUint16(at + MFT_ENTRY.BLOCK_SIZE, e.blockSize ?? 0, true);
    } else if (e.type === MFT_DEV_NET_BASIC) {
      if (e.mac) out.set(e.mac.subarray(0, 6), at + MFT_ENTRY.NET_MAC);
      v.setUint16(at + MFT_ENTRY.NET_MTU, e.mtu ?? 0, true);
    }
    out[at + MFT_ENTRY.ATTACHED] = e.attached ? 1 : 0;
  });
  return out;
}

/** The devices a manifest declares (entry 0 and unknown types left out). */
export function declaredDevices(
  manifest: Manifest,
): { name: string; type: number; index: number }[] {
  return manifest.entries
    .map((e, index) => ({ name: e.name, type: e.type, index }))
    .filter((e) => e.type === MFT_DEV_BLOCK_BASIC || e.type === MFT_DEV_NET_BASIC);
}

/** "storage (BLOCK_BASIC), service (NET_BASIC)" or "no devices". */
export function describeDevices(manifest: Manifest): string {
  const list = declaredDevices(manifest);
  if (list.length === 0) return "no devices";
  return list.map((d) => `"${d.name}" (${manifestTypeName(d.type)})`).join(", ");
}
