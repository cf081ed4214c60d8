/**
 * The virtio device status state machine as a table (virtio 1.x 2.1): which
 * bits a driver must have set before it may set the next one. The transport
 * (pci_transport.ts) applies it to every status write.
 *
 * @module
 */

import {
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FAILED,
  VIRTIO_STATUS_FEATURES_OK,
} from "./virtio.ts";

/**
 * The device status state machine: a bit the driver sets must find the bits
 * of `requires` already set (`modernRequires` too on the modern interface).
 * NEEDS_RESET is the device's; the driver can only clear bits by writing 0.
 */
export const STATUS_TRANSITIONS: readonly {
  bit: number;
  name: string;
  requires: number;
  modernRequires: number;
}[] = [
  { bit: VIRTIO_STATUS_ACKNOWLEDGE, name: "ACKNOWLEDGE", requires: 0, modernRequires: 0 },
  {
    bit: VIRTIO_STATUS_DRIVER,
    name: "DRIVER",
    requires: VIRTIO_STATUS_ACKNOWLEDGE,
    modernRequires: 0,
  },
  {
    bit: VIRTIO_STATUS_FEATURES_OK,
    name: "FEATURES_OK",
    requires: VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER,
    modernRequires: 0,
  },
  {
    bit: VIRTIO_STATUS_DRIVER_OK,
    name: "DRIVER_OK",
    requires: VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER,
    modernRequires: VIRTIO_STATUS_FEATURES_OK,
  },
  { bit: VIRTIO_STATUS_FAILED, name: "FAILED", requires: 0, modernRequires: 0 },
];
