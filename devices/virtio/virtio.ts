/**
 * Virtio constants shared by the transport and the devices, and the
 * contract between them: a {@link VirtioBackend} (blk, net, rng, vmmci)
 * sees its queues, its configuration bytes and a {@link VirtioDeviceContext};
 * the PCI transport does registers, feature negotiation, status and
 * interrupts.
 *
 * @module
 */

import type { GuestMemory } from "../../core/guest_memory.ts";
import type { DescriptorChain, Virtqueue } from "./queue.ts";

/** Device status: the guest noticed the device. */
export const VIRTIO_STATUS_ACKNOWLEDGE = 0x01;
/** Device status: the guest has a driver for it. */
export const VIRTIO_STATUS_DRIVER = 0x02;
/** Device status: the driver is ready; queues are live. */
export const VIRTIO_STATUS_DRIVER_OK = 0x04;
/** Device status: feature negotiation is complete. */
export const VIRTIO_STATUS_FEATURES_OK = 0x08;
/** Device status: the device hit an error and needs a reset (device-set). */
export const VIRTIO_STATUS_NEEDS_RESET = 0x40;
/** Device status: the driver gave up on the device. */
export const VIRTIO_STATUS_FAILED = 0x80;

/** ISR bit: a queue has used buffers. */
export const VIRTIO_ISR_QUEUE = 0x01;
/** ISR bit: the device configuration changed (or NEEDS_RESET was set). */
export const VIRTIO_ISR_CONFIG = 0x02;

/** Feature: the driver may use indirect descriptor tables. */
export const VIRTIO_F_INDIRECT_DESC = 28n;
/** Feature: used_event / avail_event notification suppression. */
export const VIRTIO_F_RING_EVENT_IDX = 29n;
/** Feature: virtio 1.x (offered through the modern interface only). */
export const VIRTIO_F_VERSION_1 = 32n;

/** Virtio device type: network card. */
export const VIRTIO_ID_NET = 1;
/** Virtio device type: block device. */
export const VIRTIO_ID_BLOCK = 2;
/** Virtio device type: entropy source. */
export const VIRTIO_ID_RNG = 4;
/** OpenBSD's private device type of the VMM control interface. */
export const VIRTIO_ID_VMMCI = 0xffff;

/** The bit for feature number `bit`. */
export function featureBit(bit: bigint): bigint {
  return 1n << bit;
}

/** Whether `features` has feature number `bit`. */
export function hasFeature(features: bigint, bit: bigint): boolean {
  return (features & (1n << bit)) !== 0n;
}

/** What the transport hands a device when the driver sets DRIVER_OK. */
export interface VirtioDeviceContext {
  readonly mem: GuestMemory;
  /** The device's queues (inactive ones are not `active`). */
  readonly queues: readonly Virtqueue[];
  /** The negotiated feature bits. */
  readonly features: bigint;
  /** Tells the transport that queue `index` has new used entries (it may interrupt). */
  usedBuffers(index: number): void;
  /** Raises the configuration-change interrupt. */
  configChanged(): void;
  /** The guest broke something: NEEDS_RESET, stop serving, log `reason`. */
  fail(reason: string): void;
}

/** A virtio device model behind a transport. */
export interface VirtioBackend {
  /** Short name for logs ("virtio-blk0"). */
  readonly name: string;
  /** Virtio device type ({@link VIRTIO_ID_BLOCK}, ...). */
  readonly deviceType: number;
  /** Maximum size of each queue, one entry per queue. */
  readonly queueSizes: readonly number[];
  /** Device feature bits offered (device-specific and ring features); the transport adds VERSION_1. */
  readonly features: bigint;
  /** Bytes of device-specific configuration space. */
  readonly configBytes: number;
  /** Reads device configuration at `offset` (the transport checked the range). */
  readConfig(offset: number, data: Uint8Array): void;
  /** Writes device configuration (most devices ignore it). */
  writeConfig?(offset: number, data: Uint8Array): void;
  /** Whether the driver's accepted `features` are acceptable (FEATURES_OK). */
  acceptFeatures?(features: bigint): boolean;
  /** DRIVER_OK: the queues are live. */
  activate?(ctx: VirtioDeviceContext): void;
  /** The driver reset the device: forget all state from the last activation. */
  reset?(): void;
  /**
   * Serves one chain popped from queue `index`: returns the bytes written
   * into it for the used ring. Throws {@link VirtqueueError} or
   * `GuestMemoryError` only for broken rings (the device then needs a reset).
   */
  handle?(index: number, chain: DescriptorChain): number;
  /**
   * Serves queue `index` itself instead of chain by chain (net RX); returns
   * true when work is left over for the next poll.
   */
  process?(index: number, queue: Virtqueue, ctx: VirtioDeviceContext): boolean;
  /** Time-driven work (net RX polling). */
  poll?(nowNs: number): void;
  /** When `poll` is next needed, or Infinity. */
  nextDeadlineNs?(): number;
  /** Releases host resources (disk image, tap fd). */
  close?(): void;
}
