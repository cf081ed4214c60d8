import assert from "node:assert/strict";
import { GuestMemory } from "../../core/guest_memory.ts";
import { Bus } from "../../core/bus.ts";
import { inN, outN, RecordingIrqLine } from "../fakes.ts";
import { RateLimitedLog } from "../../core/device.ts";
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAP_ID_VNDR,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
  PCI_SUBSYSTEM_ID,
} from "../pci.ts";
import {
  MODERN_BAR_BYTES,
  MODERN_DEVICE_OFFSET,
  MODERN_ISR_OFFSET,
  MODERN_NOTIFY_OFFSET,
  VIRTIO_PCI_COMMON_DF,
  VIRTIO_PCI_COMMON_DFSELECT,
  VIRTIO_PCI_COMMON_GF,
  VIRTIO_PCI_COMMON_GFSELECT,
  VIRTIO_PCI_COMMON_NUMQ,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_ENABLE,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  VIRTIO_PCI_COMMON_STATUS,
  VIRTIO_PCI_GUEST_FEATURES,
  VIRTIO_PCI_HOST_FEATURES,
  VIRTIO_PCI_ISR,
  VIRTIO_PCI_QUEUE_NOTIFY,
  VIRTIO_PCI_QUEUE_NUM,
  VIRTIO_PCI_QUEUE_PFN,
  VIRTIO_PCI_QUEUE_SEL,
  VIRTIO_PCI_STATUS,
} from "./pci_regs.ts";
import { STATUS_TRANSITIONS } from "./pci_status.ts";
import { VirtioPciDevice } from "./pci_transport.ts";
import { VirtioRng } from "./rng.ts";
import { DriverRing } from "./testing.ts";
import {
  VIRTIO_ISR_CONFIG,
  VIRTIO_ISR_QUEUE,
  VIRTIO_STATUS_ACKNOWLEDGE as ACK,
  VIRTIO_STATUS_DRIVER as DRIVER,
  VIRTIO_STATUS_DRIVER_OK as DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK as FEATURES_OK,
  VIRTIO_STATUS_NEEDS_RESET as NEEDS_RESET,
} from "./virtio.ts";

const RAM = 0x100000;
const RING_PFN = 0x10; // legacy rings at 0x10000
const quiet = () => new RateLimitedLog(1000, 1000, () => {});

function makeDevice(seed = 0) {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: RAM }]);
  const irq = new RecordingIrqLine();
  let n = seed;
  const rng = new VirtioRng("rng-test", (into) => into.forEach((_, i) => into[i] = n++ & 0xff));
  let deadlineChanges = 0;
  const dev = new VirtioPciDevice(rng, {
    mem,
    irq,
    irqNumber: 10,
    log: quiet(),
    onDeadlineChange: () => deadlineChanges++,
  });
  const pio = new Bus("pio");
  const mmio = new Bus("mmio");
  dev.attach(pio, mmio, 0xc000, 0xc0000000);
  return { mem, irq, dev, pio, mmio, deadlineChanges: () => deadlineChanges };
}

/** Brings the legacy interface to DRIVER_OK with queue 0 at RING_PFN. */
function legacyUp(dev: VirtioPciDevice, features = 0) {
  const l = dev.legacy;
  outN(l, VIRTIO_PCI_STATUS, 1, 0);
  outN(l, VIRTIO_PCI_STATUS, 1, ACK);
  outN(l, VIRTIO_PCI_STATUS, 1, ACK | DRIVER);
  outN(l, VIRTIO_PCI_GUEST_FEATURES, 4, features);
  outN(l, VIRTIO_PCI_QUEUE_SEL, 2, 0);
  outN(l, VIRTIO_PCI_QUEUE_PFN, 4, RING_PFN);
  outN(l, VIRTIO_PCI_STATUS, 1, ACK | DRIVER | DRIVER_OK);
}

function legacyRing(mem: GuestMemory, size = 64): DriverRing {
  const desc = RING_PFN * 4096;
  const avail = desc + 16 * size;
  const used = Math.ceil((avail + 6 + 2 * size) / 4096) * 4096;
  return new DriverRing(mem, { size, descGpa: desc, availGpa: avail, usedGpa: used });
}

