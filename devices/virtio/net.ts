/**
 * virtio-net over a tap device: queue 0 receives, queue 1 transmits.
 *
 * Every buffer starts with a virtio_net_hdr (10 bytes legacy, 12 with
 * VIRTIO_F_VERSION_1, where num_buffers is always there); we offer no
 * offloads, so it is all zeros on receive and ignored on transmit.
 *
 * Receive has back-pressure: the tap is read only while the guest has
 * posted a receive buffer, so frames wait in the kernel's tap queue (which
 * drops when full) rather than here. Nothing is lost between the two sides:
 * when the ring is empty we stop reading and wait for the driver's notify
 * (it always notifies: we never set VIRTQ_USED_F_NO_NOTIFY, and with
 * EVENT_IDX avail_event is kept at our position); while buffers are posted
 * the run loop polls us (a short deadline that backs off while idle).
 *
 * Configuration space: mac[6] (VIRTIO_NET_F_MAC), status u16
 * (VIRTIO_NET_F_STATUS; link always up).
 *
 * @example
 * ```ts
 * import { macForInterface } from "./net.ts";
 * macForInterface("web", 0); // "fe:e1:ba:d0:..:.." stable for this name and index
 * ```
 * @module
 */

import type { Clock, RateLimitedLog } from "../../core/device.ts";
import { guestLog } from "../../core/device.ts";
import type { TapDevice } from "../../net/tap.ts";
import { TAP_MAX_FRAME_BYTES } from "../../net/tap.ts";
import type { DescriptorChain, Virtqueue } from "./queue.ts";
import {
  featureBit,
  hasFeature,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_NET,
  type VirtioBackend,
  type VirtioDeviceContext,
} from "./virtio.ts";

/** Feature: the configuration holds the MAC address. */
export const VIRTIO_NET_F_MAC = 5n;
/** Feature: the configuration holds the link status. */
export const VIRTIO_NET_F_STATUS = 16n;
/** Link status bit: up. */
export const VIRTIO_NET_S_LINK_UP = 1;
/** The receive queue. */
export const VIRTIO_NET_RXQ = 0;
/** The transmit queue. */
export const VIRTIO_NET_TXQ = 1;
/** Size of both queues. */
export const VIRTIO_NET_QUEUE_SIZE = 256;
/** virtio_net_hdr without num_buffers (legacy, no MRG_RXBUF). */
export const VIRTIO_NET_HDR_LEGACY_BYTES = 10;
/** virtio_net_hdr with num_buffers (VIRTIO_F_VERSION_1). */
export const VIRTIO_NET_HDR_BYTES = 12;
/** Frames received per poll at most (then the vCPU gets control back). */
export const VIRTIO_NET_RX_PER_POLL = 32;
/** Poll interval while receive buffers are posted: first and longest (idle back-off). */
export const VIRTIO_NET_POLL_MIN_NS = 250_000;
export const VIRTIO_NET_POLL_MAX_NS = 16_000_000;

