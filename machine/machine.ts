/**
 * The machine: a VmConfig turned into guest memory, two buses, the PC
 * devices and their interrupt wiring, a loaded kernel and vCPU 0. Each
 * section keeps its own description.
 *
 * @module
 */

import type { Accel, IrqchipMode, Vcpu, Vm } from "../accel/types.ts";
import type { VmConfig } from "../config/schema.ts";
import { Bus } from "../core/bus.ts";
import {
  type BusDevice,
  type Clock,
  guestLog,
  hostClock,
  type IrqLine,
  type TimedDevice,
} from "../core/device.ts";
import { IOAPIC_GPA, LAPIC_GPA, type MemoryLayout, memoryLayout } from "../core/layout.ts";
import {
  ApicBus,
  ApicRegisterFile,
  IoApic,
  IOAPIC_SIZE,
  LAPIC_SIZE,
  LocalApic,
  msiMessage,
} from "../devices/apic.ts";
import { DebugExit } from "../devices/debug_exit.ts";
import { I8042 } from "../devices/i8042.ts";
import { PciHost } from "../devices/pci.ts";
import { Pic8259Pair } from "../devices/pic8259.ts";
import { Pit8254, Port61 } from "../devices/pit8254.ts";
import { PostPort } from "../devices/post.ts";
import { AcpiPmEvents, PowerControl, ResetControl } from "../devices/power.ts";
import { readImageFile } from "../loaders/image_file.ts";
import type { CpuState } from "../accel/types.ts";
import type { BiosPlatform } from "./bios.ts";
import { RtcMc146818 } from "../devices/rtc_mc146818.ts";
import { Uart16550 } from "../devices/uart16550.ts";
import type { VgaShared } from "../devices/vga/shared.ts";
import { attachVirtioDevices, VIRTIO_IRQS, type VirtioDevices } from "../devices/virtio/attach.ts";
import {
  buildAcpi,
  buildMpTable,
  isaIrqToGsi,
  pcPlatform,
  placeAcpi,
  type Platform,
} from "../loaders/acpi.ts";
import { loadKernel } from "../loaders/detect.ts";
import type { attachDisplay, AttachedDisplay } from "./display.ts";
import { DEBUG_EXIT_BYTES, PORT_BYTES, PORTS } from "../core/ports.ts";

/** Port assignments of the PC machine (vmd's and QEMU's): see core/ports.ts. */
export { PORTS } from "../core/ports.ts";
import type { ApThreads } from "./smp.ts";

// ---- the machine ----

/*
 * The machine: a VmConfig turned into guest memory, two buses, the legacy PC
 * devices, a loaded kernel and vCPU 0 — everything the run loop needs.
 *
 * The machine lives on the vCPU's thread (the devices that exits touch run
 * there); the host side (console, timers, control) talks to it through a
 * {@link VcpuControl}.
 */

/** ISA interrupt lines. */
export const IRQS = { PIT: 0, KEYBOARD: 1, COM1: 4, RTC: 8, MOUSE: 12 } as const;

/**
 * Where the firmware tables go for a direct kernel boot: all in the BIOS
 * area (reserved in e820), which the RSDP and MP scans search.
 */
export const FIRMWARE_TABLES = {
  RSDP: 0xf0000,
  MP_FLOATING: 0xf0040,
  MP_CONFIG: 0xf0100,
  ACPI: 0xf1000,
  END: 0x100000,
} as const;

/** Writes the ACPI and MP tables of `platform` into guest RAM; returns the RSDP's address. */
export function writeFirmwareTables(
  memory: { write(gpa: number, data: Uint8Array): void },
  platform: Platform,
): number {
  const acpi = placeAcpi(buildAcpi(platform), FIRMWARE_TABLES.ACPI);
  const mp = buildMpTable(platform, FIRMWARE_TABLES.MP_CONFIG);
  if (
    FIRMWARE_TABLES.ACPI + acpi.tables.length > FIRMWARE_TABLES.END ||
    FIRMWARE_TABLES.MP_CONFIG + mp.config.length > FIRMWARE_TABLES.ACPI
  ) {
    throw new Error(`Firmware tables for ${platform.cpus} CPUs do not fit the BIOS area`);
  }
  memory.write(FIRMWARE_TABLES.RSDP, acpi.rsdp);
  memory.write(FIRMWARE_TABLES.ACPI, acpi.tables);
  memory.write(FIRMWARE_TABLES.MP_FLOATING, mp.floating);
  memory.write(FIRMWARE_TABLES.MP_CONFIG, mp.config);
  return FIRMWARE_TABLES.RSDP;
}