Deno.test("transport: PCI identity, INTA on the chosen IRQ, BARs pre-assigned and on the buses", () => {
  const { dev, pio, mmio } = makeDevice();
  const c = dev.config;
  assert.equal(c.u16(0), 0x1af4);
  assert.equal(c.u16(2), 0x1005, "transitional rng");
  assert.equal(c.u16(PCI_SUBSYSTEM_ID), 4);
  assert.equal(c.u8(PCI_INTERRUPT_PIN), 1);
  assert.equal(c.u8(PCI_INTERRUPT_LINE), 10);
  assert.equal(c.u32(PCI_BASE_ADDRESS_0) & ~3, 0xc000);
  assert.equal((c.u32(PCI_BASE_ADDRESS_0 + 16) & ~0xf) >>> 0, 0xc0000000);
  assert.equal(pio.find(0xc000, 1)?.device, dev.legacy);
  assert.equal(mmio.find(0xc0000000, 4)?.device, dev.modern);
  // Four vendor capabilities: common, ISR, device, notify (with multiplier 4).
  const caps = c.findCapabilities(PCI_CAP_ID_VNDR);
  assert.deepEqual(caps.map((o) => c.u8(o + 3)), [1, 3, 4, 2]);
  const notify = caps[3];
  assert.equal(c.u8(notify + 2), 20);
  assert.equal(c.u8(notify + 4), 4, "BAR4");
  assert.equal(c.u32(notify + 8), MODERN_NOTIFY_OFFSET);
  assert.equal(c.u32(notify + 16), 4, "notify_off_multiplier");
});

Deno.test("transport: the guest sizes and moves the BARs and the buses follow", () => {
  const { dev, pio, mmio } = makeDevice();
  const c = dev.config;
  c.write(PCI_BASE_ADDRESS_0, Uint8Array.of(0xff, 0xff, 0xff, 0xff));
  assert.equal(c.u32(PCI_BASE_ADDRESS_0), (~(dev.legacyBarBytes - 1) | 1) >>> 0, "I/O size mask");
  assert.equal(pio.ranges.length, 0, "a sizing pattern does not decode");
  c.write(PCI_BASE_ADDRESS_0, Uint8Array.of(0x00, 0xd0, 0, 0));
  assert.equal(pio.find(0xd000, 1)?.device, dev.legacy);
  assert.equal(pio.find(0xc000, 1), undefined);
  const bar4 = PCI_BASE_ADDRESS_0 + 16;
  c.write(bar4, Uint8Array.of(0xff, 0xff, 0xff, 0xff));
  assert.equal(c.u32(bar4) & ~0xf, (~(MODERN_BAR_BYTES - 1)) >>> 0 & ~0xf);
  c.write(bar4, Uint8Array.of(0x00, 0x40, 0x00, 0xd0));
  assert.equal(mmio.find(0xd0004000, 4)?.device, dev.modern);
  c.write(PCI_COMMAND, Uint8Array.of(0, 0)); // decode off: both leave the buses
  assert.equal(pio.ranges.length + mmio.ranges.length, 0);
  c.write(PCI_COMMAND, Uint8Array.of(PCI_COMMAND_IO | PCI_COMMAND_MEMORY, 0));
  assert.equal(pio.ranges.length + mmio.ranges.length, 2);
});

Deno.test("transport: legacy features hide VERSION_1; guest features are masked to the offer", () => {
  const { dev } = makeDevice();
  const offered = inN(dev.legacy, VIRTIO_PCI_HOST_FEATURES, 4);
  assert.equal(offered, (1 << 28 | 1 << 29) >>> 0);
  outN(dev.legacy, VIRTIO_PCI_GUEST_FEATURES, 4, 0xffffffff);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_GUEST_FEATURES, 4), offered);
  assert.equal(dev.activeInterface, "legacy");
});

Deno.test("transport: the status table orders the bits; FEATURES_OK is refused without VERSION_1 on modern", () => {
  assert.deepEqual(STATUS_TRANSITIONS.map((t) => t.name), [
    "ACKNOWLEDGE",
    "DRIVER",
    "FEATURES_OK",
    "DRIVER_OK",
    "FAILED",
  ]);
  const { dev } = makeDevice();
  const m = dev.modern!;
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, 0);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, DRIVER); // DRIVER before ACKNOWLEDGE
  assert.equal(inN(m, VIRTIO_PCI_COMMON_STATUS, 1), 0);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK | DRIVER);
  outN(m, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
  assert.equal(inN(m, VIRTIO_PCI_COMMON_DF, 4), 1, "VERSION_1 offered on the modern interface");
  outN(m, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
  outN(m, VIRTIO_PCI_COMMON_GF, 4, 1 << 28);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK | DRIVER | FEATURES_OK);
  assert.equal(inN(m, VIRTIO_PCI_COMMON_STATUS, 1), ACK | DRIVER, "refused: no VERSION_1");
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK | DRIVER | DRIVER_OK);
  assert.equal(inN(m, VIRTIO_PCI_COMMON_STATUS, 1), ACK | DRIVER, "DRIVER_OK needs FEATURES_OK");
  outN(m, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
  outN(m, VIRTIO_PCI_COMMON_GF, 4, 0xffffffff);
  assert.equal(inN(m, VIRTIO_PCI_COMMON_GF, 4), 1, "masked to the offer");
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK | DRIVER | FEATURES_OK);
  assert.equal(inN(m, VIRTIO_PCI_COMMON_STATUS, 1), ACK | DRIVER | FEATURES_OK);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK); // clearing bits is not allowed
  assert.equal(inN(m, VIRTIO_PCI_COMMON_STATUS, 1), ACK | DRIVER | FEATURES_OK);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, 0);
  assert.equal(inN(m, VIRTIO_PCI_COMMON_STATUS, 1), 0);
  assert.equal(dev.driverFeatures, 0n, "reset forgets the features");
});

