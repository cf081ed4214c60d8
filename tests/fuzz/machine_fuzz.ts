/**
 * Fuzz targets that play a hostile guest against the real machine on the
 * null back-end (no hypervisor): every device reached through the port and
 * MMIO buses with random accesses of every width, PCI configuration writes,
 * random machine resets and timer polls ("devices"), and a driver that sets
 * up virtqueues with random ring and descriptor contents in guest memory
 * and notifies them ("virtqueues").
 *
 * Invariants checked after every step:
 * - no exception escapes a device (the run loop would end the VM);
 * - nothing outside guest RAM was written (the guarded memory's canaries);
 * - every virtio function's INTx line and PCI status bit follow its ISR
 *   (line high exactly when ISR != 0 and INTx is enabled);
 * - the JavaScript heap stays within a bound.
 *
 * @module
 */

import type { VmConfig } from "../../config/schema.ts";
import type { Machine } from "../../machine/machine.ts";
import { PCI_STATUS, PCI_STATUS_INTERRUPT } from "../../devices/pci.ts";
import {
  VIRTIO_PCI_GUEST_FEATURES,
  VIRTIO_PCI_HOST_FEATURES,
  VIRTIO_PCI_QUEUE_NOTIFY,
  VIRTIO_PCI_QUEUE_NUM,
  VIRTIO_PCI_QUEUE_PFN,
  VIRTIO_PCI_QUEUE_SEL,
  VIRTIO_PCI_STATUS,
} from "../../devices/virtio/pci_regs.ts";
import type { VirtioPciDevice } from "../../devices/virtio/pci_transport.ts";
import {
  type GuardedMemory,
  type NullAccel,
  nullConfig,
  nullMachine,
} from "../harness/null_accel.ts";
import { Rng } from "./rng.ts";
import { describeError, type FuzzReport, type FuzzTarget, Recorder } from "./target.ts";

/** Heap growth that counts as unbounded (the machine itself needs far less). */
const HEAP_BOUND_BYTES = 256 * 2 ** 20;
const RAM_BYTES = 32 * 2 ** 20;
const DISK_BYTES = 1 * 2 ** 20;

/** A machine under fuzzing, rebuilt on every reset. */
class Subject {
  machine!: Machine;
  accel!: NullAccel;
  memory!: GuardedMemory;
  /** The IRQ each virtio function was wired to (the guest may rewrite the config register). */
  irqs = new Map<VirtioPciDevice, number>();
  nowNs = 0;
  readonly config: VmConfig;

  constructor(config: VmConfig) {
    this.config = config;
    this.build();
  }

  build(): void {
    const built = nullMachine(this.config, { clock: { nowNs: () => this.nowNs } });
    this.machine = built.machine;
    this.accel = built.accel;
    this.memory = built.memory;
    this.irqs = new Map(this.machine.virtio.all.map((d) => [d, d.config.interruptLine]));
  }

  reset(): void {
    this.close();
    this.build();
  }

  close(): void {
    try {
      this.machine.close();
    } catch {
      // a disk that cannot flush: not what is fuzzed here
    }
  }

  /** The invariants; returns what is broken, if anything. */
  check(): string | undefined {
    const guard = this.memory.brokenGuard();
    if (guard) return `write outside guest RAM: ${guard}`;
    for (const [dev, irq] of this.irqs) {
      const isr = dev.isr;
      const status = (dev.config.u16(PCI_STATUS) & PCI_STATUS_INTERRUPT) !== 0;
      if (status !== (isr !== 0)) {
        return `${dev.backend.name}: PCI status INTx ${status}, ISR ${isr}`;
      }
      if (this.config.vm.irqchip === "kernel") {
        const line = this.accel.lines.get(irq) ?? false;
        const want = isr !== 0 && !dev.config.intxDisabled;
        if (line !== want) return `${dev.backend.name}: IRQ ${irq} is ${line}, ISR ${isr}`;
      }
    }
    return undefined;
  }
}

