/**
 * The machine: a VmConfig turned into guest memory, two buses, the legacy PC
 * devices, a loaded kernel and vCPU 0 — everything the run loop needs.
 *
 * The machine lives on the vCPU's thread (the devices that exits touch run
 * there); the host side (console, timers, control) talks to it through a
 * {@link VcpuControl}.
 *
 * @module
 */

import type { Accel, IrqchipMode, Vcpu, Vm } from "../accel/types.ts";
import type { VmConfig } from "../config/schema.ts";
import {
  type BusDevice,
  type Clock,
  hostClock,
  type IrqLine,
  type TimedDevice,
} from "../core/device.ts";
import { Uart16550 } from "../devices/uart16550.ts";
import { Pic8259Pair } from "../devices/pic8259.ts";
import { Pit8254, Port61 } from "../devices/pit8254.ts";
import { RtcMc146818 } from "../devices/rtc_mc146818.ts";
import { I8042 } from "../devices/i8042.ts";
import { PciHost } from "../devices/pci.ts";
import { PostPort } from "../devices/post.ts";
import { DebugExit } from "../devices/debug_exit.ts";
import { PowerControl, ResetControl } from "../devices/power.ts";
import { loadKernel } from "../loaders/detect.ts";
import { readImageFile } from "../loaders/image_file.ts";
import type { CpuState } from "../accel/types.ts";
import type { BiosPlatform } from "./bios.ts";
import { attachVirtioDevices, type VirtioDevices } from "../devices/virtio/attach.ts";
import { Bus } from "../core/bus.ts";
import { memoryLayout } from "../core/layout.ts";
import type { VgaShared } from "../devices/vga/shared.ts";
import type { attachDisplay, AttachedDisplay } from "./display.ts";
import { DEBUG_EXIT_BYTES, PORT_BYTES, PORTS } from "../core/ports.ts";

/** Port assignments of the PC machine (vmd's and QEMU's): see core/ports.ts. */
export { PORTS } from "../core/ports.ts";

/** ISA interrupt lines. */
export const IRQS = { PIT: 0, KEYBOARD: 1, COM1: 4, RTC: 8, MOUSE: 12 } as const;

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
    try {
      this.boot = firmware
        ? {
          // KVM starts at the architectural reset vector; vmm(4) as vmd starts it (CS base 0xF0000).
          state: bios!.firmwareEntryState(accel.name === "kvm"),
          summary: `BIOS firmware ${firmware.path} (${firmware.bytes.length / 1024} KiB)`,
        }
        : loadKernel(image!, {
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
        this.pic = new Pic8259Pair();
        this.pio.insert(PORTS.PIC_MASTER, PORT_BYTES.PIC_MASTER, this.pic.master);
        this.pio.insert(PORTS.PIC_SLAVE, PORT_BYTES.PIC_SLAVE, this.pic.slave);
        this.pio.insert(PORTS.ELCR, PORT_BYTES.ELCR, this.pic.elcr);
        this.pit = new Pit8254(this.clock, this.irq(IRQS.PIT));
        this.pio.insert(PORTS.PIT, PORT_BYTES.PIT, this.#timedPort(this.pit));
        this.pio.insert(PORTS.PORT61, PORT_BYTES.PORT61, this.#timedPort(new Port61(this.pit)));
        this.timed.push(this.pit);
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
        this.display = options.display.attach(this, options.display.shared, { firmware: false });
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

  /** The interrupt line `irq`: our PIC, or the in-kernel irqchip. */
  irq(irq: number): IrqLine {
    if (this.pic) return this.pic.line(irq);
    const vm = this.vm;
    return { setLevel: (high) => vm.setIrqLine(irq, high) };
  }

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