/** How a VM ended. */
export type Outcome =
  | { kind: "poweroff" }
  | { kind: "exit-port"; status: number }
  | { kind: "reset" }
  | { kind: "triple-fault"; detail: string }
  | { kind: "halted"; detail: string }
  /** Stopped by the host; `detail` says where the guest was. */
  | { kind: "stopped"; detail?: string }
  | { kind: "failed"; reason: string };

/** The process exit status for an outcome (see README: exit statuses). */
export function exitStatus(o: Outcome): number {
  switch (o.kind) {
    case "poweroff":
    case "stopped":
    case "halted":
      return 0;
    case "exit-port":
      return o.status;
    case "reset":
      return 0;
    case "triple-fault":
      return 4;
    case "failed":
      return 3;
  }
}

/** One line describing an outcome for the user. */
export function describeOutcome(o: Outcome): string {
  switch (o.kind) {
    case "poweroff":
      return "guest powered off";
    case "exit-port":
      return `guest wrote to the debug exit port: exit status ${o.status}`;
    case "reset":
      return "guest requested a reset";
    case "triple-fault":
      return `guest triple-faulted (the CPU shut down)${o.detail ? "\n" + o.detail : ""}`;
    case "halted":
      return `guest halted with interrupts disabled${o.detail ? ": " + o.detail : ""}`;
    case "stopped":
      return `VM stopped${o.detail ? `; the guest was${o.detail}` : ""}`;
    case "failed":
      return `VM failed: ${o.reason}`;
  }
}

/**
 * With VMMCTL_BIOS_DEBUG=PATH, SeaBIOS's debug log goes to PATH, each line
 * prefixed with milliseconds since the VM started (for finding slow steps).
 */
function biosDebugLog(): ((line: string) => void) | undefined {
  const path = Deno.env.get("VMMCTL_BIOS_DEBUG");
  if (!path) return undefined;
  const file = Deno.openSync(path, { write: true, create: true, truncate: true });
  const start = performance.now();
  const enc = new TextEncoder();
  return (line) => {
    file.writeSync(enc.encode(`${(performance.now() - start).toFixed(1).padStart(8)} ${line}\n`));
  };
}

/** Refuses guest RAM larger than the host's: it could never be backed. */
export function checkHostMemory(
  memoryBytes: number,
  hostBytes = Deno.systemMemoryInfo().total,
): void {
  if (memoryBytes > hostBytes) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)}G`;
    throw new Error(
      `Memory ${gib(memoryBytes)} is more than this host's ${gib(hostBytes)} of RAM: ` +
        `lower vm.memory`,
    );
  }
}

/** What building a machine needs besides the config. */
export interface MachineOptions {
  config: VmConfig;
  accel: Accel;
  /** Where COM1's output goes (called synchronously from the vCPU thread). */
  serialOut: (bytes: Uint8Array) => void;
  clock?: Clock;
  /**
   * The BIOS platform code (machine/bios.ts), loaded on demand by whoever builds a VM
   * without a kernel: `await import("./bios.ts")`.
   */
  bios?: typeof import("./bios.ts");
  /** virtio-scsi (devices/virtio/scsi.ts), loaded on demand for a VM with a [cdrom]. */
  scsi?: typeof import("../devices/virtio/scsi.ts");
  /** The kernel image, when it does not come from `config.boot.kernel` (built-in demo). */
  kernelImage?: Uint8Array;
  /**
   * The VGA: its shared memory (made by the host thread) and machine/display.ts's
   * attach function, which the worker imports only for a VM with a display.
   */
  display?: { shared: VgaShared; attach: typeof attachDisplay };
}

