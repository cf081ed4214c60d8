/**
 * virtio-rng: fills every device-writable buffer the driver posts with
 * random bytes from `crypto.getRandomValues`. No configuration space.
 *
 * @example
 * ```ts
 * import { VirtioRng } from "./rng.ts";
 * const rng = new VirtioRng();
 * rng.queueSizes; // [64]
 * ```
 * @module
 */

import type { DescriptorChain } from "./queue.ts";
import {
  featureBit,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_ID_RNG,
  type VirtioBackend,
} from "./virtio.ts";

/** Queue size of the request queue. */
export const VIRTIO_RNG_QUEUE_SIZE = 64;
/** Most bytes served per request (getRandomValues' limit is 65536). */
export const VIRTIO_RNG_MAX_BYTES_PER_REQUEST = 65536;

/** The entropy device. */
export class VirtioRng implements VirtioBackend {
  readonly name: string;
  readonly deviceType = VIRTIO_ID_RNG;
  readonly queueSizes: readonly number[] = [VIRTIO_RNG_QUEUE_SIZE];
  readonly features: bigint = featureBit(VIRTIO_F_INDIRECT_DESC) |
    featureBit(VIRTIO_F_RING_EVENT_IDX);
  readonly configBytes = 0;
  readonly #random: (into: Uint8Array) => void;

  /** `random` fills a buffer (injectable for tests; defaults to the platform CSPRNG). */
  constructor(
    name = "virtio-rng",
    random: (into: Uint8Array) => void = (into) => crypto.getRandomValues(into),
  ) {
    this.name = name;
    this.#random = random;
  }

  readConfig(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  handle(_index: number, chain: DescriptorChain): number {
    const n = Math.min(chain.writableBytes, VIRTIO_RNG_MAX_BYTES_PER_REQUEST);
    const bytes = new Uint8Array(n);
    this.#random(bytes);
    return chain.write(0, bytes);
  }
}