/** Parses "xx:xx:xx:xx:xx:xx". */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new RangeError(`MAC address "${text}" is not six hex pairs`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/** Formats a MAC address as lower-case "xx:xx:xx:xx:xx:xx". */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * The MAC of interface `index` of VM `vmName`: `lladdr` when given, else
 * fe:e1:ba:d0:xx:xx with xx:xx from a hash of the name and index (stable
 * across runs, locally administered, unicast).
 */
export function macForInterface(vmName: string, index: number, lladdr?: string): string {
  if (lladdr) return formatMac(parseMac(lladdr));
  let h = 0x811c9dc5; // FNV-1a
  for (const b of new TextEncoder().encode(`${vmName}/${index}`)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return formatMac(Uint8Array.of(0xfe, 0xe1, 0xba, 0xd0, (h >>> 8) & 0xff, h & 0xff));
}

/** Options of {@link VirtioNet}. */
export interface VirtioNetOptions {
  index: number;
  /** "xx:xx:xx:xx:xx:xx". */
  mac: string;
  clock: Clock;
  log?: RateLimitedLog;
}

/** A virtio network card on a tap. */
export class VirtioNet implements VirtioBackend {
  readonly name: string;
  readonly deviceType = VIRTIO_ID_NET;
  readonly queueSizes: readonly number[] = [VIRTIO_NET_QUEUE_SIZE, VIRTIO_NET_QUEUE_SIZE];
  readonly features: bigint = featureBit(VIRTIO_NET_F_MAC) | featureBit(VIRTIO_NET_F_STATUS) |
    featureBit(VIRTIO_F_INDIRECT_DESC) | featureBit(VIRTIO_F_RING_EVENT_IDX);
  readonly configBytes = 8;
  readonly tap: TapDevice;
  readonly mac: Uint8Array;
  /** Frames delivered to the guest / taken from it (for tests and stats). */
  rxFrames = 0;
  txFrames = 0;
  readonly #clock: Clock;
  readonly #log: RateLimitedLog;
  readonly #frame = new Uint8Array(TAP_MAX_FRAME_BYTES);
  #ctx?: VirtioDeviceContext;
  #headerBytes = VIRTIO_NET_HDR_LEGACY_BYTES;
  #intervalNs = VIRTIO_NET_POLL_MIN_NS;
  #nextPollNs = 0;

  constructor(tap: TapDevice, options: VirtioNetOptions) {
    this.tap = tap;
    this.name = `virtio-net${options.index}`;
    this.mac = parseMac(options.mac);
    this.#clock = options.clock;
    this.#log = options.log ?? guestLog;
  }

  readConfig(offset: number, data: Uint8Array): void {
    const config = new Uint8Array(8);
    config.set(this.mac);
    config[6] = VIRTIO_NET_S_LINK_UP;
    data.set(config.subarray(offset, offset + data.length));
  }

  activate(ctx: VirtioDeviceContext): void {
    this.#ctx = ctx;
    this.#headerBytes = hasFeature(ctx.features, VIRTIO_F_VERSION_1)
      ? VIRTIO_NET_HDR_BYTES
      : VIRTIO_NET_HDR_LEGACY_BYTES;
    this.#intervalNs = VIRTIO_NET_POLL_MIN_NS;
    this.#nextPollNs = 0;
  }

  reset(): void {
    this.#ctx = undefined;
  }

  /** TX: one frame per chain, header stripped. */
  handle(index: number, chain: DescriptorChain): number {
    if (index !== VIRTIO_NET_TXQ) return 0;
    const length = chain.readableBytes - this.#headerBytes;
    if (length <= 0 || length > TAP_MAX_FRAME_BYTES) {
      this.#log.log(`${this.name}: transmit chain of ${chain.readableBytes} bytes dropped`);
      return 0;
    }
    const frame = new Uint8Array(length);
    chain.read(this.#headerBytes, frame);
    if (this.tap.write(frame)) this.txFrames++;
    else this.#log.log(`${this.name}: tap "${this.tap.name}" is full or down; frame dropped`);
    return 0;
  }

  /** RX notify: the driver posted buffers, deliver what the tap holds. TX goes chain by chain. */
  process(index: number, queue: Virtqueue, ctx: VirtioDeviceContext): boolean {
    if (index === VIRTIO_NET_TXQ) {
      let served = 0;
      for (let chain = queue.pop(); chain; chain = queue.pop()) {
        queue.pushUsed(chain.head, this.handle(index, chain));
        if (++served === VIRTIO_NET_QUEUE_SIZE) return queue.pending() > 0;
      }
      return false;
    }
    this.#intervalNs = VIRTIO_NET_POLL_MIN_NS;
    const more = this.#receive(queue, ctx);
    this.#nextPollNs = more ? 0 : this.#clock.nowNs() + this.#intervalNs;
    return more;
  }

  /**
   * Moves frames from the tap into posted receive buffers; returns true when
   * it stopped with buffers and possibly frames left (poll again soon).
   */
  #receive(queue: Virtqueue, ctx: VirtioDeviceContext): boolean {
    let delivered = 0;
    while (delivered < VIRTIO_NET_RX_PER_POLL) {
      // Back-pressure: without a posted buffer the frames stay in the tap.
      // The chain is taken first so a broken one costs no frame.
      const chain = queue.pop();
      if (!chain) break;
      const length = this.tap.read(this.#frame);
      if (length === undefined) {
        queue.unpop();
        break;
      }
      const header = new Uint8Array(this.#headerBytes);
      if (this.#headerBytes === VIRTIO_NET_HDR_BYTES) header[10] = 1; // num_buffers
      if (chain.writableBytes < this.#headerBytes + length) {
        this.#log.log(
          `${this.name}: receive buffer of ${chain.writableBytes} bytes too small for a ` +
            `${length}-byte frame; frame dropped`,
        );
        queue.pushUsed(chain.head, 0);
      } else {
        chain.write(0, header);
        chain.write(this.#headerBytes, this.#frame.subarray(0, length));
        queue.pushUsed(chain.head, this.#headerBytes + length);
        this.rxFrames++;
      }
      delivered++;
    }
    if (delivered > 0) ctx.usedBuffers(VIRTIO_NET_RXQ);
    return delivered === VIRTIO_NET_RX_PER_POLL;
  }

  poll(nowNs: number): void {
    const ctx = this.#ctx;
    const rx = ctx?.queues[VIRTIO_NET_RXQ];
    if (!ctx || !rx?.active || nowNs < this.#nextPollNs) return;
    const before = this.rxFrames;
    const more = this.#receive(rx, ctx);
    if (more || this.rxFrames > before) {
      this.#intervalNs = VIRTIO_NET_POLL_MIN_NS;
      this.#nextPollNs = more ? nowNs : nowNs + this.#intervalNs;
    } else {
      this.#intervalNs = Math.min(this.#intervalNs * 2, VIRTIO_NET_POLL_MAX_NS);
      this.#nextPollNs = nowNs + this.#intervalNs;
    }
  }

  nextDeadlineNs(): number {
    const rx = this.#ctx?.queues[VIRTIO_NET_RXQ];
    if (!rx?.active) return Infinity;
    // Only while the guest has posted buffers: otherwise its notify wakes us.
    let posted = 0;
    try {
      posted = rx.pending();
    } catch {
      return this.#clock.nowNs(); // a broken ring: let poll() find out and fail the device
    }
    return posted > 0 ? this.#nextPollNs : Infinity;
  }

  close(): void {
    this.tap.close();
  }
}
