/**
 * MSI-X for a virtio PCI function, laid out as QEMU's virtio-pci does: the
 * table at offset 0 and the PBA at 0x800 of memory BAR 1 (4 KiB), one
 * vector for configuration changes plus one per queue. The driver picks
 * which table entry each source uses through the common configuration's
 * `msix_config` and `queue_msix_vector` (virtio 1.x 4.1.4.3); a vector out
 * of the table reads back as NO_VECTOR (the driver's way to see it was
 * refused), and a source with NO_VECTOR raises nothing while MSI-X is on.
 *
 * @module
 */

import type { BusDevice } from "../../core/device.ts";
import { MsixTable } from "../apic.ts";
import { PCI_CAP_ID_MSIX, type PciConfigSpace } from "../pci.ts";

/** The BAR holding the MSI-X table and PBA. */
export const MSIX_BAR = 1;
/** Its size. */
export const MSIX_BAR_BYTES = 0x1000;
/** Table and PBA offsets in it. */
export const MSIX_TABLE_OFFSET = 0x000;
export const MSIX_PBA_OFFSET = 0x800;
/** "No vector" in msix_config / queue_msix_vector. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** The MSI-X state of one virtio PCI function. */
export class VirtioMsix {
  readonly table: MsixTable;
  /** The BAR's contents (table and PBA), for the MMIO bus. */
  readonly bar: BusDevice;
  #configVector = VIRTIO_MSI_NO_VECTOR;
  readonly #queueVectors: number[];

  /**
   * Adds the MSI-X capability to `config` for `queues` queues (+1 config
   * vector); `send` delivers a message (address, data).
   */
  constructor(
    config: PciConfigSpace,
    queues: number,
    send: (address: number, data: number) => void,
  ) {
    const size = queues + 1;
    this.table = new MsixTable(size, send);
    this.#queueVectors = new Array(queues).fill(VIRTIO_MSI_NO_VECTOR);
    const control = size - 1;
    const tableWord = MSIX_TABLE_OFFSET | MSIX_BAR;
    const pbaWord = MSIX_PBA_OFFSET | MSIX_BAR;
    const body = [
      control & 0xff,
      control >> 8,
      ...[0, 8, 16, 24].map((s) => (tableWord >>> s) & 0xff),
      ...[0, 8, 16, 24].map((s) => (pbaWord >>> s) & 0xff),
    ];
    // Only the enable and function-mask bits (15, 14 of message control) are writable.
    const at = config.addCapability(PCI_CAP_ID_MSIX, body, [0, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0]);
    config.addRegion(at + 2, 2, {
      write: () => this.table.writeControl(config.u16(at + 2)),
    });
    const table = this.table;
    this.bar = {
      name: "virtio-msix",
      read(offset, data) {
        if (offset >= MSIX_PBA_OFFSET) table.pba.read(offset - MSIX_PBA_OFFSET, data);
        else table.table.read(offset - MSIX_TABLE_OFFSET, data);
      },
      write(offset, data) {
        if (offset >= MSIX_PBA_OFFSET) table.pba.write(offset - MSIX_PBA_OFFSET, data);
        else table.table.write(offset - MSIX_TABLE_OFFSET, data);
      },
    };
  }

  /** Whether the driver turned MSI-X on (INTx is then silent). */
  get active(): boolean {
    return this.table.enabled;
  }

  #checked(vector: number): number {
    return vector < this.table.size ? vector : VIRTIO_MSI_NO_VECTOR;
  }

  get configVector(): number {
    return this.#configVector;
  }

  set configVector(vector: number) {
    this.#configVector = this.#checked(vector);
  }

  /** Queue `index`'s vector (NO_VECTOR for a missing queue). */
  queueVector(index: number): number {
    return this.#queueVectors[index] ?? VIRTIO_MSI_NO_VECTOR;
  }

  setQueueVector(index: number, vector: number): void {
    if (index < this.#queueVectors.length) this.#queueVectors[index] = this.#checked(vector);
  }

  /** Device reset: every source back to NO_VECTOR (the table is PCI state and stays). */
  resetVectors(): void {
    this.#configVector = VIRTIO_MSI_NO_VECTOR;
    this.#queueVectors.fill(VIRTIO_MSI_NO_VECTOR);
  }

  /** Signals queue `index`'s vector. */
  signalQueue(index: number): void {
    const v = this.queueVector(index);
    if (v !== VIRTIO_MSI_NO_VECTOR) this.table.signal(v);
  }

  /** Signals the configuration-change vector. */
  signalConfig(): void {
    if (this.#configVector !== VIRTIO_MSI_NO_VECTOR) this.table.signal(this.#configVector);
  }
}