Deno.test("transport: legacy request, ISR read clears and lowers the level-triggered line", () => {
  const { dev, mem, irq } = makeDevice(5);
  legacyUp(dev);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_QUEUE_NUM, 2), 64);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_QUEUE_PFN, 4), RING_PFN);
  const ring = legacyRing(mem);
  ring.post([{ gpa: 0x40000, length: 8, write: true }]);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(ring.usedIdx(), 1);
  assert.deepEqual(ring.used(0), { id: 0, length: 8 });
  assert.deepEqual([...mem.read(0x40000, 8)], [5, 6, 7, 8, 9, 10, 11, 12]);
  assert.equal(irq.level, true);
  assert.equal(dev.config.u16(PCI_STATUS) & PCI_STATUS_INTERRUPT, PCI_STATUS_INTERRUPT);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_ISR, 1), VIRTIO_ISR_QUEUE);
  assert.equal(irq.level, false);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_ISR, 1), 0);
  assert.equal(dev.config.u16(PCI_STATUS) & PCI_STATUS_INTERRUPT, 0);
});

Deno.test("transport: INTx disable in the command register keeps the line low", () => {
  const { dev, mem, irq } = makeDevice();
  dev.config.write(
    PCI_COMMAND,
    Uint8Array.of(PCI_COMMAND_IO | PCI_COMMAND_MEMORY, PCI_COMMAND_INTX_DISABLE >> 8),
  );
  legacyUp(dev);
  legacyRing(mem).post([{ gpa: 0x40000, length: 8, write: true }]);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(irq.risingEdges, 0);
  assert.equal(dev.isr, VIRTIO_ISR_QUEUE);
});

Deno.test("transport: modern setup through the MMIO BAR serves a request", () => {
  const { dev, mem } = makeDevice(1);
  const m = dev.modern!;
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK | DRIVER);
  outN(m, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
  outN(m, VIRTIO_PCI_COMMON_GF, 4, 1);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK | DRIVER | FEATURES_OK);
  assert.equal(inN(m, VIRTIO_PCI_COMMON_NUMQ, 2), 1);
  outN(m, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
  outN(m, VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
  outN(m, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x20000);
  outN(m, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, 0x21000);
  outN(m, VIRTIO_PCI_COMMON_Q_USEDLO, 4, 0x22000);
  outN(m, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
  outN(m, VIRTIO_PCI_COMMON_STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
  const ring = new DriverRing(mem, {
    size: 16,
    descGpa: 0x20000,
    availGpa: 0x21000,
    usedGpa: 0x22000,
  });
  ring.post([{ gpa: 0x40000, length: 3, write: true }]);
  outN(m, MODERN_NOTIFY_OFFSET, 2, 0);
  assert.equal(ring.usedIdx(), 1);
  assert.deepEqual([...mem.read(0x40000, 3)], [1, 2, 3]);
  assert.equal(inN(m, MODERN_ISR_OFFSET, 1), VIRTIO_ISR_QUEUE);
  assert.equal(inN(m, MODERN_DEVICE_OFFSET, 4), 0, "rng has no config: reads zero");
});

Deno.test("transport: queue configuration is latched at DRIVER_OK (later writes ignored)", () => {
  const { dev, mem } = makeDevice();
  legacyUp(dev);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_PFN, 4, 0x50); // would move the rings
  assert.equal(inN(dev.legacy, VIRTIO_PCI_QUEUE_PFN, 4), RING_PFN);
  const m = dev.modern!;
  outN(m, VIRTIO_PCI_COMMON_Q_SIZE, 2, 2);
  outN(m, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x90000);
  assert.equal(dev.queues[0].size, 64);
  assert.equal(dev.queues[0].descGpa, RING_PFN * 4096);
  legacyRing(mem).post([{ gpa: 0x40000, length: 8, write: true }]);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(legacyRing(mem).usedIdx(), 1, "still served from the original rings");
});

Deno.test("transport: a broken ring sets NEEDS_RESET with a config interrupt; reset serves again", () => {
  const { dev, mem, irq } = makeDevice();
  legacyUp(dev);
  const ring = legacyRing(mem);
  ring.setDesc(0, 0x40000, 8, 1, /* NEXT */ 0); // loop
  ring.publish(0);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_STATUS, 1) & NEEDS_RESET, NEEDS_RESET);
  assert.equal(irq.level, true);
  assert.equal(inN(dev.legacy, VIRTIO_PCI_ISR, 1), VIRTIO_ISR_CONFIG);
  // Further notifies are ignored while broken.
  ring.post([{ gpa: 0x40000, length: 8, write: true }]);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(ring.usedIdx(), 0);
  mem.fill(RING_PFN * 4096, 3 * 4096); // the driver's fresh rings
  legacyUp(dev); // writes 0 first: reset
  assert.equal(inN(dev.legacy, VIRTIO_PCI_STATUS, 1), ACK | DRIVER | DRIVER_OK);
  const fresh = legacyRing(mem);
  fresh.post([{ gpa: 0x40000, length: 8, write: true }]);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(fresh.usedIdx(), 1);
});