/** A value of `width` bytes, little-endian. */
function valueBytes(rng: Rng, width: number): Uint8Array {
  const data = new Uint8Array(width);
  if (rng.chance(0.5)) {
    const v = rng.interesting(32);
    for (let i = 0; i < Math.min(4, width); i++) data[i] = (v >>> (8 * i)) & 0xff;
  } else {
    data.set(rng.bytes(width));
  }
  return data;
}

/** An address near a device range of `ranges`, or anywhere in `space` bytes. */
function address(
  rng: Rng,
  ranges: readonly { base: number; length: number }[],
  space: number,
): number {
  if (ranges.length && rng.chance(0.85)) {
    const r = rng.pick(ranges);
    return Math.max(0, Math.min(space - 1, r.base + rng.range(-2, r.length + 1)));
  }
  return rng.below(space);
}

function pioAccess(s: Subject, rng: Rng): void {
  const m = s.machine;
  const port = address(rng, m.pio.ranges, 0x10000);
  const width = rng.pick([1, 2, 4]);
  if (rng.chance(0.5)) m.pio.read(port, new Uint8Array(width));
  else m.pio.write(port, valueBytes(rng, width));
}

function mmioAccess(s: Subject, rng: Rng): void {
  const m = s.machine;
  const addr = address(rng, m.mmio.ranges, 2 ** 32);
  const width = rng.pick([1, 2, 4, 8]);
  if (rng.chance(0.5)) m.mmio.read(addr, new Uint8Array(width));
  else m.mmio.write(addr, valueBytes(rng, width));
}

function out(m: Machine, port: number, value: number, width: number): void {
  const data = new Uint8Array(width);
  for (let i = 0; i < width; i++) data[i] = (value >>> (8 * i)) & 0xff;
  m.pio.write(port, data);
}

function inp(m: Machine, port: number, width: number): number {
  const data = new Uint8Array(width);
  m.pio.read(port, data);
  let v = 0;
  for (let i = width - 1; i >= 0; i--) v = v * 256 + data[i];
  return v;
}

function pciConfigAccess(s: Subject, rng: Rng): void {
  const m = s.machine;
  const dev = rng.below(rng.chance(0.8) ? 6 : 32);
  const fn = rng.chance(0.9) ? 0 : rng.below(8);
  const bus = rng.chance(0.9) ? 0 : rng.below(256);
  const reg = rng.chance(0.6)
    ? rng.pick([0x04, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x3c])
    : rng.below(64) * 4;
  const enable = rng.chance(0.95) ? 0x80000000 : 0;
  out(m, 0xcf8, (enable | (bus << 16) | (dev << 11) | (fn << 8) | reg) >>> 0, 4);
  const width = rng.pick([1, 2, 4]);
  const offset = width === 4 ? 0 : width === 2 ? 2 * rng.below(2) : rng.below(4);
  if (rng.chance(0.4)) m.pio.read(0xcfc + offset, new Uint8Array(width));
  else m.pio.write(0xcfc + offset, valueBytes(rng, width));
}

/** A virtio function's legacy I/O base, when it decodes. */
function legacyBase(m: Machine, dev: VirtioPciDevice): number | undefined {
  return m.pio.ranges.find((r) => r.device === dev.legacy)?.base;
}

/**
 * Plays a virtio driver on the legacy interface: status, features, one queue
 * at a random page, random ring and descriptor contents, a notify, timers.
 */