/** A built machine, ready to run. */
export class Machine {
  readonly config: VmConfig;
  readonly accel: Accel;
  readonly vm: Vm;
  readonly vcpu: Vcpu;
  readonly irqchip: IrqchipMode;
  readonly pio: Bus = new Bus("port I/O");
  readonly mmio: Bus = new Bus("MMIO");
  readonly clock: Clock;
  readonly uart: Uart16550;
  readonly pic?: Pic8259Pair;
  /** The user-space interrupt controllers (irqchip "user"). */
  readonly interrupts?: PcInterrupts;
  /** What the firmware tables describe. */
  readonly platform: Platform;
  /** The ACPI PM1a event block: the power button `vmmctl stop` presses. */
  readonly pm: AcpiPmEvents;
  /** The guest-physical memory map. */
  readonly layout: MemoryLayout;
  /** The application processors' threads (vcpus > 1), set by the vCPU worker. */
  aps?: ApThreads;
  readonly pit?: Pit8254;
  readonly rtc: RtcMc146818;
  readonly post: PostPort;
  readonly pci: PciHost;
  readonly timed: TimedDevice[] = [];
  /** The boot vCPU's first state and a line for the log. */
  readonly boot: { state: CpuState; summary: string };
  /** fw_cfg, the PIIX3 and port 0x92, when the VM boots through the BIOS. */
  readonly bios?: BiosPlatform;
  /** The virtio devices (disks, network cards, rng, vmmci) on PCI. */
  readonly virtio: VirtioDevices;
  /** The 8042 with its PS/2 keyboard and mouse. */
  readonly keyboard: I8042;
  /** The VGA, when the config has a display. */
  readonly display?: AttachedDisplay;
  /** Set by devices when the VM must end (exit port, power-off, reset). */
  outcome?: Outcome;
  /**
   * Set when the guest touched a timed device: its deadline may have moved,
   * so the run loop polls timers before the next entry (otherwise it polls
   * only when the cached deadline has passed: the hot path stays short).
   */
  timersDirty = true;

