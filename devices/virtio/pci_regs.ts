/**
 * The register map of virtio over PCI: offsets of the legacy I/O BAR and of
 * the modern common configuration, the vendor capability types, where the
 * modern BAR's regions sit, and the PCI identities (device IDs, classes).
 *
 * Legacy registers, BAR0 (I/O), device configuration from 0x14 (no MSI-X):
 *
 * | offset | width | register |
 * | --- | --- | --- |
 * | 0x00 | 4 | device features, bits 0-31 (R) |
 * | 0x04 | 4 | driver features (RW) |
 * | 0x08 | 4 | queue PFN: rings at PFN x 4096 (RW) |
 * | 0x0C | 2 | queue size (R) |
 * | 0x0E | 2 | queue select (RW) |
 * | 0x10 | 2 | queue notify (W) |
 * | 0x12 | 1 | device status (RW) |
 * | 0x13 | 1 | ISR status (R, read clears) |
 *
 * Modern interface, BAR4 (64-bit memory, 16 KiB), located by vendor
 * capabilities: common configuration at 0x0000, ISR at 0x1000, device
 * configuration at 0x2000, notifications at 0x3000 (queue n at 4 x n).
 *
 * @module
 */

/** PCI vendor ID of virtio devices (Red Hat / Qumranet). */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** Modern-only device IDs are this plus the device type (types without a transitional ID). */
export const VIRTIO_PCI_MODERN_BASE = 0x1040;

/** Legacy register offsets (BAR0). */
export const VIRTIO_PCI_HOST_FEATURES = 0x00;
export const VIRTIO_PCI_GUEST_FEATURES = 0x04;
export const VIRTIO_PCI_QUEUE_PFN = 0x08;
export const VIRTIO_PCI_QUEUE_NUM = 0x0c;
export const VIRTIO_PCI_QUEUE_SEL = 0x0e;
export const VIRTIO_PCI_QUEUE_NOTIFY = 0x10;
export const VIRTIO_PCI_STATUS = 0x12;
export const VIRTIO_PCI_ISR = 0x13;
/** Legacy device configuration starts here when MSI-X is off (always, here). */
export const VIRTIO_PCI_CONFIG_LEGACY = 0x14;

/** Modern common configuration offsets (virtio 1.x 4.1.4.3). */
export const VIRTIO_PCI_COMMON_DFSELECT = 0x00;
export const VIRTIO_PCI_COMMON_DF = 0x04;
export const VIRTIO_PCI_COMMON_GFSELECT = 0x08;
export const VIRTIO_PCI_COMMON_GF = 0x0c;
export const VIRTIO_PCI_COMMON_MSIX = 0x10;
export const VIRTIO_PCI_COMMON_NUMQ = 0x12;
export const VIRTIO_PCI_COMMON_STATUS = 0x14;
export const VIRTIO_PCI_COMMON_CFGGENERATION = 0x15;
export const VIRTIO_PCI_COMMON_Q_SELECT = 0x16;
export const VIRTIO_PCI_COMMON_Q_SIZE = 0x18;
export const VIRTIO_PCI_COMMON_Q_MSIX = 0x1a;
export const VIRTIO_PCI_COMMON_Q_ENABLE = 0x1c;
export const VIRTIO_PCI_COMMON_Q_NOFF = 0x1e;
export const VIRTIO_PCI_COMMON_Q_DESCLO = 0x20;
export const VIRTIO_PCI_COMMON_Q_DESCHI = 0x24;
export const VIRTIO_PCI_COMMON_Q_AVAILLO = 0x28;
export const VIRTIO_PCI_COMMON_Q_AVAILHI = 0x2c;
export const VIRTIO_PCI_COMMON_Q_USEDLO = 0x30;
export const VIRTIO_PCI_COMMON_Q_USEDHI = 0x34;
/** Bytes of the common configuration structure we implement. */
export const VIRTIO_PCI_COMMON_BYTES = 0x38;

/** Virtio PCI capability types. */
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;

/** "No MSI-X vector": what the MSI-X vector registers read (we have no MSI-X). */

/** Where the structures live inside the modern BAR. */
export const MODERN_COMMON_OFFSET = 0x0000;
export const MODERN_ISR_OFFSET = 0x1000;
export const MODERN_DEVICE_OFFSET = 0x2000;
export const MODERN_NOTIFY_OFFSET = 0x3000;
/** Size of the modern BAR. */
export const MODERN_BAR_BYTES = 0x4000;
/** Bytes between two queues' notification addresses. */
export const NOTIFY_OFF_MULTIPLIER = 4;
/** The legacy I/O BAR index. */
export const LEGACY_BAR = 0;
/** The modern memory BAR index. */
export const MODERN_BAR = 4;
/** Chains served per queue per pass before the vCPU loop gets control back. */
export const DEFAULT_REQUESTS_PER_PASS = 16;

/** Transitional PCI device IDs by virtio device type (virtio 1.x 4.1.2.1). */
export const TRANSITIONAL_DEVICE_IDS: Readonly<Record<number, number>> = {
  1: 0x1000, // net
  2: 0x1001, // block
  5: 0x1002, // balloon
  3: 0x1003, // console
  8: 0x1004, // SCSI host
  4: 0x1005, // entropy
  9: 0x1009, // 9P transport
};

/** PCI class codes by virtio device type (others: 0xFF0000, unclassified). */
export const CLASS_BY_TYPE: Record<number, number> = {
  1: 0x020000, // network controller, Ethernet
  2: 0x010000, // mass storage, SCSI (what QEMU reports for virtio-blk)
};