function virtioDriver(s: Subject, rng: Rng): void {
  const m = s.machine;
  const devices = m.virtio.all;
  if (!devices.length) return;
  const dev = rng.pick(devices);
  const io = legacyBase(m, dev);
  if (io === undefined) return;
  if (rng.chance(0.4)) out(m, io + VIRTIO_PCI_STATUS, 0, 1); // reset (also clears NEEDS_RESET)
  out(m, io + VIRTIO_PCI_STATUS, rng.chance(0.9) ? 0x03 : rng.below(256), 1);
  const host = inp(m, io + VIRTIO_PCI_HOST_FEATURES, 4);
  out(m, io + VIRTIO_PCI_GUEST_FEATURES, rng.chance(0.7) ? host : (host & rng.u32()) >>> 0, 4);
  const queue = rng.chance(0.9) ? rng.below(Math.max(1, dev.queues.length)) : rng.below(0x10000);
  out(m, io + VIRTIO_PCI_QUEUE_SEL, queue, 2);
  const size = inp(m, io + VIRTIO_PCI_QUEUE_NUM, 2);
  const pages = RAM_BYTES / 4096;
  const pfn = rng.chance(0.9) ? rng.range(16, pages - 64) : rng.interesting(32);
  out(m, io + VIRTIO_PCI_QUEUE_PFN, pfn, 4);
  if (size > 0 && size <= 32768 && pfn < pages) fillRing(s, rng, pfn * 4096, size);
  out(m, io + VIRTIO_PCI_STATUS, rng.chance(0.9) ? 0x07 : rng.below(256), 1);
  out(m, io + VIRTIO_PCI_QUEUE_NOTIFY, rng.chance(0.9) ? queue : rng.below(0x10000), 2);
  s.nowNs += rng.below(2_000_000);
  m.pollTimers(s.nowNs);
  if (rng.chance(0.5)) inp(m, io + 0x13, 1); // read (and clear) the ISR
}

/** Random but plausible vring contents at a legacy ring base (virtio 0.9.5 layout). */
function fillRing(s: Subject, rng: Rng, base: number, size: number): void {
  const mem = s.memory;
  const ramEnd = RAM_BYTES;
  const descBytes = 16 * size;
  const availAt = base + descBytes;
  const usedAt = Math.ceil((availAt + 6 + 2 * size) / 4096) * 4096;
  if (usedAt + 6 + 8 * size > ramEnd) return;
  const tableAt = () => rng.range(0, ramEnd / 16 - 1) * 16;
  const count = Math.min(size, rng.range(1, 8));
  for (let i = 0; i < count; i++) {
    const index = rng.chance(0.8) ? i : rng.below(size);
    if (i === 0 && rng.chance(0.5)) blkHeader(s, rng, base + 16 * index);
    const at = base + 16 * index;
    const flags = rng.chance(0.2) ? rng.interesting(16) : rng.pick([0, 1, 2, 3, 4]);
    const indirect = (flags & 4) !== 0;
    const gpa = rng.chance(0.85)
      ? rng.below(ramEnd - 0x10000)
      : rng.interesting(32) * (rng.chance(0.2) ? 2 ** 20 : 1);
    const len = indirect
      ? 16 * rng.range(1, rng.chance(0.9) ? 16 : 70000)
      : rng.chance(0.8)
      ? rng.range(0, 4096)
      : rng.interesting(32);
    mem.writeU64(at, BigInt(indirect ? tableAt() : gpa));
    mem.writeU32(at + 8, len >>> 0);
    mem.writeU16(at + 12, flags);
    mem.writeU16(at + 14, rng.chance(0.8) ? (index + 1) % size : rng.interesting(16));
    if (indirect) {
      const table = Number(mem.readU64(at));
      const entries = Math.min(8, len / 16);
      for (let e = 0; e < entries && table + 16 * (e + 1) <= ramEnd; e++) {
        const t = table + 16 * e;
        mem.writeU64(t, BigInt(rng.below(ramEnd - 0x10000)));
        mem.writeU32(t + 8, rng.range(0, 4096));
        mem.writeU16(t + 12, rng.pick([0, 1, 2, 3, 4, 5]));
        mem.writeU16(t + 14, rng.chance(0.8) ? e + 1 : rng.interesting(16));
      }
    }
  }
  // Request headers in the buffers: give blk a sane-looking header sometimes.
  const idx = mem.readU16(availAt + 2);
  const n = rng.range(1, rng.chance(0.9) ? 3 : size + 2);
  for (let k = 0; k < n; k++) {
    mem.writeU16(
      availAt + 4 + 2 * ((idx + k) % size),
      rng.chance(0.9) ? rng.below(count) : rng.interesting(16),
    );
  }
  mem.writeU16(availAt, rng.chance(0.8) ? 0 : rng.interesting(16));
  mem.writeU16(availAt + 2, (idx + (rng.chance(0.95) ? n : rng.interesting(16))) & 0xffff);
}