Deno.test("transport: rings outside RAM at DRIVER_OK and notify on a missing queue", () => {
  const { dev } = makeDevice();
  const l = dev.legacy;
  outN(l, VIRTIO_PCI_STATUS, 1, ACK);
  outN(l, VIRTIO_PCI_STATUS, 1, ACK | DRIVER);
  outN(l, VIRTIO_PCI_QUEUE_PFN, 4, RAM / 4096); // rings start at the end of RAM
  outN(l, VIRTIO_PCI_STATUS, 1, ACK | DRIVER | DRIVER_OK);
  assert.equal(inN(l, VIRTIO_PCI_STATUS, 1) & NEEDS_RESET, NEEDS_RESET);
  const ok = makeDevice();
  legacyUp(ok.dev);
  outN(ok.dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 7);
  outN(ok.dev.modern!, MODERN_NOTIFY_OFFSET + 4 * 9, 2, 9);
  assert.equal(inN(ok.dev.legacy, VIRTIO_PCI_STATUS, 1), ACK | DRIVER | DRIVER_OK);
  // Queue select beyond the queues reads size 0.
  outN(ok.dev.legacy, VIRTIO_PCI_QUEUE_SEL, 2, 3);
  assert.equal(inN(ok.dev.legacy, VIRTIO_PCI_QUEUE_NUM, 2), 0);
});

Deno.test("transport: at most N chains per notify, the rest from poll(); the deadline says so", () => {
  const mem = GuestMemory.anonymous([{ gpa: 0, size: RAM }]);
  const dev = new VirtioPciDevice(new VirtioRng("r", (b) => b.fill(1)), {
    mem,
    irq: new RecordingIrqLine(),
    irqNumber: 5,
    requestsPerPass: 4,
    log: quiet(),
  });
  legacyUp(dev);
  const ring = legacyRing(mem);
  for (let i = 0; i < 10; i++) ring.post([{ gpa: 0x40000 + 16 * i, length: 16, write: true }]);
  assert.equal(dev.nextDeadlineNs(), Infinity);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(ring.usedIdx(), 4);
  assert.equal(dev.nextDeadlineNs(), 0, "work left: poll at once");
  dev.poll(0);
  assert.equal(ring.usedIdx(), 8);
  dev.poll(0);
  assert.equal(ring.usedIdx(), 10);
  assert.equal(dev.nextDeadlineNs(), Infinity);
});

Deno.test("transport: notify and DRIVER_OK tell the machine the deadline may have moved", () => {
  const { dev, deadlineChanges } = makeDevice();
  legacyUp(dev);
  const afterUp = deadlineChanges();
  assert.ok(afterUp >= 1);
  outN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
  assert.equal(deadlineChanges(), afterUp + 1);
});

Deno.test("transport: odd widths and reads of write-only registers never throw", () => {
  const { dev } = makeDevice();
  for (const target of [dev.legacy, dev.modern!]) {
    for (let offset = 0; offset < 0x40; offset++) {
      for (const width of [1, 2, 4, 8]) {
        const data = new Uint8Array(width).fill(0xaa);
        target.read(offset, data);
        target.write(offset, data);
      }
    }
  }
  assert.equal(inN(dev.legacy, VIRTIO_PCI_QUEUE_NOTIFY, 2), 0xffff, "notify is write-only");
});
