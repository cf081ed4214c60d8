/**
 * Transitional virtio over PCI, as QEMU's default devices: one function that
 * answers both the legacy (0.9.5) interface on an I/O BAR and the modern
 * (1.x) interface in a 64-bit memory BAR (the register map is in
 * pci_regs.ts), runs the status machine of pci_status.ts, and serves the
 * queues; MSI-X vectors are pci_msix.ts's.
 *
 * VIRTIO_F_VERSION_1 is offered only through the modern interface; which
 * interface the driver uses is decided by where it first writes. Queue
 * configuration is latched at DRIVER_OK: later changes are ignored and logged.
 * Interrupts are INTx (pin A), level-triggered: raised while the ISR is
 * non-zero, lowered when the driver reads it (or MSI-X, once enabled).
 *
 * @module
 */

import {
  type BusDevice,
  getLe,
  guestLog,
  type IrqLine,
  type RateLimitedLog,
  setLe,
  type TimedDevice,
} from "../../core/device.ts";
import {
  barOnBus,
  PCI_BASE_ADDRESS_0,
  PCI_CAP_ID_VNDR,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_INTERRUPT_LINE,
  PciConfigSpace,
  type PciDevice,
} from "../pci.ts";
import type { Bus } from "../../core/bus.ts";
import { type GuestMemory, GuestMemoryError } from "../../core/guest_memory.ts";
import { Virtqueue, VirtqueueError } from "./queue.ts";
import {
  featureBit,
  hasFeature,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_ISR_CONFIG,
  VIRTIO_ISR_QUEUE,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
  VIRTIO_STATUS_NEEDS_RESET,
  type VirtioBackend,
  type VirtioDeviceContext,
} from "./virtio.ts";

import {
  CLASS_BY_TYPE,
  DEFAULT_REQUESTS_PER_PASS,
  LEGACY_BAR,
  MODERN_BAR,
  MODERN_BAR_BYTES,
  MODERN_COMMON_OFFSET,
  MODERN_DEVICE_OFFSET,
  MODERN_ISR_OFFSET,
  MODERN_NOTIFY_OFFSET,
  NOTIFY_OFF_MULTIPLIER,
  TRANSITIONAL_DEVICE_IDS,
  VIRTIO_PCI_CAP_COMMON_CFG,
  VIRTIO_PCI_CAP_DEVICE_CFG,
  VIRTIO_PCI_CAP_ISR_CFG,
  VIRTIO_PCI_CAP_NOTIFY_CFG,
  VIRTIO_PCI_COMMON_BYTES,
  VIRTIO_PCI_COMMON_CFGGENERATION,
  VIRTIO_PCI_COMMON_DF,
  VIRTIO_PCI_COMMON_DFSELECT,
  VIRTIO_PCI_COMMON_GF,
  VIRTIO_PCI_COMMON_GFSELECT,
  VIRTIO_PCI_COMMON_MSIX,
  VIRTIO_PCI_COMMON_NUMQ,
  VIRTIO_PCI_COMMON_Q_AVAILHI,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCHI,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_ENABLE,
  VIRTIO_PCI_COMMON_Q_MSIX,
  VIRTIO_PCI_COMMON_Q_NOFF,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDHI,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  VIRTIO_PCI_COMMON_STATUS,
  VIRTIO_PCI_CONFIG_LEGACY,
  VIRTIO_PCI_GUEST_FEATURES,
  VIRTIO_PCI_HOST_FEATURES,
  VIRTIO_PCI_ISR,
  VIRTIO_PCI_MODERN_BASE,
  VIRTIO_PCI_QUEUE_NOTIFY,
  VIRTIO_PCI_QUEUE_NUM,
  VIRTIO_PCI_QUEUE_PFN,
  VIRTIO_PCI_QUEUE_SEL,
  VIRTIO_PCI_STATUS,
  VIRTIO_PCI_VENDOR_ID,
} from "./pci_regs.ts";
import { STATUS_TRANSITIONS } from "./pci_status.ts";
import { MSIX_BAR, MSIX_BAR_BYTES, VIRTIO_MSI_NO_VECTOR, VirtioMsix } from "./pci_msix.ts";

