/**
 * The register file of a standard VGA with the Bochs VBE extensions, kept in
 * one buffer so that two threads can share it: the vCPU thread's device model
 * writes it, the display thread's renderer reads it (a SharedArrayBuffer in
 * the VM process, a plain ArrayBuffer in tests).
 *
 * Layout of the buffer (bytes): sequencer, graphics controller, CRTC and
 * attribute controller register arrays, the 256-entry DAC, the DISPI
 * registers (16-bit) and a few latches. Nothing here is interpreted: the
 * device model (`vga.ts`) and the renderer (`render.ts`) give it meaning.
 *
 * @module
 */

/** Sequencer registers (index 0x3C4). */
export const SEQ_COUNT = 8;
/** Graphics controller registers (index 0x3CE). */
export const GR_COUNT = 16;
/** CRTC registers (index 0x3D4). */
export const CRTC_COUNT = 32;
/** Attribute controller registers (index 0x3C0). */
export const AR_COUNT = 32;
/** DISPI registers (index 0x1CE). */
export const DISPI_COUNT = 16;

/** Byte offsets of the parts of the register buffer. */
const OFF_SEQ = 0;
const OFF_GR = OFF_SEQ + SEQ_COUNT;
const OFF_CRTC = OFF_GR + GR_COUNT;
const OFF_AR = OFF_CRTC + CRTC_COUNT;
const OFF_DAC = OFF_AR + AR_COUNT;
const OFF_MISC = OFF_DAC + 256 * 3;
const OFF_DISPI = 1024;
const OFF_GEN = OFF_DISPI + DISPI_COUNT * 2;

/** Size of the register buffer. */
export const VGA_STATE_BYTES = 1088;

/** Index into {@link VgaState.misc}. */
export const MISC = {
  /** Miscellaneous output register (0x3C2 write, 0x3CC read). */
  OUTPUT: 0,
  SEQ_INDEX: 1,
  GR_INDEX: 2,
  CRTC_INDEX: 3,
  /** Attribute index, with bit 5 = palette address source (display enabled). */
  AR_INDEX: 4,
  /** 0: next 0x3C0 write is an index; 1: it is data. */
  AR_FLIPFLOP: 5,
  DAC_WRITE_INDEX: 6,
  DAC_READ_INDEX: 7,
  /** Which of R, G, B the next 0x3C9 access is (0-2). */
  DAC_WRITE_COMPONENT: 8,
  DAC_READ_COMPONENT: 9,
  /** 0x3C7 read: 0 after a read-index write (reading), 3 after a write-index write. */
  DAC_STATE: 10,
  PEL_MASK: 11,
  FEATURE: 12,
  /** Toggles on input-status reads so retrace polling loops end. */
  RETRACE: 13,
  DISPI_INDEX: 14,
} as const;

/** Views over the shared register buffer. */
export class VgaState {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly seq: Uint8Array;
  readonly gr: Uint8Array;
  readonly crtc: Uint8Array;
  readonly ar: Uint8Array;
  /** 256 colours x (R, G, B), 6 bits each unless DISPI's 8-bit DAC is on. */
  readonly dac: Uint8Array;
  readonly misc: Uint8Array;
  readonly dispi: Uint16Array;
  /** Bumped by the device on every change the renderer must notice (mode, palette, VRAM). */
  readonly generation: Int32Array;

  constructor(buffer: ArrayBuffer | SharedArrayBuffer = new ArrayBuffer(VGA_STATE_BYTES)) {
    if (buffer.byteLength < VGA_STATE_BYTES) {
      throw new RangeError(`VGA state needs ${VGA_STATE_BYTES} bytes, got ${buffer.byteLength}`);
    }
    this.buffer = buffer;
    this.seq = new Uint8Array(buffer, OFF_SEQ, SEQ_COUNT);
    this.gr = new Uint8Array(buffer, OFF_GR, GR_COUNT);
    this.crtc = new Uint8Array(buffer, OFF_CRTC, CRTC_COUNT);
    this.ar = new Uint8Array(buffer, OFF_AR, AR_COUNT);
    this.dac = new Uint8Array(buffer, OFF_DAC, 256 * 3);
    this.misc = new Uint8Array(buffer, OFF_MISC, 16);
    this.dispi = new Uint16Array(buffer, OFF_DISPI, DISPI_COUNT);
    this.generation = new Int32Array(buffer, OFF_GEN, 1);
  }

  /** Notes a visible change. */
  touch(): void {
    Atomics.add(this.generation, 0, 1);
  }
}