  constructor(options: MachineOptions) {
    const { config, accel } = options;
    this.config = config;
    this.accel = accel;
    this.irqchip = config.vm.irqchip;
    this.clock = options.clock ?? hostClock;
    checkHostMemory(config.vm.memoryBytes);
    const layout = memoryLayout(config.vm.memoryBytes, { vgaHole: options.display !== undefined });
    this.layout = layout;
    const bios = options.bios;
    const needsBios = config.boot.kernel === undefined && options.kernelImage === undefined;
    if (needsBios && !bios) {
      throw new Error("A VM without boot.kernel boots through the BIOS: pass options.bios");
    }
    const firmware = needsBios ? bios!.loadFirmwareFor(config) : undefined;
    // Bounded by guest RAM before a byte is read: nothing larger can be loaded.
    const ramBytes = config.vm.memoryBytes;
    const image = firmware
      ? undefined
      : options.kernelImage ?? readImageFile(config.boot.kernel!, ramBytes, "kernel");
    const initrd = config.boot.initrd
      ? readImageFile(config.boot.initrd, ramBytes, "initrd")
      : undefined;
    this.vm = accel.createVm({
      name: config.vm.name,
      ram: firmware ? [...layout.ram, bios!.firmwareRamRange(firmware)] : layout.ram,
      vcpus: config.vm.vcpus,
      irqchip: this.irqchip,
    });
    this.platform = pcPlatform(config.vm.vcpus, { levelIrqs: VIRTIO_IRQS });
    try {
      this.boot = firmware
        ? {
          // KVM starts at the architectural reset vector; vmm(4) as vmd starts it (CS base 0xF0000).
          state: bios!.firmwareEntryState(accel.name === "kvm"),
          summary: `BIOS firmware ${firmware.path} (${firmware.bytes.length / 1024} KiB)`,
        }
        : loadKernel(image!, {
          // Direct boots get our ACPI and MP tables; a BIOS builds its own.
          acpiRsdpGpa: writeFirmwareTables(this.vm.memory, this.platform),
          memory: this.vm.memory,
          e820: layout.e820,
          cmdline: config.boot.cmdline,
          initrd,
          name: config.boot.kernel ?? "(built-in image)",
        });

      const end = (o: Outcome) => {
        this.outcome ??= o;
      };
      if (this.irqchip === "user") {
        this.interrupts = new PcInterrupts({
          vcpus: config.vm.vcpus,
          clock: this.clock,
          ioapicId: this.platform.ioapicId,
          notify: (i) => this.notifyVcpu(i),
        });
        this.pic = this.interrupts.pic;
        this.pio.insert(PORTS.IMCR, PORT_BYTES.IMCR, this.interrupts.imcr);
        this.mmio.insert(IOAPIC_GPA, IOAPIC_SIZE, this.interrupts.ioapic);
        this.mmio.insert(LAPIC_GPA, LAPIC_SIZE, this.#timedPort(this.interrupts.lapic));
        this.timed.push(this.interrupts.lapic);
        this.pio.insert(PORTS.PIC_MASTER, PORT_BYTES.PIC_MASTER, this.pic.master);
        this.pio.insert(PORTS.PIC_SLAVE, PORT_BYTES.PIC_SLAVE, this.pic.slave);
        this.pio.insert(PORTS.ELCR, PORT_BYTES.ELCR, this.pic.elcr);
        this.pit = new Pit8254(this.clock, this.irq(IRQS.PIT));
        this.pio.insert(PORTS.PIT, PORT_BYTES.PIT, this.#timedPort(this.pit));
        this.pio.insert(PORTS.PORT61, PORT_BYTES.PORT61, this.#timedPort(new Port61(this.pit)));
        this.timed.push(this.pit);
      } else {
        // KVM's in-kernel APICs follow the MADT without it; the register only has to exist.
        this.pio.insert(PORTS.IMCR, PORT_BYTES.IMCR, new Imcr());
      }
      this.uart = new Uart16550("com1", this.irq(IRQS.COM1), options.serialOut);
      this.pio.insert(PORTS.COM1, PORT_BYTES.COM1, this.uart);
      const below4g = layout.ram.filter((r) => r.gpa < 2 ** 32).reduce((n, r) => n + r.size, 0);
      this.rtc = new RtcMc146818({
        clock: this.clock,
        irq: this.irq(IRQS.RTC),
        memoryBelow4gBytes: below4g,
        memoryAbove4gBytes: config.vm.memoryBytes - below4g,
      });
      this.pio.insert(PORTS.RTC, PORT_BYTES.RTC, this.#timedPort(this.rtc));
      this.timed.push(this.rtc);
      const kbd = this.keyboard = new I8042(() => end({ kind: "reset" }), {
        keyboardIrq: this.irq(IRQS.KEYBOARD),
        mouseIrq: this.irq(IRQS.MOUSE),
      });
      this.pio.insert(PORTS.I8042_DATA, PORT_BYTES.I8042_DATA, kbd.data);
      this.pio.insert(PORTS.I8042_COMMAND, PORT_BYTES.I8042_COMMAND, kbd.command);
      // A byte access to 0xCF9 (inside PCI's address register) is the reset control register.
      this.pci = new PciHost({ resetControl: new ResetControl(() => end({ kind: "reset" })) });
      this.pio.insert(PORTS.PCI_ADDRESS, PORT_BYTES.PCI_ADDRESS, this.pci.addressPort);
      this.pio.insert(PORTS.PCI_DATA, PORT_BYTES.PCI_DATA, this.pci.dataPort);
      this.post = new PostPort(this.clock);
      this.pio.insert(PORTS.POST, PORT_BYTES.POST, this.post);
      this.pio.insert(
        PORTS.POWER,
        PORT_BYTES.POWER,
        new PowerControl(() => end({ kind: "poweroff" })),
      );
      this.pm = new AcpiPmEvents(this.irq(this.platform.sciIrq));
      this.pio.insert(this.platform.pm1aEventPort, 4, this.pm);
      if (config.debug.exitPort !== undefined) {
        this.pio.insert(
          config.debug.exitPort,
          DEBUG_EXIT_BYTES,
          new DebugExit((status: number) => end({ kind: "exit-port", status })),
        );
      }
      if (firmware) {
        this.bios = bios!.attachBiosPlatform({
          config,
          pio: this.pio,
          pci: this.pci,
          rtc: this.rtc,
          memory: this.vm.memory,
          ram: layout.ram,
          reset: () => end({ kind: "reset" }),
          debugLog: biosDebugLog(),
          vgaBios: options.display ? bios!.readVgaBios() : undefined,
        }, firmware);
      }
      // Virtio devices take the PCI slots after the host bridge (and the PIIX3).
      const router = this.bios
        ? new bios!.PirqRouter(this.bios.isa, (irq) => this.irq(irq))
        : undefined;
      this.virtio = attachVirtioDevices(this, {
        firmwareAssignsBars: router !== undefined,
        pciIrq: router && ((slot) => router.lineFor(slot)),
        scsi: options.scsi,
      });
      if (this.bios) {
        const disk = this.virtio.all.find((d) => d.backend === this.virtio.blks[0]);
        const cd = this.virtio.all.find((d) => d.backend === this.virtio.scsi);
        const order = [
          ...(disk ? [{ device: disk }] : []),
          ...(cd ? [{ device: cd, scsi: true }] : []),
        ];
        if (config.boot.device === "cdrom") order.reverse();
        bios!.setBootOrder(this.bios.fwCfg, this.pci, order);
      }
      if (options.display) {
        this.display = options.display.attach(this, options.display.shared, {
          firmware: this.bios !== undefined,
        });
        this.timed.push(this.display.input);
      }
      this.vcpu = this.vm.createVcpu(0, this.boot.state);
    } catch (e) {
      (this as { virtio?: VirtioDevices }).virtio?.close();
      this.vm.close();
      throw e;
    }
  }

  /** Wraps a timed device's registers so any access marks the timers dirty. */
  #timedPort(device: BusDevice): BusDevice {
    return {
      name: device.name,
      read: (offset, data) => {
        device.read(offset, data);
        this.timersDirty = true;
      },
      write: (offset, data) => {
        device.write(offset, data);
        this.timersDirty = true;
      },
    };
  }

  /**
   * Wakes vCPU `index` after an interrupt was delivered to its local APIC
   * (vCPU 0 is this thread: it looks at its APIC before every entry).
   */
  notifyVcpu: (index: number) => void = () => {};

  /**
   * Delivers an MSI (a PCI function's MSI-X message): onto our APIC bus, or
   * into KVM's in-kernel APICs. Messages outside the interrupt window are dropped.
   */
  msi = (address: number, data: number): void => {
    if (this.interrupts) {
      const m = msiMessage(address, data);
      if (m) this.interrupts.bus.deliver(m);
      else guestLog.log(`msi: message to 0x${address.toString(16)} (not an APIC) dropped`);
    } else {
      this.vm.signalMsi?.(address, data);
    }
  };

  /** The interrupt line `irq`: our PIC and I/O APIC, or the in-kernel irqchip. */
  irq(irq: number): IrqLine {
    // Several devices may share a line (the SCI and a PCI INTx on IRQ 9): wired-OR them.
    let shared = this.#sharedLines.get(irq);
    if (!shared) {
      const vm = this.vm;
      const line = this.interrupts?.line(irq) ?? { setLevel: (high) => vm.setIrqLine(irq, high) };
      shared = { line, high: 0 };
      this.#sharedLines.set(irq, shared);
    }
    const s = shared;
    let mine = false;
    return {
      setLevel: (high) => {
        if (high !== mine) {
          mine = high;
          s.high += high ? 1 : -1;
        }
        s.line.setLevel(s.high > 0);
      },
    };
  }

  readonly #sharedLines = new Map<number, { line: IrqLine; high: number }>();

  /** Brings every timed device up to now. */
  pollTimers(nowNs: number = this.clock.nowNs()): void {
    for (const d of this.timed) d.poll(nowNs);
  }

  /** The earliest time a timed device needs attention, or Infinity. */
  nextDeadlineNs(): number {
    let t = Infinity;
    for (const d of this.timed) t = Math.min(t, d.nextDeadlineNs());
    return t;
  }

  close(): void {
    try {
      this.virtio.close();
      this.vcpu.close();
    } finally {
      this.vm.close();
    }
  }
}

// ---- interrupt wiring (irqchip "user") ----

/*
 * The PC's interrupt wiring for irqchip "user": the 8259 pair, the I/O
 * APIC, one local APIC per vCPU on a shared APIC bus, and the IMCR that
 * says whether the 8259's INTR goes straight to the BSP (PIC mode, the
 * power-up state) or through the local APIC's LINT0 (APIC mode).
 *
 * Every ISA interrupt line drives both the 8259 input and the matching I/O
 * APIC input (IRQ 0 -> input 2, as the MADT's override says); the I/O APIC's
 * entries start masked, so a guest that never programs it sees the 8259
 * alone, and one that switched masks the 8259.
 *
 * Threads: this object lives on the device thread (vCPU 0's), like every
 * device that raises a line. Local APICs of other vCPUs live on their own
 * threads; they share only their {@link ApicRegisterFile}s (one
 * SharedArrayBuffer, {@link PcInterrupts.apicBuffer}) and send EOIs here
 * through {@link EoiMailbox}.
 */

/**
 * The IMCR (interrupt mode configuration register, MP spec 3.6.2.1): write
 * 0x70 to port 0x22 to select it, then bit 0 at port 0x23: 1 = APIC mode.
 */
export class Imcr implements BusDevice {
  readonly name = "imcr";
  #select = 0;
  /** True once the guest switched to symmetric I/O (APIC) mode. */
  apicMode = false;

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset === 0) data[0] = this.#select;
    else if (this.#select === 0x70) data[0] = this.apicMode ? 1 : 0;
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === 0) this.#select = data[0];
    else if (this.#select === 0x70) this.apicMode = (data[0] & 1) !== 0;
  }
}

/**
 * EOIs of level-triggered vectors from local APICs on other threads: a
 * 256-bit set the device thread drains into the I/O APIC.
 */
export class EoiMailbox {
  readonly words: Int32Array;
  static readonly BYTES = 32;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(EoiMailbox.BYTES)) {
    this.words = new Int32Array(buffer, 0, 8);
  }

  post(vector: number): void {
    Atomics.or(this.words, vector >> 5, 1 << (vector & 31));
  }

  /** Calls `eoi` for every posted vector (and clears them). */
  drain(eoi: (vector: number) => void): void {
    for (let w = 0; w < 8; w++) {
      if (Atomics.load(this.words, w) === 0) continue;
      let bits = Atomics.exchange(this.words, w, 0);
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits);
        bits &= ~(1 << b);
        eoi(w * 32 + b);
      }
    }
  }
}

