/**
 * Puts the machine's virtio devices on PCI: an entropy source, one block
 * device per `[[disk]]`, one network card per `[[interface]]` and OpenBSD's
 * VMM control device, in vmd's order.
 *
 * We have no firmware, so the BARs are pre-assigned: legacy I/O BARs at
 * 0xC000 + 0x100 x n, modern memory BARs at PCI_MMIO_BASE + 16 KiB x n;
 * interrupts are INTA routed round-robin to ISA IRQs 5, 9, 10, 11, set
 * level-triggered in the ELCR.
 *
 * @module
 */

import type { VmConfig } from "../../config/schema.ts";
import type { Bus } from "../../core/bus.ts";
import type { GuestMemory } from "../../core/guest_memory.ts";
import { PCI_MMIO_BASE } from "../../core/layout.ts";
import type { Clock, IrqLine, TimedDevice } from "../../core/device.ts";
import type { PciHost } from "../pci.ts";
import type { Pic8259Pair } from "../pic8259.ts";
import { backingPolicyFor, openDiskImage } from "../../disk/image.ts";
import { VirtioBlk } from "./blk.ts";
import { MODERN_BAR_BYTES } from "./pci_regs.ts";
import { VirtioPciDevice } from "./pci_transport.ts";
import { MSIX_BAR_BYTES } from "./pci_msix.ts";
import { VirtioRng } from "./rng.ts";
import type { VirtioBackend } from "./virtio.ts";
import { Vmmci } from "./vmmci.ts";
import { VirtioNet } from "./net.ts";
import type { VirtioScsi } from "./scsi.ts";
import { openTap } from "../../net/tap.ts";
import { macForInterface } from "./net.ts";

export { VIRTIO_IO_BASE, VIRTIO_IO_STRIDE } from "../../core/ports.ts";
import { VIRTIO_IO_BASE, VIRTIO_IO_STRIDE } from "../../core/ports.ts";
/** The ISA IRQs PCI interrupts are routed to, round-robin. */
export const VIRTIO_IRQS: readonly number[] = [5, 9, 10, 11];

/** What of the machine the virtio devices need. */
export interface VirtioHostMachine {
  readonly config: VmConfig;
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly pci: PciHost;
  readonly vm: { readonly memory: GuestMemory; setIrqLevelTriggered?(irq: number): void };
  readonly pic?: Pic8259Pair;
  readonly timed: TimedDevice[];
  readonly clock: Clock;
  /** Set to make the run loop poll the timed devices before the next guest entry. */
  timersDirty: boolean;
  irq(irq: number): IrqLine;
  /** Delivers an MSI; given, the devices offer MSI-X. */
  msi?: (address: number, data: number) => void;
}

/** Where the devices' MSI-X BARs (4 KiB each) are pre-assigned: 16 MiB into the PCI window. */
export const VIRTIO_MSIX_BASE = PCI_MMIO_BASE + 0x1000000;

/** The attached devices. */
export class VirtioDevices {
  /** Every virtio PCI function, in slot order. */
  readonly all: VirtioPciDevice[] = [];
  readonly blks: VirtioBlk[] = [];
  readonly nets: VirtioNet[] = [];
  /** The CD-ROM's SCSI controller, with `[cdrom]`. */
  scsi?: VirtioScsi;
  rng?: VirtioRng;
  vmmci?: Vmmci;

  /** Closes disk images and tap devices (flushing disks). Errors are collected, then thrown. */
  close(): void {
    const errors: unknown[] = [];
    for (const d of this.all) {
      try {
        d.close();
      } catch (e) {
        errors.push(e);
      }
    }
    this.all.length = 0;
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, "Closing virtio devices failed");
  }
}

/** Options of {@link attachVirtioDevices}. */
export interface AttachOptions {
  /** Attach the entropy device (default true). */
  rng?: boolean;
  /** Attach the VMM control device (default true). */
  vmmci?: boolean;
  /** Leave BARs unassigned for the firmware to place (default false: pre-assigned). */
  firmwareAssignsBars?: boolean;
  /**
   * The INTA# line of the device in PCI `slot` (a BIOS machine routes it
   * through the PIIX3); default: ISA IRQs 5, 9, 10, 11 round-robin.
   */
  pciIrq?: (slot: number) => IrqLine;
  /** devices/virtio/scsi.ts, loaded on demand: needed for a `[cdrom]`. */
  scsi?: typeof import("./scsi.ts");
}

/**
 * Creates and wires every virtio device `machine.config` asks for. Throws
 * (after closing what it opened) when a disk or tap cannot be opened.
 */
