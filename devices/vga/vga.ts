/**
 * A standard VGA with the Bochs VBE ("DISPI") extensions: the programming
 * model of QEMU's `-vga std`, which SeaBIOS's `vgabios-stdvga.bin`, Linux's
 * bochs-drm and OpenBSD's vga(4) drive.
 *
 * | where | device | what |
 * | --- | --- | --- |
 * | ports 0x3C0-0x3DF | {@link Vga.ports} | attribute, sequencer, graphics, CRTC, DAC, misc and status registers |
 * | ports 0x1CE-0x1D0 | {@link Vga.dispi} | DISPI index (0x1CE) and data (0x1CF), 16-bit |
 * | MMIO 0xA0000-0xBFFFF | {@link Vga.window} | the legacy window: planar memory, or a 64 KiB bank of VRAM in DISPI modes |
 * | PCI BAR 0 | the VRAM itself | the linear framebuffer, mapped as guest RAM: writes never exit |
 *
 * VRAM is one byte array: its first 256 KiB are the four 64 KiB planes,
 * interleaved (plane p of offset o at `4 * o + p`), so chain-4 (mode 13h)
 * and DISPI modes see it as linear memory. Odd/even addressing (text modes)
 * puts CPU address `a` at offset `a >> 1` of plane `a & 1`: characters in
 * plane 0, attributes in plane 1, the font in plane 2, as the BIOS loads it.
 *
 * Reads of write-only registers return what was last written; unknown
 * indexes read 0xFF and ignore writes (logged, rate-limited).
 *
 * @example
 * ```ts
 * import { Vga } from "./vga.ts";
 * const vga = new Vga({ vram: new Uint8Array(1 << 20) });
 * vga.dispi.write(0, Uint8Array.of(0x01, 0x00)); // DISPI index 1: XRES
 * vga.dispi.write(1, Uint8Array.of(0x20, 0x03)); // 800
 * ```
 * @module
 */

import { type BusDevice, getLe, guestLog, setLe } from "../../core/device.ts";
import { MISC, VgaState } from "./state.ts";

/** DISPI register indexes. */
export const DISPI = {
  ID: 0,
  XRES: 1,
  YRES: 2,
  BPP: 3,
  ENABLE: 4,
  BANK: 5,
  VIRT_WIDTH: 6,
  VIRT_HEIGHT: 7,
  X_OFFSET: 8,
  Y_OFFSET: 9,
  VIDEO_MEMORY_64K: 10,
} as const;

/** DISPI versions a driver may ask for (written to the ID register). */
export const DISPI_ID0 = 0xb0c0;
/** The newest version we implement (VIDEO_MEMORY_64K exists from ID5 on... ID4 already). */
export const DISPI_ID5 = 0xb0c5;

/** ENABLE register bits. */
export const DISPI_ENABLED = 0x01;
/** Reads of XRES/YRES/BPP return the maxima while set. */
export const DISPI_GETCAPS = 0x02;
/** The DAC takes 8-bit components. */
export const DISPI_8BIT_DAC = 0x20;
/** The linear framebuffer is in use (informational). */
export const DISPI_LFB_ENABLED = 0x40;
/** Do not clear VRAM on enable. */
export const DISPI_NOCLEARMEM = 0x80;

/** Largest mode we offer (the 1920x1080x32 fits with room). */
export const DISPI_MAX_XRES = 2560;
/** Largest height. */
export const DISPI_MAX_YRES = 1600;
/** Largest depth. */
export const DISPI_MAX_BPP = 32;
const DISPI_BPPS = [4, 8, 15, 16, 24, 32];

/** Bytes of planar memory (4 planes of 64 KiB). */
export const VGA_PLANAR_BYTES = 256 * 1024;

/** PCI identity of the Bochs/QEMU standard VGA. */
export const STDVGA_PCI = { vendorId: 0x1234, deviceId: 0x1111, classCode: 0x030000 } as const;

/** Graphics controller register numbers. */
const GR_SET_RESET = 0;
const GR_ENABLE_SET_RESET = 1;
const GR_COLOR_COMPARE = 2;
const GR_ROTATE = 3;
const GR_READ_MAP = 4;
const GR_MODE = 5;
const GR_MISC = 6;
const GR_COLOR_DONT_CARE = 7;
const GR_BIT_MASK = 8;
/** Sequencer: map mask and memory mode. */
const SR_MAP_MASK = 2;
const SR_MEMORY_MODE = 4;
const SR4_CHAIN4 = 0x08;
const SR4_ODD_EVEN_OFF = 0x04;
/** GR5: odd/even (host addressing). */
const GR5_ODD_EVEN = 0x10;

