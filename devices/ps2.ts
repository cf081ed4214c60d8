/**
 * The two devices behind an 8042: a PS/2 keyboard (scan code sets 1 and 2)
 * and a PS/2 mouse (standard 3-byte packets, stream mode). Each holds a
 * bounded queue of bytes for the controller; the controller pulls one byte
 * at a time into its output buffer.
 *
 * Commands follow the IBM PS/2 technical reference: every command is
 * acknowledged with 0xFA; commands with a parameter take the next byte;
 * unknown ones are answered 0xFE (resend).
 *
 * @module
 */

import { type KeyCodes, scanBytes } from "./ps2_keymap.ts";

/** Acknowledge. */
export const PS2_ACK = 0xfa;
/** Resend (the command was not understood). */
export const PS2_RESEND = 0xfe;
/** Self-test passed (after reset). */
export const PS2_BAT_OK = 0xaa;

/** A keyboard's internal buffer is small; a flooding client loses keys, not memory. */
const KBD_QUEUE_MAX = 64;
const MOUSE_QUEUE_MAX = 96;

/** A byte queue with a cap; what does not fit is dropped. */
class ByteQueue {
  #bytes: number[] = [];
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  push(...bytes: number[]): boolean {
    if (this.#bytes.length + bytes.length > this.#max) return false;
    this.#bytes.push(...bytes);
    return true;
  }
  shift(): number | undefined {
    return this.#bytes.shift();
  }
  get length(): number {
    return this.#bytes.length;
  }
  clear(): void {
    this.#bytes = [];
  }
}

/** A PS/2 keyboard. */
export class Ps2Keyboard {
  readonly queue: ByteQueue = new ByteQueue(KBD_QUEUE_MAX);
  #set: 1 | 2 = 2;
  #scanning = true;
  #leds = 0;
  /** The command waiting for its parameter. */
  #pending: number | undefined;

  /** The scan code set in use. */
  get scanCodeSet(): 1 | 2 {
    return this.#set;
  }

  /** The LED bits the guest last set (bit 0 scroll, 1 num, 2 caps). */
  get leds(): number {
    return this.#leds;
  }

  /** A key went down or up; returns false when the keyboard's buffer was full. */
  key(key: KeyCodes, down: boolean): boolean {
    if (!this.#scanning) return false;
    return this.queue.push(...scanBytes(key, down, this.#set));
  }

  /** A byte from the guest (through the controller's data port). */
  command(byte: number): void {
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      switch (pending) {
        case 0xed: // set LEDs
          this.#leds = byte & 7;
          this.queue.push(PS2_ACK);
          return;
        case 0xf0: // scan code set: 0 asks, 1/2 select
          if (byte === 0) this.queue.push(PS2_ACK, this.#set);
          else if (byte === 1 || byte === 2) (this.#set = byte), this.queue.push(PS2_ACK);
          else this.queue.push(PS2_RESEND);
          return;
        case 0xf3: // typematic rate: accepted, not modelled
          this.queue.push(PS2_ACK);
          return;
      }
    }
    switch (byte) {
      case 0xed:
      case 0xf0:
      case 0xf3:
        this.#pending = byte;
        this.queue.push(PS2_ACK);
        return;
      case 0xee: // echo
        this.queue.push(0xee);
        return;
      case 0xf2: // identify: MF2 keyboard with translation
        this.queue.push(PS2_ACK, 0xab, 0x83);
        return;
      case 0xf4:
        this.#scanning = true;
        this.queue.push(PS2_ACK);
        return;
      case 0xf5: // disable and restore defaults
        this.#scanning = false;
        this.#set = 2;
        this.queue.push(PS2_ACK);
        return;
      case 0xf6:
        this.#set = 2;
        this.queue.push(PS2_ACK);
        return;
      case 0xff: // reset: acknowledge, then the self-test result
        this.queue.clear();
        this.#set = 2;
        this.#scanning = true;
        this.#leds = 0;
        this.queue.push(PS2_ACK, PS2_BAT_OK);
        return;
      default:
        this.queue.push(PS2_RESEND);
    }
  }
}

/** Mouse buttons as a bit mask: left 1, right 2, middle 4. */
export type MouseButtons = number;

/** A PS/2 mouse. */
export class Ps2Mouse {
  readonly queue: ByteQueue = new ByteQueue(MOUSE_QUEUE_MAX);
  #reporting = false;
  #sampleRate = 100;
  #resolution = 2;
  #scaling21 = false;
  #buttons = 0;
  #pending: number | undefined;

  /** Whether the guest enabled data reporting. */
  get reporting(): boolean {
    return this.#reporting;
  }

  /** A relative movement (dy positive = up) with the buttons held now. */
  move(dx: number, dy: number, buttons: MouseButtons): void {
    this.#buttons = buttons & 7;
    if (!this.#reporting) return;
    // Large moves become several packets of at most 255 counts each way.
    do {
      const x = Math.max(-255, Math.min(255, dx));
      const y = Math.max(-255, Math.min(255, dy));
      dx -= x;
      dy -= y;
      const flags = 0x08 | this.#buttons | (x < 0 ? 0x10 : 0) | (y < 0 ? 0x20 : 0);
      if (!this.queue.push(flags, x & 0xff, y & 0xff)) return;
    } while (dx !== 0 || dy !== 0);
  }

  /** A byte from the guest (after the controller's 0xD4 "write to aux" command). */
  command(byte: number): void {
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      if (pending === 0xf3) this.#sampleRate = byte;
      else this.#resolution = byte & 3;
      this.queue.push(PS2_ACK);
      return;
    }
    switch (byte) {
      case 0xe6:
      case 0xe7:
        this.#scaling21 = byte === 0xe7;
        this.queue.push(PS2_ACK);
        return;
      case 0xe8: // resolution
      case 0xf3: // sample rate
        this.#pending = byte;
        this.queue.push(PS2_ACK);
        return;
      case 0xe9: // status: mode/buttons, resolution, sample rate
        this.queue.push(
          PS2_ACK,
          (this.#reporting ? 0x20 : 0) | (this.#scaling21 ? 0x10 : 0) | this.#buttonsForStatus(),
          this.#resolution,
          this.#sampleRate,
        );
        return;
      case 0xea: // stream mode
      case 0xf0: // remote mode: accepted, we stay in stream mode
        this.queue.push(PS2_ACK);
        return;
      case 0xeb: // read data: one packet with no movement
        this.queue.push(PS2_ACK, 0x08 | this.#buttons, 0, 0);
        return;
      case 0xf2: // device id: standard mouse
        this.queue.push(PS2_ACK, 0x00);
        return;
      case 0xf4:
        this.#reporting = true;
        this.queue.push(PS2_ACK);
        return;
      case 0xf5:
        this.#reporting = false;
        this.queue.push(PS2_ACK);
        return;
      case 0xf6:
        this.#defaults();
        this.queue.push(PS2_ACK);
        return;
      case 0xff:
        this.queue.clear();
        this.#defaults();
        this.queue.push(PS2_ACK, PS2_BAT_OK, 0x00);
        return;
      default:
        this.queue.push(PS2_RESEND);
    }
  }

  #buttonsForStatus(): number {
    // Status byte order: left bit 2, middle bit 1, right bit 0.
    const b = this.#buttons;
    return ((b & 1) << 2) | ((b & 4) >> 1) | ((b & 2) >> 1);
  }

  #defaults(): void {
    this.#reporting = false;
    this.#sampleRate = 100;
    this.#resolution = 2;
    this.#scaling21 = false;
  }
}