export function attachVirtioDevices(
  machine: VirtioHostMachine,
  options: AttachOptions = {},
): VirtioDevices {
  const devices = new VirtioDevices();
  const mem = machine.vm.memory;
  const add = (
    backend: VirtioBackend,
    ids?: ConstructorParameters<typeof VirtioPciDevice>[1]["ids"],
  ) => {
    const n = devices.all.length;
    const slot = machine.pci.freeSlot();
    if (slot === undefined) {
      backend.close?.();
      throw new Error(`No free PCI slot for "${backend.name}"`);
    }
    const irqNumber = VIRTIO_IRQS[n % VIRTIO_IRQS.length];
    // With a router the firmware sets the ELCR and the interrupt line register itself.
    if (!options.pciIrq) setLevelTriggered(machine, irqNumber);
    const dev = new VirtioPciDevice(backend, {
      mem,
      irq: options.pciIrq?.(slot) ?? machine.irq(irqNumber),
      irqNumber,
      ids,
      onDeadlineChange: () => {
        machine.timersDirty = true;
      },
      msi: machine.msi,
    });
    dev.attach(
      machine.pio,
      machine.mmio,
      options.firmwareAssignsBars ? undefined : VIRTIO_IO_BASE + VIRTIO_IO_STRIDE * n,
      PCI_MMIO_BASE + MODERN_BAR_BYTES * n,
      VIRTIO_MSIX_BASE + MSIX_BAR_BYTES * n,
    );
    machine.pci.addDevice(slot, dev);
    machine.timed.push(dev);
    devices.all.push(dev);
    return dev;
  };
  try {
    if (options.rng ?? true) {
      devices.rng = new VirtioRng();
      add(devices.rng);
    }
    machine.config.disks.forEach((disk, i) => {
      let image;
      try {
        image = openDiskImage(disk.path, {
          format: disk.format,
          readonly: disk.readonly,
          // Backing file names come from inside the image: open them as the owner could.
          backing: backingPolicyFor(machine.config.vm.owner),
        });
      } catch (e) {
        throw new Error(
          `Cannot attach disk ${i} "${disk.path}": ${e instanceof Error ? e.message : e}`,
          { cause: e },
        );
      }
      const blk = new VirtioBlk(image, { index: i });
      devices.blks.push(blk);
      add(blk);
    });
    const cdrom = machine.config.cdrom;
    if (cdrom) {
      if (!options.scsi) throw new Error("A VM with a [cdrom] needs options.scsi");
      devices.scsi = new options.scsi.VirtioScsi(openCdrom(cdrom.path));
      add(devices.scsi);
    }
    machine.config.interfaces.forEach((itf, i) => {
      let tap;
      try {
        tap = openTap(itf.tap);
      } catch (e) {
        throw new Error(
          `Cannot attach interface ${i} (tap "${itf.tap}"): ${e instanceof Error ? e.message : e}`,
          { cause: e },
        );
      }
      const net = new VirtioNet(tap, {
        index: i,
        mac: macForInterface(machine.config.vm.name, i, itf.lladdr),
        clock: machine.clock,
      });
      devices.nets.push(net);
      add(net);
    });
    if (options.vmmci ?? true) {
      devices.vmmci = new Vmmci({ clock: () => Date.now() });
      const dev = add(devices.vmmci, Vmmci.PCI_IDS);
      devices.vmmci.bind(dev);
    }
  } catch (e) {
    try {
      devices.close();
    } catch {
      // the first error is the one to report
    }
    throw e;
  }
  return devices;
}

/** Where an ISO 9660 image has its first volume descriptor's "CD001". */
const ISO9660_MAGIC_OFFSET = 0x8001;

/** Opens a CD-ROM image read-only; refuses files that are not ISO 9660. */
export function openCdrom(path: string): ReturnType<typeof openDiskImage> {
  let image;
  try {
    image = openDiskImage(path, { format: "raw", readonly: true });
  } catch (e) {
    throw new Error(`Cannot attach CD-ROM "${path}": ${e instanceof Error ? e.message : e}`, {
      cause: e,
    });
  }
  const magic = new Uint8Array(5);
  if (image.sizeBytes >= ISO9660_MAGIC_OFFSET + 5) image.read(ISO9660_MAGIC_OFFSET, magic);
  if (new TextDecoder().decode(magic) !== "CD001") {
    image.close();
    throw new Error(
      `Cannot attach CD-ROM "${path}": it is not an ISO 9660 image (no "CD001" at byte 32769)`,
    );
  }
  return image;
}

/** Programs the ELCR so `irq` is level-triggered: our PIC's, or the in-kernel one's. */
function setLevelTriggered(machine: VirtioHostMachine, irq: number): void {
  const elcr = machine.pic?.elcr;
  if (!elcr) {
    machine.vm.setIrqLevelTriggered?.(irq);
    return;
  }
  const data = new Uint8Array(1);
  elcr.read(irq >> 3, data);
  data[0] |= 1 << (irq & 7);
  elcr.write(irq >> 3, data);
}