/** Writable-bit masks of the register files (0: a read-only or absent register). */
const SEQ_MASK = [0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0, 0, 0];
const GR_MASK = [0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff];
const CRTC_REGS = 0x19;
const AR_REGS = 0x15;

/** What building a VGA needs. */
export interface VgaOptions {
  /** The VRAM (at least 256 KiB; the LFB BAR's size). Shared with the renderer. */
  vram: Uint8Array;
  /** Shared register state (a fresh one when absent). */
  state?: VgaState;
}

/** The standard VGA's registers and memory window. */
export class Vga {
  readonly state: VgaState;
  readonly vram: Uint8Array;
  /** Ports 0x3C0-0x3DF. */
  readonly ports: BusDevice;
  /** Ports 0x1CE-0x1D0. */
  readonly dispi: BusDevice;
  /** MMIO 0xA0000-0xBFFFF. */
  readonly window: BusDevice;
  /** The four latches, loaded by every planar read. */
  #latch = new Uint8Array(4);

  constructor(options: VgaOptions) {
    if (options.vram.length < VGA_PLANAR_BYTES || options.vram.length % 65536 !== 0) {
      throw new RangeError(
        `VGA memory must be a multiple of 64 KiB and at least 256 KiB, not ${options.vram.length}`,
      );
    }
    this.vram = options.vram;
    this.state = options.state ?? new VgaState();
    const s = this.state;
    s.misc[MISC.PEL_MASK] = 0xff;
    s.dispi[DISPI.ID] = DISPI_ID5;
    s.dispi[DISPI.XRES] = 640;
    s.dispi[DISPI.YRES] = 480;
    s.dispi[DISPI.BPP] = 8;
    s.dispi[DISPI.VIDEO_MEMORY_64K] = this.vram.length / 65536;
    this.ports = {
      name: "vga",
      read: (offset, data) => this.#readPorts(offset, data),
      write: (offset, data) => this.#writePorts(offset, data),
    };
    this.dispi = {
      name: "vga-dispi",
      read: (offset, data) =>
        setLe(data, offset === 0 ? s.misc[MISC.DISPI_INDEX] : this.#dispiRead()),
      write: (offset, data) => {
        const v = getLe(data);
        if (offset === 0) s.misc[MISC.DISPI_INDEX] = v & 0xff;
        else this.#dispiWrite(v & 0xffff);
      },
    };
    this.window = {
      name: "vga-window",
      read: (offset, data) => {
        for (let i = 0; i < data.length; i++) data[i] = this.#memRead(offset + i);
      },
      write: (offset, data) => {
        for (let i = 0; i < data.length; i++) this.#memWrite(offset + i, data[i]);
        s.touch();
      },
    };
  }

  /** Whether a DISPI (VBE) mode is enabled. */
  get dispiEnabled(): boolean {
    return (this.state.dispi[DISPI.ENABLE] & DISPI_ENABLED) !== 0;
  }

  // Port registers, one byte at a time (16-bit index/data pairs are split).
  #readPorts(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = this.#readPort(0x3c0 + offset + i);
  }

