import assert from "node:assert/strict";
import { GuestMemory } from "../../core/guest_memory.ts";
import { inN, outN, RecordingIrqLine } from "../fakes.ts";
import { PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID } from "../pci.ts";
import { VIRTIO_PCI_CONFIG_LEGACY, VIRTIO_PCI_ISR, VIRTIO_PCI_STATUS } from "./pci_regs.ts";
import { VirtioPciDevice } from "./pci_transport.ts";
import { Vmmci, VMMCI_NONE, VMMCI_REBOOT, VMMCI_SHUTDOWN } from "./vmmci.ts";
import { VIRTIO_ISR_CONFIG } from "./virtio.ts";

function setup() {
  const acks: number[] = [];
  const ci = new Vmmci({ clock: () => 1_700_000_123_456.5, onAcknowledge: (c) => acks.push(c) });
  const irq = new RecordingIrqLine();
  const dev = new VirtioPciDevice(ci, {
    mem: GuestMemory.anonymous([{ gpa: 0, size: 0x10000 }]),
    irq,
    irqNumber: 11,
    ids: Vmmci.PCI_IDS,
  });
  ci.bind(dev);
  return { ci, dev, irq, acks };
}

Deno.test("vmmci: OpenBSD's PCI identity and no queues", () => {
  const { dev } = setup();
  assert.equal(dev.config.u16(0), 0x0b5d);
  assert.equal(dev.config.u16(2), 0x0777);
  assert.equal(dev.config.u16(PCI_SUBSYSTEM_VENDOR_ID), 0x0b5d);
  assert.equal(dev.config.u16(PCI_SUBSYSTEM_ID), 0xffff);
  assert.equal(dev.queues.length, 0);
  assert.equal(inN(dev.legacy, 0, 4), 0b111, "TIMESYNC, ACK, SYNCRTC");
});

Deno.test("vmmci: a shutdown request raises a config interrupt; the guest's write-back acknowledges", () => {
  const { ci, dev, irq, acks } = setup();
  outN(dev.legacy, VIRTIO_PCI_STATUS, 1, 1);
  outN(dev.legacy, VIRTIO_PCI_STATUS, 1, 3);
  outN(dev.legacy, VIRTIO_PCI_STATUS, 1, 7);
  ci.requestShutdown();
  assert.equal(irq.level, true);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_ISR, 1), VIRTIO_ISR_CONFIG);
  assert.equal(irq.level, false);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY, 4), VMMCI_SHUTDOWN);
  outN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY, 4, VMMCI_REBOOT); // not what was asked
  assert.deepEqual(acks, []);
  outN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY, 4, VMMCI_SHUTDOWN);
  assert.deepEqual(acks, [VMMCI_SHUTDOWN]);
  assert.equal(ci.command, VMMCI_NONE);
  ci.requestReboot();
  assert.equal(inN(dev.modern!, 0x2000, 4), VMMCI_REBOOT);
});

Deno.test("vmmci: the time fields give the host clock in seconds and microseconds", () => {
  const { dev } = setup();
  const sec = inN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY + 4, 4) +
    inN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY + 8, 4) * 2 ** 32;
  const usec = inN(dev.legacy, VIRTIO_PCI_CONFIG_LEGACY + 12, 4);
  assert.equal(sec, 1_700_000_123);
  assert.equal(usec, 456_500);
});

Deno.test("vmmci: driverReady once the guest driver set DRIVER_OK, not before or after a reset", () => {
  const { ci, dev } = setup();
  assert.equal(ci.driverReady(), false);
  outN(dev.legacy, VIRTIO_PCI_STATUS, 1, 1);
  outN(dev.legacy, VIRTIO_PCI_STATUS, 1, 3);
  assert.equal(ci.driverReady(), false, "ACKNOWLEDGE|DRIVER is not yet a running driver");
  outN(dev.legacy, VIRTIO_PCI_STATUS, 1, 7);
  assert.equal(ci.driverReady(), true);
  outN(dev.legacy, VIRTIO_PCI_STATUS, 1, 0);
  assert.equal(ci.driverReady(), false);
  assert.equal(new Vmmci({ clock: () => 0 }).driverReady(), false, "unbound");
});
