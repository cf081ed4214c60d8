/**
 * The vCPU-thread half of the graphical console: the standard VGA on the
 * buses and on PCI, its framebuffer mapped into the guest, and the console
 * clients' keys and mouse moves fed to the PS/2 devices.
 *
 * The framebuffer (PCI BAR 0) is host memory shared with the display thread.
 * Where the back-end can map memory at run time (KVM) the BAR is guest RAM,
 * remapped when the guest moves it, and guest writes never exit: the display
 * thread finds what changed by comparing tiles at its refresh rate. vmm(4)
 * fixes a VM's memory when it is created, so there the BAR is an MMIO range
 * and every access exits (correct, but slow for large modes; README says so).
 *
 * Threads: the VGA's registers and VRAM are written only here; the display
 * thread reads them. Input events come through a ring that only this thread
 * drains, during the timer poll after an exit or wake-up.
 *
 * @module
 */

import type { DeviceMapping, Vm } from "../accel/types.ts";
import type { Bus } from "../core/bus.ts";
import { guestLog, type TimedDevice } from "../core/device.ts";
import type { I8042 } from "../devices/i8042.ts";
import {
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PciConfigSpace,
  type PciHost,
} from "../devices/pci.ts";
import { KEYS } from "../devices/ps2_keymap.ts";
import { INPUT, openVgaShared, type VgaShared } from "../devices/vga/shared.ts";
import { hostFont8x16, setTextMode3 } from "../devices/vga/text_mode.ts";
import { STDVGA_PCI, Vga } from "../devices/vga/vga.ts";

/** Legacy ports and window of the VGA. */
export { VGA_PORTS } from "../core/ports.ts";
import { VGA_PORTS } from "../core/ports.ts";
/** The legacy memory window. */
export const VGA_WINDOW = { GPA: 0xa0000, BYTES: 0x20000 } as const;
/** Where the framebuffer BAR starts when no firmware assigns it. */
export const VGA_LFB_DEFAULT_GPA = 0xfd000000;

/** What attaching the VGA needs from the machine. */
export interface DisplayHostMachine {
  readonly vm: Vm;
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly pci: PciHost;
  readonly keyboard: I8042;
}

/** What the machine keeps of the display. */
export interface AttachedDisplay {
  readonly vga: Vga;
  /** Drains console input into the PS/2 devices (polled with the timers). */
  readonly input: TimedDevice;
  /** The PCI slot the VGA took. */
  readonly slot: number;
}

/**
 * Puts the VGA on the machine. `firmware`: a BIOS will assign the BAR and
 * set the video mode (its VGA BIOS does); otherwise the BAR is pre-assigned
 * and the VGA starts in 80x25 text mode with `font` (default: the host VGA
 * BIOS's), as a BIOS leaves it.
 */
export function attachDisplay(
  m: DisplayHostMachine,
  shared: VgaShared,
  options: { firmware: boolean; font?: Uint8Array },
): AttachedDisplay {
  const views = openVgaShared(shared);
  const vga = new Vga({ vram: views.vram, state: views.state });
  m.pio.insert(VGA_PORTS.BASE, VGA_PORTS.COUNT, vga.ports);
  m.pio.insert(VGA_PORTS.DISPI, VGA_PORTS.DISPI_COUNT, vga.dispi);
  m.mmio.insert(VGA_WINDOW.GPA, VGA_WINDOW.BYTES, vga.window);

  const slot = m.pci.freeSlot();
  if (slot === undefined) throw new Error("No free PCI slot for the VGA");
  const config = new PciConfigSpace({ ...STDVGA_PCI });
  const lfb = framebufferMapper(m, views.vram, shared.vramAddress);
  config.addMemoryBar(0, shared.vramBytes, lfb, { prefetchable: true });
  m.pci.addDevice(slot, { config });
  if (!options.firmware) {
    const bar = new Uint8Array(4);
    new DataView(bar.buffer).setUint32(0, VGA_LFB_DEFAULT_GPA, true);
    config.write(PCI_BASE_ADDRESS_0, bar);
    config.write(PCI_COMMAND, Uint8Array.of(PCI_COMMAND_MEMORY, 0));
    setTextMode3(vga, options.font ?? hostFont8x16());
  }

  const input: TimedDevice = {
    poll() {
      if (!views.input.pending) return;
      views.input.drain((e) => {
        if (e[0] === INPUT.KEY) {
          const key = KEYS[e[1]];
          if (key) m.keyboard.keyEvent(key, e[2] !== 0);
        } else if (e[0] === INPUT.MOUSE) {
          m.keyboard.mouseEvent(e[1], e[2], e[3]);
        }
      });
    },
    nextDeadlineNs: () => Infinity,
  };
  return { vga, input, slot };
}

/**
 * Follows the framebuffer BAR: maps the VRAM there as guest memory when the
 * back-end can, else routes the range to an MMIO device over the same bytes.
 */
function framebufferMapper(
  m: DisplayHostMachine,
  vram: Uint8Array,
  hostAddress: bigint | undefined,
): (base: number | undefined) => void {
  let mapping: DeviceMapping | undefined;
  let busAt: number | undefined;
  const trap = {
    name: "vga-lfb",
    read: (offset: number, data: Uint8Array) => {
      if (offset + data.length <= vram.length) {
        data.set(vram.subarray(offset, offset + data.length));
      } else data.fill(0xff);
    },
    write: (offset: number, data: Uint8Array) => {
      if (offset + data.length <= vram.length) vram.set(data, offset);
    },
  };
  return (base) => {
    mapping?.unmap();
    mapping = undefined;
    if (busAt !== undefined) m.mmio.remove(trap, busAt);
    busAt = undefined;
    if (base === undefined) return;
    try {
      if (m.vm.mapDeviceMemory && hostAddress !== undefined) {
        mapping = m.vm.mapDeviceMemory(base, hostAddress, vram.length);
      } else {
        m.mmio.insert(base, vram.length, trap);
        busAt = base;
      }
    } catch (e) {
      // A BAR moved onto another device's range: it stops decoding until moved away.
      guestLog.log(
        `vga: framebuffer BAR at 0x${base.toString(16)} not mapped: ${(e as Error).message}`,
      );
    }
  };
}