/** PCI identity overrides (vmmci is not a Red Hat device). */
export interface VirtioPciIds {
  vendorId: number;
  deviceId: number;
  subsystemVendorId: number;
  subsystemId: number;
  classCode: number;
}

/** Options of {@link VirtioPciDevice}. */
export interface VirtioPciOptions {
  mem: GuestMemory;
  /** The INTx line (an ISA IRQ routed through the PIC). */
  irq: IrqLine;
  /** The ISA IRQ number, written to the interrupt-line register. */
  irqNumber: number;
  ids?: Partial<VirtioPciIds>;
  /** Offer the modern interface (BAR4 and capabilities); default true. */
  modern?: boolean;
  requestsPerPass?: number;
  log?: RateLimitedLog;
  /**
   * Called when the device's deadline may have moved (a notify, DRIVER_OK,
   * reset): the run loop caches deadlines and must poll us again.
   */
  onDeadlineChange?: () => void;
  /**
   * Delivers an MSI (address, data): given, the function offers MSI-X
   * (the MSI-X section below) with one vector per queue plus one for configuration.
   */
  msi?: (address: number, data: number) => void;
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** A virtio device on PCI: config space, the legacy I/O BAR and the modern memory BAR. */
export class VirtioPciDevice implements PciDevice, TimedDevice {
  readonly backend: VirtioBackend;
  readonly config: PciConfigSpace;
  /** The legacy register block (BAR0, I/O). */
  readonly legacy: BusDevice;
  /** The modern register block (BAR4, memory); undefined when `modern: false`. */
  readonly modern: BusDevice | undefined;
  readonly queues: readonly Virtqueue[];
  /** MSI-X, when the machine can deliver MSIs ({@link VirtioPciOptions.msi}). */
  readonly msix?: VirtioMsix;
  readonly legacyBarBytes: number;
  readonly #mem: GuestMemory;
  readonly #irq: IrqLine;
  readonly #log: RateLimitedLog;
  readonly #perPass: number;
  readonly #onDeadlineChange: () => void;
  readonly #offered: bigint;
  #status = 0;
  #isr = 0;
  #driverFeatures = 0n;
  #deviceFeatureSelect = 0;
  #driverFeatureSelect = 0;
  #queueSelect = 0;
  /** Which interface the driver uses: decided by its first write after reset. */
  #interface: "legacy" | "modern" | undefined;
  #pending = new Set<number>();
  #ctx: VirtioDeviceContext | undefined;
  #lineHigh = false;

