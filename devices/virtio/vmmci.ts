/**
 * vmmci: OpenBSD's VMM control interface, a virtio device without queues
 * through which the host asks the guest to shut down, reboot or re-read its
 * clock (OpenBSD's vmmci(4) driver; vmd's device model is the reference).
 *
 * PCI identity: vendor 0x0B5D (OpenBSD), device 0x0777, subsystem ID 0xFFFF
 * (OpenBSD's private virtio device type).
 *
 * Configuration space:
 *
 * | offset | field |
 * | --- | --- |
 * | 0x00 | command (u32): the host's request; the guest writes it back to acknowledge |
 * | 0x04 | seconds of the host's wall clock (u64, VMMCI_F_TIMESYNC) |
 * | 0x0C | microseconds (u64) |
 *
 * A request sets the command and raises a configuration-change interrupt;
 * when the guest acknowledges (writes the same command), the command goes
 * back to NONE and `onAcknowledge` hears about it.
 *
 * @example
 * ```ts
 * import { Vmmci, VMMCI_SHUTDOWN } from "./vmmci.ts";
 * const ci = new Vmmci({ clock: () => 0 });
 * ci.requestShutdown();
 * ci.command; // VMMCI_SHUTDOWN
 * ```
 * @module
 */

import { guestLog } from "../../core/device.ts";
import type { VirtioPciIds } from "./pci_transport.ts";
import {
  featureBit,
  VIRTIO_ID_VMMCI,
  VIRTIO_STATUS_DRIVER_OK,
  type VirtioBackend,
} from "./virtio.ts";

/** Feature: the guest may read the host's time from the configuration. */
export const VMMCI_F_TIMESYNC = 0n;
/** Feature: the guest acknowledges commands by writing them back. */
export const VMMCI_F_ACK = 1n;
/** Feature: the guest re-reads its RTC on VMMCI_SYNCRTC. */
export const VMMCI_F_SYNCRTC = 2n;

/** Command: nothing pending. */
export const VMMCI_NONE = 0;
/** Command: shut down cleanly. */
export const VMMCI_SHUTDOWN = 1;
/** Command: reboot. */
export const VMMCI_REBOOT = 2;
/** Command: synchronise the clock with the RTC. */
export const VMMCI_SYNCRTC = 3;

/** Bytes of configuration space. */
export const VMMCI_CONFIG_BYTES = 20;

/** Options of {@link Vmmci}. */
export interface VmmciOptions {
  /** The host's wall clock in milliseconds since the epoch. */
  clock: () => number;
  /** Called when the guest acknowledges a command. */
  onAcknowledge?: (command: number) => void;
}

/** The transport the device raises its configuration interrupt through. */
export interface VmmciTransport {
  configChanged(): void;
  /** The device status the driver wrote (virtio's status register). */
  readonly status: number;
}

/** OpenBSD's VMM control device. */
export class Vmmci implements VirtioBackend {
  /** PCI IDs of the device (not a Red Hat virtio ID). */
  static readonly PCI_IDS: Partial<VirtioPciIds> = {
    vendorId: 0x0b5d,
    deviceId: 0x0777,
    subsystemVendorId: 0x0b5d,
    subsystemId: VIRTIO_ID_VMMCI,
    classCode: 0x088000, // base system peripheral, other
  };
  readonly name = "vmmci";
  readonly deviceType = VIRTIO_ID_VMMCI;
  readonly queueSizes: readonly number[] = [];
  readonly features: bigint = featureBit(VMMCI_F_TIMESYNC) | featureBit(VMMCI_F_ACK) |
    featureBit(VMMCI_F_SYNCRTC);
  readonly configBytes = VMMCI_CONFIG_BYTES;
  /** The pending command. */
  command = VMMCI_NONE;
  readonly #clock: () => number;
  readonly #onAcknowledge?: (command: number) => void;
  #transport?: VmmciTransport;
  #timeMs = 0;

  constructor(options: VmmciOptions) {
    this.#clock = options.clock;
    this.#onAcknowledge = options.onAcknowledge;
  }

  /** Connects the transport (for the configuration interrupt). */
  bind(transport: VmmciTransport): void {
    this.#transport = transport;
  }

  /**
   * Whether a guest driver runs the device (DRIVER_OK): without one a request
   * would never be seen, and vmd powers such a VM off at once instead.
   */
  driverReady(): boolean {
    return ((this.#transport?.status ?? 0) & VIRTIO_STATUS_DRIVER_OK) !== 0;
  }

  /** Asks the guest to shut down. */
  requestShutdown(): void {
    this.#request(VMMCI_SHUTDOWN);
  }

  /** Asks the guest to reboot. */
  requestReboot(): void {
    this.#request(VMMCI_REBOOT);
  }

  /** Asks the guest to synchronise its clock. */
  requestClockSync(): void {
    this.#request(VMMCI_SYNCRTC);
  }

  #request(command: number): void {
    this.command = command;
    this.#transport?.configChanged();
  }

  readConfig(offset: number, data: Uint8Array): void {
    // The time is sampled when the guest starts reading it, so seconds and
    // microseconds belong together.
    if (offset === 4) this.#timeMs = this.#clock();
    const bytes = new Uint8Array(VMMCI_CONFIG_BYTES);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, this.command, true);
    const sec = Math.floor(this.#timeMs / 1000);
    view.setBigUint64(4, BigInt(sec), true);
    view.setBigUint64(12, BigInt(Math.round((this.#timeMs - sec * 1000) * 1000)), true);
    data.set(bytes.subarray(offset, offset + data.length));
  }

  writeConfig(offset: number, data: Uint8Array): void {
    if (offset !== 0 || data.length !== 4) {
      guestLog.log(`vmmci: config write of ${data.length} bytes at ${offset} ignored`);
      return;
    }
    const value = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);
    if (value !== this.command || value === VMMCI_NONE) {
      guestLog.log(`vmmci: acknowledgement ${value} does not match command ${this.command}`);
      return;
    }
    this.command = VMMCI_NONE;
    this.#onAcknowledge?.(value);
  }

  reset(): void {
    // A pending request survives a driver reset: the guest still has to act on it.
  }
}