/** What {@link PcInterrupts} needs. */
export interface PcInterruptsOptions {
  vcpus: number;
  clock: Clock;
  ioapicId: number;
  /** Wakes vCPU `index` (out of HLT or `run()`) after something was delivered to it. */
  notify: (index: number) => void;
}

/** The user-space interrupt controllers of a PC (see the module doc). */
export class PcInterrupts {
  readonly pic = new Pic8259Pair();
  readonly imcr = new Imcr();
  readonly ioapic: IoApic;
  readonly bus: ApicBus;
  /** vCPU 0's local APIC (the others are built on their threads from {@link apicBuffer}). */
  readonly lapic: LocalApic;
  readonly apicBuffer: SharedArrayBuffer;
  readonly eoiMailbox = new EoiMailbox();

  constructor(options: PcInterruptsOptions) {
    this.apicBuffer = new SharedArrayBuffer(ApicRegisterFile.BYTES * options.vcpus);
    const files = apicFiles(this.apicBuffer, options.vcpus);
    this.bus = new ApicBus(files, options.notify);
    this.ioapic = new IoApic(this.bus, options.ioapicId);
    this.lapic = new LocalApic({
      id: 0,
      regs: files[0],
      clock: options.clock,
      bus: this.bus,
      bsp: true,
      eoiBroadcast: (v) => this.ioapic.endOfInterrupt(v),
    });
    // Other vCPUs' APIC IDs are set here too, so the bus can address them before they start.
    for (let i = 1; i < options.vcpus; i++) files[i].set(2, i << 24);
  }