  #writePorts(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) this.#writePort(0x3c0 + offset + i, data[i]);
    this.state.touch();
  }

  #readPort(port: number): number {
    const s = this.state;
    const m = s.misc;
    switch (port) {
      case 0x3c0:
        return m[MISC.AR_INDEX];
      case 0x3c1:
        return s.ar[m[MISC.AR_INDEX] & 0x1f];
      case 0x3c2:
        return 0x10; // input status 0: switch sense
      case 0x3c4:
        return m[MISC.SEQ_INDEX];
      case 0x3c5: {
        const i = m[MISC.SEQ_INDEX];
        return i < SEQ_MASK.length ? s.seq[i] : 0xff;
      }
      case 0x3c6:
        return m[MISC.PEL_MASK];
      case 0x3c7:
        return m[MISC.DAC_STATE];
      case 0x3c8:
        return m[MISC.DAC_WRITE_INDEX];
      case 0x3c9: {
        const c = m[MISC.DAC_READ_COMPONENT];
        const v = s.dac[m[MISC.DAC_READ_INDEX] * 3 + c];
        if (c === 2) {
          m[MISC.DAC_READ_COMPONENT] = 0;
          m[MISC.DAC_READ_INDEX] = (m[MISC.DAC_READ_INDEX] + 1) & 0xff;
        } else m[MISC.DAC_READ_COMPONENT] = c + 1;
        return v;
      }
      case 0x3ca:
        return m[MISC.FEATURE];
      case 0x3cc:
        return m[MISC.OUTPUT];
      case 0x3ce:
        return m[MISC.GR_INDEX];
      case 0x3cf: {
        const i = m[MISC.GR_INDEX];
        return i < GR_MASK.length ? s.gr[i] : 0xff;
      }
      case 0x3d4:
        return m[MISC.CRTC_INDEX];
      case 0x3d5: {
        const i = m[MISC.CRTC_INDEX];
        return i < CRTC_REGS ? s.crtc[i] : 0xff;
      }
      case 0x3da: {
        // Input status 1: reading resets the attribute flip-flop. Display
        // enable (bit 0) and vertical retrace (bit 3) toggle, so loops that
        // wait for retrace or its end both finish.
        m[MISC.AR_FLIPFLOP] = 0;
        m[MISC.RETRACE] ^= 0x09;
        return m[MISC.RETRACE];
      }
      default:
        return 0xff;
    }
  }

  #writePort(port: number, v: number): void {
    const s = this.state;
    const m = s.misc;
    switch (port) {
      case 0x3c0:
        if (m[MISC.AR_FLIPFLOP] === 0) {
          m[MISC.AR_INDEX] = v & 0x3f;
        } else {
          const i = m[MISC.AR_INDEX] & 0x1f;
          if (i < AR_REGS) s.ar[i] = i < 16 ? v & 0x3f : v;
        }
        m[MISC.AR_FLIPFLOP] ^= 1;
        return;
      case 0x3c2:
        m[MISC.OUTPUT] = v;
        return;
      case 0x3c4:
        m[MISC.SEQ_INDEX] = v & 0x07;
        return;
      case 0x3c5: {
        const i = m[MISC.SEQ_INDEX];
        if (SEQ_MASK[i]) s.seq[i] = v & SEQ_MASK[i];
        return;
      }
      case 0x3c6:
        m[MISC.PEL_MASK] = v;
        return;
      case 0x3c7:
        m[MISC.DAC_READ_INDEX] = v;
        m[MISC.DAC_READ_COMPONENT] = 0;
        m[MISC.DAC_STATE] = 0;
        return;
      case 0x3c8:
        m[MISC.DAC_WRITE_INDEX] = v;
        m[MISC.DAC_WRITE_COMPONENT] = 0;
        m[MISC.DAC_STATE] = 3;
        return;
      case 0x3c9: {
        const c = m[MISC.DAC_WRITE_COMPONENT];
        const eight = (s.dispi[DISPI.ENABLE] & DISPI_8BIT_DAC) !== 0;
        s.dac[m[MISC.DAC_WRITE_INDEX] * 3 + c] = eight ? v : v & 0x3f;
        if (c === 2) {
          m[MISC.DAC_WRITE_COMPONENT] = 0;
          m[MISC.DAC_WRITE_INDEX] = (m[MISC.DAC_WRITE_INDEX] + 1) & 0xff;
        } else m[MISC.DAC_WRITE_COMPONENT] = c + 1;
        return;
      }
      case 0x3ce:
        m[MISC.GR_INDEX] = v & 0x0f;
        return;
      case 0x3cf: {
        const i = m[MISC.GR_INDEX];
        if (i < GR_MASK.length) s.gr[i] = v & GR_MASK[i];
        return;
      }
      case 0x3d4:
        m[MISC.CRTC_INDEX] = v & 0x1f;
        return;
      case 0x3d5: {
        const i = m[MISC.CRTC_INDEX];
        if (i >= CRTC_REGS) return;
        // CR11 bit 7 protects CR0-CR7 (except CR7 bit 4, line compare).
        if ((s.crtc[0x11] & 0x80) && i <= 7) {
          if (i === 7) s.crtc[7] = (s.crtc[7] & ~0x10) | (v & 0x10);
          return;
        }
        s.crtc[i] = v;
        return;
      }
      case 0x3da:
        m[MISC.FEATURE] = v;
        return;
      default:
        guestLog.log(() => `vga: write 0x${v.toString(16)} to unused port 0x${port.toString(16)}`);
    }
  }

  // DISPI.
  #dispiRead(): number {
    const s = this.state;
    const i = s.misc[MISC.DISPI_INDEX];
    if (i >= DISPI.VIDEO_MEMORY_64K + 1) return 0xffff;
    if (s.dispi[DISPI.ENABLE] & DISPI_GETCAPS) {
      if (i === DISPI.XRES) return DISPI_MAX_XRES;
      if (i === DISPI.YRES) return DISPI_MAX_YRES;
      if (i === DISPI.BPP) return DISPI_MAX_BPP;
    }
    return s.dispi[i];
  }

  #dispiWrite(v: number): void {
    const s = this.state;
    const d = s.dispi;
    const i = s.misc[MISC.DISPI_INDEX];
    switch (i) {
      case DISPI.ID:
        if (v >= DISPI_ID0 && v <= DISPI_ID5) d[DISPI.ID] = v;
        return;
      case DISPI.XRES:
      case DISPI.YRES:
      case DISPI.BPP:
        // Mode geometry can change only while disabled (as on Bochs).
        if (d[DISPI.ENABLE] & DISPI_ENABLED) return;
        if (i === DISPI.XRES && (v === 0 || v > DISPI_MAX_XRES || v % 8)) return;
        if (i === DISPI.YRES && (v === 0 || v > DISPI_MAX_YRES)) return;
        if (i === DISPI.BPP) {
          if (v === 0) v = 8;
          if (!DISPI_BPPS.includes(v)) return;
        }
        d[i] = v;
        return;
      case DISPI.BANK:
        if (v < this.vram.length / 65536) d[DISPI.BANK] = v;
        return;
      case DISPI.ENABLE:
        this.#dispiEnable(v);
        return;
      case DISPI.VIRT_WIDTH: {
        const stride = this.#bytesPerLine(v);
        if (v < d[DISPI.XRES] || stride * d[DISPI.YRES] > this.vram.length) return;
        d[DISPI.VIRT_WIDTH] = v;
        d[DISPI.VIRT_HEIGHT] = Math.min(0xffff, Math.floor(this.vram.length / stride));
        return;
      }
      case DISPI.X_OFFSET:
      case DISPI.Y_OFFSET:
        d[i] = v;
        this.#clampOffsets();
        return;
      default:
        guestLog.log(() => `vga: write to read-only or unknown DISPI register ${i}`);
    }
  }

  #dispiEnable(v: number): void {
    const s = this.state;
    const d = s.dispi;
    const was = d[DISPI.ENABLE] & DISPI_ENABLED;
    if ((v & DISPI_ENABLED) && !was) {
      const stride = this.#bytesPerLine(d[DISPI.XRES]);
      if (stride * d[DISPI.YRES] > this.vram.length) {
        guestLog.log(() =>
          `vga: DISPI mode ${d[DISPI.XRES]}x${d[DISPI.YRES]}x${d[DISPI.BPP]} exceeds VRAM`
        );
        return;
      }
      d[DISPI.VIRT_WIDTH] = d[DISPI.XRES];
      d[DISPI.VIRT_HEIGHT] = Math.min(0xffff, Math.floor(this.vram.length / stride));
      d[DISPI.X_OFFSET] = 0;
      d[DISPI.Y_OFFSET] = 0;
      d[DISPI.BANK] = 0;
      if (!(v & DISPI_NOCLEARMEM)) this.vram.fill(0, 0, stride * d[DISPI.YRES]);
      // Banked access through the window reads VRAM linearly.
      s.gr[GR_MISC] = (s.gr[GR_MISC] & ~0x0c) | 0x05;
      s.seq[SR_MEMORY_MODE] |= SR4_CHAIN4;
    }
    d[DISPI.ENABLE] = v & (DISPI_ENABLED | DISPI_GETCAPS | DISPI_8BIT_DAC | DISPI_LFB_ENABLED |
      DISPI_NOCLEARMEM);
  }

  #bytesPerLine(width: number): number {
    const bpp = this.state.dispi[DISPI.BPP];
    return bpp === 4 ? width >> 1 : width * ((bpp + 7) >> 3);
  }

  #clampOffsets(): void {
    const d = this.state.dispi;
    const stride = this.#bytesPerLine(d[DISPI.VIRT_WIDTH] || d[DISPI.XRES]);
    const maxY = Math.floor(this.vram.length / Math.max(1, stride)) - d[DISPI.YRES];
    if (d[DISPI.Y_OFFSET] > maxY) d[DISPI.Y_OFFSET] = Math.max(0, maxY);
    if (d[DISPI.X_OFFSET] + d[DISPI.XRES] > (d[DISPI.VIRT_WIDTH] || d[DISPI.XRES])) {
      d[DISPI.X_OFFSET] = 0;
    }
  }

  // The legacy window. `offset` is relative to 0xA0000.
  #decode(offset: number): number {
    // GR6 bits 2-3: the part of A0000-BFFFF that the VGA answers.
    switch ((this.state.gr[GR_MISC] >> 2) & 3) {
      case 0:
        return offset;
      case 1:
        return offset < 0x10000 ? offset : -1;
      case 2:
        return offset >= 0x10000 && offset < 0x18000 ? offset - 0x10000 : -1;
      default:
        return offset >= 0x18000 ? offset - 0x18000 : -1;
    }
  }

  #memRead(offset: number): number {
    const s = this.state;
    if (this.dispiEnabled && s.dispi[DISPI.BPP] > 4) {
      if (offset >= 0x10000) return 0xff;
      return this.vram[s.dispi[DISPI.BANK] * 0x10000 + offset];
    }
    let a = this.#decode(offset);
    if (a < 0) return 0xff;
    const sr4 = s.seq[SR_MEMORY_MODE];
    if (sr4 & SR4_CHAIN4) return this.vram[a & 0xffff];
    let plane: number;
    // GR5 bit 4: host reads use odd/even addressing.
    if (s.gr[GR_MODE] & GR5_ODD_EVEN) {
      plane = (s.gr[GR_READ_MAP] & 2) | (a & 1);
      a >>= 1;
    } else {
      plane = s.gr[GR_READ_MAP] & 3;
    }
    a &= 0xffff;
    const l = this.#latch;
    for (let p = 0; p < 4; p++) l[p] = this.vram[4 * a + p];
    if (!(s.gr[GR_MODE] & 0x08)) return l[plane];
    // Read mode 1: a 1 for every pixel whose colour matches the compare value.
    const cmp = s.gr[GR_COLOR_COMPARE];
    const care = s.gr[GR_COLOR_DONT_CARE];
    let diff = 0;
    for (let p = 0; p < 4; p++) {
      if (care & (1 << p)) diff |= l[p] ^ ((cmp >> p) & 1 ? 0xff : 0);
    }
    return ~diff & 0xff;
  }

  #memWrite(offset: number, v: number): void {
    const s = this.state;
    if (this.dispiEnabled && s.dispi[DISPI.BPP] > 4) {
      if (offset < 0x10000) this.vram[s.dispi[DISPI.BANK] * 0x10000 + offset] = v;
      return;
    }
    let a = this.#decode(offset);
    if (a < 0) return;
    const sr4 = s.seq[SR_MEMORY_MODE];
    let mask = s.seq[SR_MAP_MASK];
    if (sr4 & SR4_CHAIN4) {
      if (mask & (1 << (a & 3))) this.vram[a & 0xffff] = v;
      return;
    }
    // SR4 bit 2 clear: host writes use odd/even addressing (text modes).
    if (!(sr4 & SR4_ODD_EVEN_OFF)) {
      mask &= a & 1 ? 0x0a : 0x05;
      a >>= 1;
    }
    a &= 0xffff;
    const gr = s.gr;
    const rot = gr[GR_ROTATE] & 7;
    const op = (gr[GR_ROTATE] >> 3) & 3;
    const l = this.#latch;
    let bitMask = gr[GR_BIT_MASK];
    const planes = [0, 0, 0, 0];
    switch (gr[GR_MODE] & 3) {
      case 1:
        for (let p = 0; p < 4; p++) if (mask & (1 << p)) this.vram[4 * a + p] = l[p];
        return;
      case 0: {
        const d = ((v >> rot) | (v << (8 - rot))) & 0xff;
        for (let p = 0; p < 4; p++) {
          planes[p] = gr[GR_ENABLE_SET_RESET] & (1 << p)
            ? (gr[GR_SET_RESET] & (1 << p) ? 0xff : 0)
            : d;
        }
        break;
      }
      case 2:
        for (let p = 0; p < 4; p++) planes[p] = v & (1 << p) ? 0xff : 0;
        break;
      default: {
        const d = ((v >> rot) | (v << (8 - rot))) & 0xff;
        bitMask &= d;
        for (let p = 0; p < 4; p++) planes[p] = gr[GR_SET_RESET] & (1 << p) ? 0xff : 0;
        // Write mode 3 applies no logical operation.
        for (let p = 0; p < 4; p++) {
          if (mask & (1 << p)) this.vram[4 * a + p] = (planes[p] & bitMask) | (l[p] & ~bitMask);
        }
        return;
      }
    }
    for (let p = 0; p < 4; p++) {
      if (!(mask & (1 << p))) continue;
      let x = planes[p];
      if (op === 1) x &= l[p];
      else if (op === 2) x |= l[p];
      else if (op === 3) x ^= l[p];
      this.vram[4 * a + p] = (x & bitMask) | (l[p] & ~bitMask & 0xff);
    }
  }
}