/** Puts a plausible virtio-blk request header in the buffer descriptor `at` names. */
function blkHeader(s: Subject, rng: Rng, at: number): void {
  const gpa = rng.below(RAM_BYTES - 0x20000);
  s.memory.writeU64(at, BigInt(gpa));
  s.memory.writeU32(at + 8, 16);
  s.memory.writeU32(gpa, rng.pick([0, 1, 4, 8, rng.u32()]));
  s.memory.writeU64(gpa + 8, BigInt(rng.chance(0.8) ? rng.below(DISK_BYTES / 512 + 4) : rng.u32()));
}

type Step = (s: Subject, rng: Rng) => void;

function fuzzMachine(
  name: string,
  steps: readonly [number, Step][],
  seed: number,
  inputs: number,
): FuzzReport {
  const rec = new Recorder(name, seed);
  const rng = new Rng(seed);
  const diskPath = Deno.makeTempFileSync({ prefix: "guest-fuzz-disk-" });
  Deno.truncateSync(diskPath, DISK_BYTES);
  // No exit port: most random writes to it would end the run's machine at once.
  const config = nullConfig({
    disks: [{ path: diskPath, format: "raw", readonly: false }],
    debug: {},
  });
  config.vm.memoryBytes = RAM_BYTES;
  config.vm.irqchip = seed % 2 === 0 ? "user" : "kernel";
  const savedError = console.error;
  let logged = 0;
  console.error = () => logged++; // the guest-misbehaviour log: counted, not printed
  const total = steps.reduce((n, [w]) => n + w, 0);
  let subject: Subject | undefined;
  try {
    subject = new Subject(config);
    const heapBase = Deno.memoryUsage().heapUsed;
    for (let step = 0; step < inputs; step++) {
      let r = rng.below(total);
      const [, op] = steps.find(([w]) => (r -= w) < 0)!;
      try {
        op(subject, rng);
      } catch (e) {
        rec.find(step, describeError(e));
        subject.reset(); // a real VM would have ended here
        rec.count("machine resets");
        continue;
      }
      for (const d of subject.machine.virtio.all) {
        if (d.status & 0x40) rec.count("steps with a device in NEEDS_RESET");
      }
      const broken = subject.check();
      if (broken) {
        rec.find(step, broken);
        subject.reset();
        continue;
      }
      if (subject.machine.outcome || rng.chance(0.0005)) {
        rec.count(
          subject.machine.outcome ? `outcome ${subject.machine.outcome.kind}` : "random resets",
        );
        subject.reset();
      }
      if (step % 1000 === 999 && Deno.memoryUsage().heapUsed - heapBase > HEAP_BOUND_BYTES) {
        rec.find(step, `heap grew by ${Deno.memoryUsage().heapUsed - heapBase} bytes`);
        break;
      }
      rec.report.inputs++;
    }
    rec.count("refused guest-memory accesses", subject.memory.refused);
  } catch (e) {
    rec.find(-1, `building the machine: ${describeError(e)}`);
  } finally {
    console.error = savedError;
    subject?.close();
    Deno.removeSync(diskPath);
  }
  rec.count("guest log lines", logged);
  return rec.report;
}

/** Every device through the buses: accesses of every width, PCI config, resets, timers. */
export const devicesTarget: FuzzTarget = {
  name: "devices",
  unit: "guest operations",
  short: 3000,
  long: 1_000_000,
  run: (seed, inputs) =>
    fuzzMachine(
      "devices",
      [
        [40, pioAccess],
        [20, mmioAccess],
        [20, pciConfigAccess],
        [10, virtioDriver],
        [5, (s, rng) => {
          s.nowNs += rng.below(50_000_000);
          s.machine.pollTimers(s.nowNs);
        }],
      ],
      seed,
      inputs,
    ),
};

/** Virtqueues with random ring and descriptor contents, driven through the legacy interface. */
export const virtqueuesTarget: FuzzTarget = {
  name: "virtqueues",
  unit: "queue set-ups and notifies",
  short: 1000,
  long: 300_000,
  run: (seed, inputs) =>
    fuzzMachine("virtqueues", [[90, virtioDriver], [10, pioAccess]], seed, inputs),
};
