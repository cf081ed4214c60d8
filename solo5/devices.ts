/**
 * Binding a unikernel's manifest devices to host resources by name: block
 * devices to disk images, network devices to taps. Unknown names and
 * declared-but-unattached devices are refused with the manifest's list in
 * the message, before anything runs.
 *
 * @module
 */

import type { DiskConfig, InterfaceConfig } from "../config/schema.ts";
import { backingPolicyFor, type DiskImage, openDiskImage } from "../disk/image.ts";
import { openTap, TAP_MAX_FRAME_BYTES, type TapDevice } from "../net/tap.ts";
import { macForInterface } from "../devices/virtio/net.ts";
import { MFT_DEV_BLOCK_BASIC, MFT_DEV_NET_BASIC } from "./abi.ts";
import {
  describeDevices,
  type Manifest,
  type ManifestEntry,
  manifestTypeName,
} from "./manifest.ts";

/** A `[[disk]]` entry, plus the sector size `--block-sector-size` may set. */
export interface Solo5DiskConfig extends DiskConfig {
  /** Sector size the guest is told (a power of two, at least 512); default 512. */
  sectorBytes?: number;
}

/** Default sector size, as solo5-hvt's. */
export const SOLO5_DEFAULT_SECTOR_BYTES = 512;
/** MTU reported for a tap (the Linux and OpenBSD tap default). */
export const SOLO5_TAP_MTU = 1500;

/** An attached block device. */
export interface BlockDevice {
  name: string;
  image: DiskImage;
  sectorBytes: number;
  capacityBytes: number;
}

/** An attached network device; `pending` holds a frame poll took from the tap early. */
export class NetDevice {
  readonly name: string;
  readonly tap: TapDevice;
  readonly mac: Uint8Array;
  readonly mtu: number;
  #pending?: Uint8Array;
  readonly #scratch = new Uint8Array(TAP_MAX_FRAME_BYTES);

  constructor(name: string, tap: TapDevice, mac: Uint8Array, mtu = SOLO5_TAP_MTU) {
    this.name = name;
    this.tap = tap;
    this.mac = mac;
    this.mtu = mtu;
  }