  constructor(backend: VirtioBackend, options: VirtioPciOptions) {
    this.backend = backend;
    this.#mem = options.mem;
    this.#irq = options.irq;
    this.#log = options.log ?? guestLog;
    this.#perPass = options.requestsPerPass ?? DEFAULT_REQUESTS_PER_PASS;
    this.#onDeadlineChange = options.onDeadlineChange ?? (() => {});
    this.#offered = backend.features | featureBit(VIRTIO_F_VERSION_1);
    this.queues = backend.queueSizes.map((n) => new Virtqueue(n));
    const type = backend.deviceType;
    const ids: VirtioPciIds = {
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: TRANSITIONAL_DEVICE_IDS[type] ?? VIRTIO_PCI_MODERN_BASE + type,
      subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
      subsystemId: type,
      classCode: CLASS_BY_TYPE[type] ?? 0xff0000,
      ...options.ids,
    };
    this.config = new PciConfigSpace({ ...ids, interruptPin: 1 });
    this.config.setU8(PCI_INTERRUPT_LINE, options.irqNumber);
    this.legacyBarBytes = Math.max(
      32,
      nextPowerOfTwo(VIRTIO_PCI_CONFIG_LEGACY + (options.msi ? 4 : 0) + backend.configBytes),
    );
    this.legacy = {
      name: `${backend.name}-legacy`,
      read: (offset, data) => this.#legacyRead(offset, data),
      write: (offset, data) => this.#legacyWrite(offset, data),
    };
    if (options.modern ?? true) {
      this.modern = {
        name: `${backend.name}-modern`,
        read: (offset, data) => this.#modernRead(offset, data),
        write: (offset, data) => this.#modernWrite(offset, data),
      };
      if (options.msi) this.msix = new VirtioMsix(this.config, this.queues.length, options.msi);
      this.#addCapability(VIRTIO_PCI_CAP_COMMON_CFG, MODERN_COMMON_OFFSET, VIRTIO_PCI_COMMON_BYTES);
      this.#addCapability(VIRTIO_PCI_CAP_ISR_CFG, MODERN_ISR_OFFSET, 1);
      this.#addCapability(
        VIRTIO_PCI_CAP_DEVICE_CFG,
        MODERN_DEVICE_OFFSET,
        Math.max(backend.configBytes, 4),
      );
      this.#addCapability(
        VIRTIO_PCI_CAP_NOTIFY_CFG,
        MODERN_NOTIFY_OFFSET,
        Math.max(this.queues.length, 1) * NOTIFY_OFF_MULTIPLIER,
        NOTIFY_OFF_MULTIPLIER,
      );
    }
  }

  #addCapability(type: number, offset: number, length: number, multiplier?: number): void {
    const body = [
      multiplier === undefined ? 16 : 20, // cap_len
      type,
      MODERN_BAR,
      0, // id
      0,
      0, // padding
      offset & 0xff,
      (offset >> 8) & 0xff,
      (offset >> 16) & 0xff,
      offset >>> 24,
      length & 0xff,
      (length >> 8) & 0xff,
      (length >> 16) & 0xff,
      length >>> 24,
    ];
    if (multiplier !== undefined) body.push(multiplier, 0, 0, 0);
    this.config.addCapability(PCI_CAP_ID_VNDR, body);
  }

  /**
   * Declares the BARs, pre-assigns them (when there is no firmware to do
   * it) at `ioBase` and `mmioBase`, enables decoding and bus mastering, and
   * keeps the buses in step when the guest moves them. With a BIOS,
   * `ioBase` is undefined: the BARs start unassigned and not decoding, as on
   * hardware, so the firmware never moves one onto another's old place.
   */
  attach(
    pio: Bus,
    mmio: Bus,
    ioBase: number | undefined,
    mmioBase: number,
    msixBase?: number,
  ): void {
    this.config.addIoBar(
      LEGACY_BAR,
      this.legacyBarBytes,
      barOnBus(pio, this.legacyBarBytes, this.legacy),
    );
    const modern = this.modern;
    if (modern) {
      this.config.addMemoryBar(
        MODERN_BAR,
        MODERN_BAR_BYTES,
        barOnBus(mmio, MODERN_BAR_BYTES, modern),
        { is64: true },
      );
    }
    const msix = this.msix;
    if (msix) {
      // A guest may move it onto another BAR: barOnBus stops decoding it then.
      this.config.addMemoryBar(MSIX_BAR, MSIX_BAR_BYTES, barOnBus(mmio, MSIX_BAR_BYTES, msix.bar));
    }
    if (ioBase === undefined) return;
    const put = (offset: number, value: number) => {
      const data = new Uint8Array(4);
      setLe(data, value);
      this.config.write(offset, data);
    };
    put(PCI_BASE_ADDRESS_0 + 4 * LEGACY_BAR, ioBase);
    if (msix && msixBase !== undefined) put(PCI_BASE_ADDRESS_0 + 4 * MSIX_BAR, msixBase);
    if (modern) {
      put(PCI_BASE_ADDRESS_0 + 4 * MODERN_BAR, mmioBase % 2 ** 32);
      put(PCI_BASE_ADDRESS_0 + 4 * MODERN_BAR + 4, Math.floor(mmioBase / 2 ** 32));
    }
    const command = new Uint8Array(2);
    setLe(command, PCI_COMMAND_IO | (modern ? PCI_COMMAND_MEMORY : 0) | PCI_COMMAND_MASTER);
    this.config.write(PCI_COMMAND, command);
  }

  /** The device status register. */
  get status(): number {
    return this.#status;
  }

  /** The ISR (without clearing it). */
  get isr(): number {
    return this.#isr;
  }

  /** The negotiated (driver-accepted) features. */
  get driverFeatures(): bigint {
    return this.#driverFeatures;
  }

  /** Which interface the driver is using, if it has written anything yet. */
  get activeInterface(): "legacy" | "modern" | undefined {
    return this.#interface;
  }

  // --- interrupts ---------------------------------------------------------

  #raise(bits: number): void {
    this.#isr |= bits;
    this.#updateLine();
  }

  #updateLine(): void {
    const high = this.#isr !== 0 && !this.config.intxDisabled;
    this.config.setInterruptStatus(this.#isr !== 0);
    if (high !== this.#lineHigh) {
      this.#lineHigh = high;
      this.#irq.setLevel(high);
    }
  }

  #readIsr(): number {
    const value = this.#isr;
    this.#isr = 0;
    this.#updateLine();
    return value;
  }

  /** Raises the configuration-change interrupt (when the driver is up). */
  configChanged(): void {
    if (!(this.#status & VIRTIO_STATUS_DRIVER_OK)) return;
    if (this.msix?.active) this.msix.signalConfig();
    else this.#raise(VIRTIO_ISR_CONFIG);
  }

  // --- status, reset, failure --------------------------------------------

  #use(which: "legacy" | "modern"): void {
    if (this.#interface === undefined) this.#interface = which;
  }

  /** Device reset: what writing 0 to the status register does. */
  reset(): void {
    this.backend.reset?.();
    for (const q of this.queues) q.reset();
    this.#ctx = undefined;
    this.#status = 0;
    this.#driverFeatures = 0n;
    this.#deviceFeatureSelect = 0;
    this.#driverFeatureSelect = 0;
    this.#queueSelect = 0;
    this.#interface = undefined;
    this.#pending.clear();
    this.#isr = 0;
    this.msix?.resetVectors();
    this.#updateLine();
  }

  /**
   * The guest broke the device: set NEEDS_RESET, stop every queue, tell the
   * driver with a configuration interrupt, log (rate-limited).
   */
  fail(reason: string): void {
    this.#log.log(`${this.backend.name}: ${reason}; device needs reset`);
    if (this.#status & VIRTIO_STATUS_NEEDS_RESET) return;
    this.#status |= VIRTIO_STATUS_NEEDS_RESET;
    for (const q of this.queues) q.deactivate();
    this.#pending.clear();
    this.#ctx = undefined;
    if (this.#status & VIRTIO_STATUS_DRIVER_OK) this.#raise(VIRTIO_ISR_CONFIG);
  }

  #writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const old = this.#status;
    const driverBits = old & ~VIRTIO_STATUS_NEEDS_RESET;
    const wanted = value & ~VIRTIO_STATUS_NEEDS_RESET;
    if ((driverBits & ~wanted) !== 0) {
      this.#log.log(
        `${this.backend.name}: status write 0x${value.toString(16)} clears bits of ` +
          `0x${old.toString(16)}; ignored (write 0 to reset)`,
      );
      return;
    }
    const modern = this.#interface === "modern";
    let next = old;
    for (const t of STATUS_TRANSITIONS) {
      if (!(wanted & t.bit) || (old & t.bit)) continue;
      const requires = t.requires | (modern ? t.modernRequires : 0);
      if ((next & requires) !== requires) {
        this.#log.log(`${this.backend.name}: status ${t.name} set out of order; ignored`);
        continue;
      }
      if (t.bit === VIRTIO_STATUS_FEATURES_OK && !this.#featuresAcceptable()) {
        this.#log.log(
          `${this.backend.name}: features 0x${this.#driverFeatures.toString(16)} refused`,
        );
        continue;
      }
      next |= t.bit;
    }
    this.#status = next;
    if ((next & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) this.#driverOk();
  }

  #featuresAcceptable(): boolean {
    const f = this.#driverFeatures;
    if (this.#interface === "modern" && !hasFeature(f, VIRTIO_F_VERSION_1)) return false;
    return this.backend.acceptFeatures?.(f) ?? true;
  }

  #driverOk(): void {
    if (this.#status & VIRTIO_STATUS_NEEDS_RESET) return;
    const features = this.#driverFeatures;
    const ringFeatures = {
      indirect: hasFeature(features, VIRTIO_F_INDIRECT_DESC),
      eventIdx: hasFeature(features, VIRTIO_F_RING_EVENT_IDX),
    };
    for (let i = 0; i < this.queues.length; i++) {
      const q = this.queues[i];
      if (!q.enabled) continue;
      try {
        q.activate(this.#mem, ringFeatures);
      } catch (e) {
        if (e instanceof VirtqueueError || e instanceof GuestMemoryError) {
          this.fail(`queue ${i}: ${e.message}`);
          return;
        }
        throw e;
      }
    }
    const ctx: VirtioDeviceContext = {
      mem: this.#mem,
      queues: this.queues,
      features,
      usedBuffers: (index) => {
        if (this.#ctx !== ctx) return;
        this.#maybeInterrupt(index);
      },
      configChanged: () => this.configChanged(),
      fail: (reason) => this.fail(reason),
    };
    this.#ctx = ctx;
    this.backend.activate?.(ctx);
    for (let i = 0; i < this.queues.length; i++) {
      if (this.queues[i].active) this.#pending.add(i);
    }
    this.#servePending();
    this.#onDeadlineChange();
  }

  #maybeInterrupt(index: number): void {
    const q = this.queues[index];
    if (!q?.active) return;
    try {
      if (!q.shouldInterrupt()) return;
      if (this.msix?.active) this.msix.signalQueue(index);
      else this.#raise(VIRTIO_ISR_QUEUE);
    } catch (e) {
      if (e instanceof GuestMemoryError) this.fail(`queue ${index}: ${e.message}`);
      else throw e;
    }
  }

  // --- queues ---------------------------------------------------------------

  /** The driver notified queue `index`. */
  notify(index: number): void {
    if (index >= this.queues.length) {
      this.#log.log(`${this.backend.name}: notify on missing queue ${index} ignored`);
      return;
    }
    if (!this.#ctx || !this.queues[index].active) return;
    this.#pending.add(index);
    this.#serve(index);
    this.#onDeadlineChange();
  }

  /** Serves one pass of queue `index`; keeps it pending when work is left. */
  #serve(index: number): void {
    const ctx = this.#ctx;
    const q = this.queues[index];
    if (!ctx || !q.active) {
      this.#pending.delete(index);
      return;
    }
    let more = false;
    try {
      const backend = this.backend;
      if (backend.process) {
        more = backend.process(index, q, ctx);
      } else if (backend.handle) {
        let served = 0;
        for (;;) {
          if (served === this.#perPass) {
            more = q.pending() > 0;
            break;
          }
          const chain = q.pop();
          if (!chain) break;
          const written = backend.handle(index, chain);
          if (this.#ctx !== ctx) return; // the device failed while handling
          q.pushUsed(chain.head, written);
          served++;
        }
      }
    } catch (e) {
      if (e instanceof VirtqueueError || e instanceof GuestMemoryError) {
        this.fail(`queue ${index}: ${e.message}`);
        return;
      }
      throw e;
    }
    if (this.#ctx !== ctx) return;
    if (more) this.#pending.add(index);
    else this.#pending.delete(index);
    this.#maybeInterrupt(index);
  }

  #servePending(): void {
    for (const index of [...this.#pending]) this.#serve(index);
  }

  poll(nowNs: number): void {
    if (this.#pending.size > 0) this.#servePending();
    if (!this.#ctx || !this.backend.poll) return;
    try {
      this.backend.poll(nowNs);
    } catch (e) {
      if (e instanceof VirtqueueError || e instanceof GuestMemoryError) this.fail(e.message);
      else throw e;
    }
  }

  nextDeadlineNs(): number {
    if (this.#pending.size > 0) return 0;
    if (!this.#ctx) return Infinity;
    return this.backend.nextDeadlineNs?.() ?? Infinity;
  }

  /** Whether queue configuration may still change (before DRIVER_OK). */
  #queueWritable(what: string): boolean {
    if (!(this.#status & VIRTIO_STATUS_DRIVER_OK)) return true;
    this.#log.log(`${this.backend.name}: ${what} written after DRIVER_OK; ignored`);
    return false;
  }

  #selectedQueue(): Virtqueue | undefined {
    return this.queues[this.#queueSelect];
  }

  // --- device configuration ------------------------------------------------

  #readDeviceConfig(offset: number, data: Uint8Array): void {
    if (offset + data.length > this.backend.configBytes) {
      data.fill(0);
      return;
    }
    this.backend.readConfig(offset, data);
  }

  #writeDeviceConfig(offset: number, data: Uint8Array): void {
    if (offset + data.length > this.backend.configBytes) return;
    this.backend.writeConfig?.(offset, data);
  }

  // --- legacy interface -----------------------------------------------------

  /** Where the legacy header ends: with MSI-X on, two vector registers come first (0x14, 0x16). */
  get #legacyConfigOffset(): number {
    return this.msix?.active ? VIRTIO_PCI_CONFIG_LEGACY + 4 : VIRTIO_PCI_CONFIG_LEGACY;
  }

  #legacyRead(offset: number, data: Uint8Array): void {
    if (offset >= this.#legacyConfigOffset) {
      this.#readDeviceConfig(offset - this.#legacyConfigOffset, data);
      return;
    }
    if (this.msix?.active && offset >= VIRTIO_PCI_CONFIG_LEGACY && data.length === 2) {
      const v = offset === VIRTIO_PCI_CONFIG_LEGACY
        ? this.msix.configVector
        : this.msix.queueVector(this.#queueSelect);
      setLe(data, v);
      return;
    }
    const q = this.#selectedQueue();
    let value: number;
    switch (offset) {
      case VIRTIO_PCI_HOST_FEATURES:
        value = Number(this.#offered & ~featureBit(VIRTIO_F_VERSION_1) & 0xffffffffn);
        break;
      case VIRTIO_PCI_GUEST_FEATURES:
        value = Number(this.#driverFeatures & 0xffffffffn);
        break;
      case VIRTIO_PCI_QUEUE_PFN:
        value = q?.legacyPfn ?? 0;
        break;
      case VIRTIO_PCI_QUEUE_NUM:
        value = q?.maxSize ?? 0;
        break;
      case VIRTIO_PCI_QUEUE_SEL:
        value = this.#queueSelect;
        break;
      case VIRTIO_PCI_STATUS:
        value = this.#status;
        break;
      case VIRTIO_PCI_ISR:
        value = data.length === 1 ? this.#readIsr() : 0xffffffff;
        break;
      default:
        value = 0xffffffff; // write-only (notify) or a misaligned access
    }
    setLe(data, value);
  }

  #legacyWrite(offset: number, data: Uint8Array): void {
    if (offset >= this.#legacyConfigOffset) {
      this.#writeDeviceConfig(offset - this.#legacyConfigOffset, data);
      return;
    }
    if (this.msix?.active && offset >= VIRTIO_PCI_CONFIG_LEGACY && data.length === 2) {
      if (offset === VIRTIO_PCI_CONFIG_LEGACY) this.msix.configVector = getLe(data);
      else this.msix.setQueueVector(this.#queueSelect, getLe(data));
      return;
    }
    const value = getLe(data);
    const width = data.length;
    const is = (reg: number, w: number) => offset === reg && width === w;
    if (is(VIRTIO_PCI_QUEUE_NOTIFY, 2)) {
      this.notify(value);
      return;
    }
    if (is(VIRTIO_PCI_GUEST_FEATURES, 4)) {
      this.#use("legacy");
      if (this.#status & VIRTIO_STATUS_DRIVER_OK) {
        this.#log.log(`${this.backend.name}: features written after DRIVER_OK; ignored`);
        return;
      }
      const legacyOffer = this.#offered & 0xffffffffn;
      this.#driverFeatures = BigInt(value) & legacyOffer;
    } else if (is(VIRTIO_PCI_QUEUE_PFN, 4)) {
      this.#use("legacy");
      const q = this.#selectedQueue();
      if (!q) {
        this.#log.log(`${this.backend.name}: PFN for missing queue ${this.#queueSelect}`);
      } else if (this.#queueWritable("queue PFN")) {
        q.setLegacyPfn(value);
      }
    } else if (is(VIRTIO_PCI_QUEUE_SEL, 2)) {
      this.#queueSelect = value;
    } else if (is(VIRTIO_PCI_STATUS, 1)) {
      this.#use("legacy");
      this.#writeStatus(value);
    } else {
      this.#log.log(
        `${this.backend.name}: legacy write of ${width} bytes at 0x${offset.toString(16)} ignored`,
      );
    }
  }

  // --- modern interface -----------------------------------------------------

  #modernRead(offset: number, data: Uint8Array): void {
    if (offset >= MODERN_DEVICE_OFFSET && offset < MODERN_NOTIFY_OFFSET) {
      this.#readDeviceConfig(offset - MODERN_DEVICE_OFFSET, data);
    } else if (offset === MODERN_ISR_OFFSET && data.length === 1) {
      data[0] = this.#readIsr();
    } else if (offset < VIRTIO_PCI_COMMON_BYTES) {
      setLe(data, this.#commonRead(offset, data.length));
    } else {
      data.fill(0);
    }
  }

  #commonRead(offset: number, width: number): number {
    const q = this.#selectedQueue();
    const is = (reg: number, w: number) => offset === reg && width === w;
    const half = (v: number, high: boolean) => high ? Math.floor(v / 2 ** 32) : v % 2 ** 32;
    if (is(VIRTIO_PCI_COMMON_DFSELECT, 4)) return this.#deviceFeatureSelect;
    if (is(VIRTIO_PCI_COMMON_DF, 4)) {
      const sel = this.#deviceFeatureSelect;
      return sel > 1 ? 0 : Number((this.#offered >> BigInt(32 * sel)) & 0xffffffffn);
    }
    if (is(VIRTIO_PCI_COMMON_GFSELECT, 4)) return this.#driverFeatureSelect;
    if (is(VIRTIO_PCI_COMMON_GF, 4)) {
      const sel = this.#driverFeatureSelect;
      return sel > 1 ? 0 : Number((this.#driverFeatures >> BigInt(32 * sel)) & 0xffffffffn);
    }
    if (is(VIRTIO_PCI_COMMON_MSIX, 2)) return this.msix?.configVector ?? VIRTIO_MSI_NO_VECTOR;
    if (is(VIRTIO_PCI_COMMON_NUMQ, 2)) return this.queues.length;
    if (is(VIRTIO_PCI_COMMON_STATUS, 1)) return this.#status;
    if (is(VIRTIO_PCI_COMMON_CFGGENERATION, 1)) return 0;
    if (is(VIRTIO_PCI_COMMON_Q_SELECT, 2)) return this.#queueSelect;
    if (is(VIRTIO_PCI_COMMON_Q_SIZE, 2)) return q?.size ?? 0;
    if (is(VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
      return this.msix?.queueVector(this.#queueSelect) ?? VIRTIO_MSI_NO_VECTOR;
    }
    if (is(VIRTIO_PCI_COMMON_Q_ENABLE, 2)) return q?.enabled ? 1 : 0;
    if (is(VIRTIO_PCI_COMMON_Q_NOFF, 2)) return q ? this.#queueSelect : 0;
    if (!q || width !== 4) return 0;
    switch (offset) {
      case VIRTIO_PCI_COMMON_Q_DESCLO:
      case VIRTIO_PCI_COMMON_Q_DESCHI:
        return half(q.descGpa, offset === VIRTIO_PCI_COMMON_Q_DESCHI);
      case VIRTIO_PCI_COMMON_Q_AVAILLO:
      case VIRTIO_PCI_COMMON_Q_AVAILHI:
        return half(q.availGpa, offset === VIRTIO_PCI_COMMON_Q_AVAILHI);
      case VIRTIO_PCI_COMMON_Q_USEDLO:
      case VIRTIO_PCI_COMMON_Q_USEDHI:
        return half(q.usedGpa, offset === VIRTIO_PCI_COMMON_Q_USEDHI);
    }
    return 0;
  }

  #modernWrite(offset: number, data: Uint8Array): void {
    if (offset >= MODERN_NOTIFY_OFFSET) {
      const rel = offset - MODERN_NOTIFY_OFFSET;
      if (rel % NOTIFY_OFF_MULTIPLIER === 0) this.notify(rel / NOTIFY_OFF_MULTIPLIER);
      return;
    }
    if (offset >= MODERN_DEVICE_OFFSET) {
      this.#writeDeviceConfig(offset - MODERN_DEVICE_OFFSET, data);
      return;
    }
    if (offset >= VIRTIO_PCI_COMMON_BYTES) return;
    if (data.length === 8 && offset % 8 === 0 && offset >= VIRTIO_PCI_COMMON_Q_DESCLO) {
      this.#commonWrite(offset, 4, getLe(data.subarray(0, 4)));
      this.#commonWrite(offset + 4, 4, getLe(data.subarray(4, 8)));
      return;
    }
    this.#commonWrite(offset, data.length, getLe(data));
  }

  #commonWrite(offset: number, width: number, value: number): void {
    const is = (reg: number, w: number) => offset === reg && width === w;
    const name = this.backend.name;
    if (is(VIRTIO_PCI_COMMON_DFSELECT, 4)) {
      this.#deviceFeatureSelect = value;
      return;
    }
    if (is(VIRTIO_PCI_COMMON_GFSELECT, 4)) {
      this.#driverFeatureSelect = value;
      return;
    }
    if (is(VIRTIO_PCI_COMMON_Q_SELECT, 2)) {
      this.#queueSelect = value;
      return;
    }
    if (is(VIRTIO_PCI_COMMON_MSIX, 2)) {
      if (this.msix) this.msix.configVector = value;
      return;
    }
    if (is(VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
      this.msix?.setQueueVector(this.#queueSelect, value);
      return;
    }
    this.#use("modern");
    if (is(VIRTIO_PCI_COMMON_GF, 4)) {
      if (this.#status & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)) {
        this.#log.log(`${name}: features written after FEATURES_OK; ignored`);
        return;
      }
      const sel = this.#driverFeatureSelect;
      if (sel > 1) return;
      const shift = BigInt(32 * sel);
      const mask = 0xffffffffn << shift;
      const accepted = (BigInt(value) << shift) & this.#offered & mask;
      this.#driverFeatures = (this.#driverFeatures & ~mask) | accepted;
      return;
    }
    if (is(VIRTIO_PCI_COMMON_STATUS, 1)) {
      this.#writeStatus(value);
      return;
    }
    const q = this.#selectedQueue();
    const queueRegister = is(VIRTIO_PCI_COMMON_Q_SIZE, 2) || is(VIRTIO_PCI_COMMON_Q_ENABLE, 2) ||
      (width === 4 && offset >= VIRTIO_PCI_COMMON_Q_DESCLO && offset < VIRTIO_PCI_COMMON_BYTES);
    if (!queueRegister) {
      this.#log.log(
        `${name}: common config write of ${width} bytes at 0x${offset.toString(16)} ignored`,
      );
      return;
    }
    if (!q) {
      this.#log.log(`${name}: write to missing queue ${this.#queueSelect} ignored`);
      return;
    }
    if (!this.#queueWritable(`queue ${this.#queueSelect} configuration`)) return;
    const setHalf = (old: number, high: boolean) =>
      high ? (old % 2 ** 32) + value * 2 ** 32 : Math.floor(old / 2 ** 32) * 2 ** 32 + value;
    switch (offset) {
      case VIRTIO_PCI_COMMON_Q_SIZE:
        q.size = value; // checked at DRIVER_OK
        break;
      case VIRTIO_PCI_COMMON_Q_ENABLE:
        if (value === 1) q.enabled = true;
        break;
      case VIRTIO_PCI_COMMON_Q_DESCLO:
      case VIRTIO_PCI_COMMON_Q_DESCHI:
        q.descGpa = setHalf(q.descGpa, offset === VIRTIO_PCI_COMMON_Q_DESCHI);
        break;
      case VIRTIO_PCI_COMMON_Q_AVAILLO:
      case VIRTIO_PCI_COMMON_Q_AVAILHI:
        q.availGpa = setHalf(q.availGpa, offset === VIRTIO_PCI_COMMON_Q_AVAILHI);
        break;
      case VIRTIO_PCI_COMMON_Q_USEDLO:
      case VIRTIO_PCI_COMMON_Q_USEDHI:
        q.usedGpa = setHalf(q.usedGpa, offset === VIRTIO_PCI_COMMON_Q_USEDHI);
        break;
    }
  }

  /** Releases the backend's host resources. */
  close(): void {
    this.backend.close?.();
  }
}