  /** ISA interrupt `irq` as a line into both the 8259 and the I/O APIC. */
  line(irq: number): IrqLine {
    const pic = this.pic.line(irq);
    const gsi = isaIrqToGsi(irq);
    return {
      setLevel: (high) => {
        pic.setLevel(high);
        this.ioapic.setPin(gsi, high);
      },
    };
  }

  /** Whether the 8259's INTR reaches the BSP: PIC mode, or LINT0 in ExtINT mode. */
  #picConnected(): boolean {
    return !this.imcr.apicMode || this.lapic.acceptsPicInterrupts;
  }

  /** Folds in what other threads delivered (EOIs; ExtINT messages). */
  #collect(): void {
    this.eoiMailbox.drain((v) => this.ioapic.endOfInterrupt(v));
    const events = this.lapic.takeEvents();
    if (events?.extint) this.#extint = true;
    if (events?.nmi) this.#nmi = true;
    if (events?.init) guestLog.log("apic: INIT to the bootstrap processor ignored");
  }

  #extint = false;
  #nmi = false;

  /** Takes a pending NMI for the BSP (an NMI IPI or I/O APIC NMI entry). */
  takeNmi(): boolean {
    this.#collect();
    const nmi = this.#nmi;
    this.#nmi = false;
    return nmi;
  }

  /** Whether the BSP has an interrupt to take. */
  hasInterrupt(): boolean {
    this.#collect();
    if (this.lapic.hasInterrupt()) return true;
    return (this.#picConnected() || this.#extint) && this.pic.hasInterrupt();
  }

  /** The INTA cycle on the BSP: the local APIC's vector first, else the 8259's. */
  acknowledge(): number {
    if (this.lapic.hasInterrupt()) return this.lapic.acknowledge();
    this.#extint = false;
    return this.pic.acknowledge();
  }
}

/** The per-vCPU register files inside an APIC buffer. */
export function apicFiles(buffer: SharedArrayBuffer, vcpus: number): ApicRegisterFile[] {
  return Array.from(
    { length: vcpus },
    (_, i) => new ApicRegisterFile(buffer, i * ApicRegisterFile.BYTES),
  );
}