  /** Whether a frame is waiting (reads one from the tap into the look-ahead slot). */
  ready(): boolean {
    if (this.#pending) return true;
    const n = this.tap.read(this.#scratch);
    if (n === undefined) return false;
    this.#pending = this.#scratch.slice(0, n);
    return true;
  }

  /** The next frame, or undefined when none is waiting. */
  take(): Uint8Array | undefined {
    if (!this.ready()) return undefined;
    const f = this.#pending;
    this.#pending = undefined;
    return f;
  }
}

/** The host side of every manifest device, by manifest index. */
export interface AttachedDevices {
  blocks: Map<number, BlockDevice>;
  nets: Map<number, NetDevice>;
  /** Closes images and taps. */
  close(): void;
}

/** Parses "aa:bb:cc:dd:ee:ff". */
function parseMac(text: string): Uint8Array {
  return new Uint8Array(text.split(":").map((h) => parseInt(h, 16)));
}

function indexOf(manifest: Manifest, name: string, type: number): number {
  return manifest.entries.findIndex((e, i) => i > 0 && e.type === type && e.name === name);
}

/**
 * Checks, before anything is opened, that every disk and interface names a
 * device of the right type in `manifest`, that no device is named twice,
 * and that every declared device gets something attached. Throws an Error
 * whose message lists what the manifest declares.
 */
export function checkBindings(
  manifest: Manifest,
  disks: readonly { name?: string }[],
  interfaces: readonly { name?: string }[],
): void {
  const declared = describeDevices(manifest);
  const seen = new Set<number>();
  const bind = (name: string | undefined, type: number, what: string) => {
    if (name === undefined) {
      throw new Error(
        `${what} has no name; a unikernel binds devices by name (it declares ${declared})`,
      );
    }
    const index = indexOf(manifest, name, type);
    if (index < 0) {
      throw new Error(
        `${what} "${name}" is not a ${manifestTypeName(type)} device of the unikernel's ` +
          `manifest (it declares ${declared})`,
      );
    }
    if (seen.has(index)) throw new Error(`${what} "${name}" is attached twice`);
    seen.add(index);
  };
  for (const d of disks) bind(d.name, MFT_DEV_BLOCK_BASIC, "Disk");
  for (const i of interfaces) bind(i.name, MFT_DEV_NET_BASIC, "Interface");
  const missing = manifest.entries.filter((e, i) =>
    i > 0 && (e.type === MFT_DEV_BLOCK_BASIC || e.type === MFT_DEV_NET_BASIC) && !seen.has(i)
  );
  if (missing.length > 0) {
    const how = (e: ManifestEntry) =>
      e.type === MFT_DEV_BLOCK_BASIC
        ? `--block:${e.name}=PATH or a [[disk]] with name = "${e.name}"`
        : `--net:${e.name}=TAP or an [[interface]] with name = "${e.name}"`;
    throw new Error(
      `The unikernel declares ${
        missing.map((e) => `"${e.name}" (${manifestTypeName(e.type)})`).join(", ")
      } but nothing is attached to ${missing.length === 1 ? "it" : "them"}; all declared ` +
        `devices must be attached (${missing.map(how).join("; ")})`,
    );
  }
}

/** Options of {@link attachDevices}: how to open things (tests pass fakes). */
export interface AttachOptions {
  vmName: string;
  /** The VM's owner: backing files of its disks open with the owner's permissions. */
  owner?: { user: string };
  openDisk?: (disk: Solo5DiskConfig) => DiskImage;
  openTap?: (name: string) => TapDevice;
}

/**
 * Attaches `disks` and `interfaces` to `manifest`'s devices by name and
 * fills in the manifest entries (attached, capacity, sector size, MAC, MTU).
 * Throws with a message naming the manifest's devices when a name is
 * missing, unknown or repeated, or a declared device is left unattached.
 */
export function attachDevices(
  manifest: Manifest,
  disks: readonly Solo5DiskConfig[],
  interfaces: readonly InterfaceConfig[],
  options: AttachOptions,
): AttachedDevices {
  checkBindings(manifest, disks, interfaces);
  const blocks = new Map<number, BlockDevice>();
  const nets = new Map<number, NetDevice>();
  const close = () => {
    for (const b of blocks.values()) b.image.close();
    for (const n of nets.values()) n.tap.close();
  };
  try {
    for (const disk of disks) {
      const index = indexOf(manifest, disk.name!, MFT_DEV_BLOCK_BASIC);
      const entry = manifest.entries[index];
      const sectorBytes = disk.sectorBytes ?? SOLO5_DEFAULT_SECTOR_BYTES;
      if (sectorBytes < 512 || sectorBytes > 0x8000 || (sectorBytes & (sectorBytes - 1)) !== 0) {
        throw new Error(
          `Sector size "${sectorBytes}" of disk "${entry.name}" is not a power of two from 512 ` +
            `to 32768`,
        );
      }
      const image = (options.openDisk ??
        ((d) =>
          openDiskImage(d.path, {
            format: d.format,
            readonly: d.readonly,
            backing: backingPolicyFor(options.owner),
          })))(disk);
      blocks.set(index, {
        name: entry.name,
        image,
        sectorBytes,
        capacityBytes: image.sizeBytes,
      });
      if (image.sizeBytes % sectorBytes !== 0 || image.sizeBytes < sectorBytes) {
        throw new Error(
          `Disk "${entry.name}" ("${disk.path}", ${image.sizeBytes} bytes) must be a whole ` +
            `number of ${sectorBytes}-byte sectors, at least one`,
        );
      }
      entry.attached = true;
      entry.capacityBytes = image.sizeBytes;
      entry.blockSize = sectorBytes;
    }
    interfaces.forEach((itf, i) => {
      const index = indexOf(manifest, itf.name!, MFT_DEV_NET_BASIC);
      const entry = manifest.entries[index];
      const tap = (options.openTap ?? ((n) => openTap(n)))(itf.tap);
      const mac = parseMac(macForInterface(options.vmName, i, itf.lladdr));
      nets.set(index, new NetDevice(entry.name, tap, mac));
      entry.attached = true;
      entry.mac = mac;
      entry.mtu = SOLO5_TAP_MTU;
    });
  } catch (e) {
    close();
    throw e;
  }
  return { blocks, nets, close };
}
