/**
 * The 8042 keyboard controller with a PS/2 keyboard and a PS/2 mouse behind
 * it: guests probe it, read and write its command byte, take keys and mouse
 * packets through IRQ 1 and IRQ 12, and reset the machine through it (the
 * classic reboot path).
 *
 * | port | device | read | write |
 * | --- | --- | --- | --- |
 * | 0x60 | `data` | output buffer (0 when empty) | command parameter, or a byte for the keyboard |
 * | 0x64 | `command` | status register | controller command |
 *
 * Commands: 0x20 read command byte, 0x60 write command byte, 0xA7/0xA8
 * disable/enable aux, 0xA9 aux interface test (0x00), 0xAA self test
 * (answers 0x55), 0xAB keyboard interface test (answers 0x00), 0xAD/0xAE
 * disable/enable keyboard, 0xD0 read output port, 0xD1 write output port
 * (bit 0 clear resets the CPU), 0xD2/0xD3 write the keyboard/aux output
 * buffer, 0xD4 send the next byte to the mouse, 0xF0-0xFF pulse output lines
 * (bit 0 clear pulses reset: 0xFE is the reboot command). Others are ignored.
 *
 * The output buffer holds one byte; controller replies come first, then the
 * keyboard's bytes, then the mouse's. With translation on (command byte bit
 * 6) keyboard bytes go from scan code set 2 to set 1 on their way out, as on
 * a PC. IRQ 1 (keyboard) and IRQ 12 (mouse) are high while a byte of theirs
 * waits and their interrupt bit is set.
 *
 * @example
 * ```ts
 * import { I8042 } from "./i8042.ts";
 * let resets = 0;
 * const kbc = new I8042(() => resets++);
 * kbc.command.write(0, Uint8Array.of(0xfe));
 * resets; // 1
 * ```
 * @module
 */

import { type BusDevice, guestLog, type IrqLine } from "../core/device.ts";
import { type MouseButtons, Ps2Keyboard, Ps2Mouse } from "./ps2.ts";
import { type KeyCodes, SET2_TO_SET1 } from "./ps2_keymap.ts";

/** Status: output buffer full (data for the host at 0x60). */
export const I8042_STATUS_OBF = 0x01;
/** Status: input buffer full (never: commands are taken at once). */
export const I8042_STATUS_IBF = 0x02;
/** Status: system flag (self test passed). */
export const I8042_STATUS_SYS = 0x04;
/** Status: the last write was to the command port. */
export const I8042_STATUS_CMD = 0x08;
/** Status: keyboard not inhibited. */
export const I8042_STATUS_UNLOCKED = 0x10;
/** Status: the byte in the output buffer is from the mouse. */
export const I8042_STATUS_AUX_OBF = 0x20;

/** Command byte: keyboard interrupt enable. */
export const I8042_CTR_KBD_INT = 0x01;
/** Command byte: aux interrupt enable. */
export const I8042_CTR_AUX_INT = 0x02;
/** Command byte: system flag. */
export const I8042_CTR_SYS = 0x04;
/** Command byte: keyboard clock disabled. */
export const I8042_CTR_KBD_DISABLE = 0x10;
/** Command byte: aux clock disabled. */
export const I8042_CTR_AUX_DISABLE = 0x20;
/** Command byte: scan-code translation. */
export const I8042_CTR_XLATE = 0x40;

/** Output port: CPU reset line (active low). */
export const I8042_OUT_RESET = 0x01;
/** Output port: A20 gate. */
export const I8042_OUT_A20 = 0x02;

/** Controller commands. */
export const I8042_CMD_READ_CTR = 0x20;
/** Write the command byte (parameter at 0x60). */
export const I8042_CMD_WRITE_CTR = 0x60;
/** Disable the aux port. */
export const I8042_CMD_AUX_DISABLE = 0xa7;
/** Enable the aux port. */
export const I8042_CMD_AUX_ENABLE = 0xa8;
/** Controller self test; answers 0x55. */
export const I8042_CMD_SELF_TEST = 0xaa;
/** Keyboard interface test; answers 0x00 (no fault). */
export const I8042_CMD_KBD_TEST = 0xab;
/** Disable the keyboard port. */
export const I8042_CMD_KBD_DISABLE = 0xad;
/** Enable the keyboard port. */
export const I8042_CMD_KBD_ENABLE = 0xae;
/** Read the output port. */
export const I8042_CMD_READ_OUTPUT = 0xd0;
/** Write the output port (parameter at 0x60). */
export const I8042_CMD_WRITE_OUTPUT = 0xd1;
/** Aux interface test; answers 0x00. */
export const I8042_CMD_AUX_TEST = 0xa9;
/** Put the parameter in the output buffer as if from the keyboard. */
export const I8042_CMD_WRITE_KBD_OUT = 0xd2;
/** Put the parameter in the output buffer as if from the mouse. */
export const I8042_CMD_WRITE_AUX_OUT = 0xd3;
/** Send the parameter to the mouse. */
export const I8042_CMD_WRITE_AUX = 0xd4;
/** Pulse output port bit 0: reset the CPU. */
export const I8042_CMD_RESET = 0xfe;

/** The self-test pass answer. */
export const I8042_SELF_TEST_OK = 0x55;

/** Command byte after the BIOS: keyboard interrupt, system flag, translation. */
const CTR_DEFAULT = I8042_CTR_KBD_INT | I8042_CTR_SYS | I8042_CTR_XLATE;
/** Output port after the BIOS: CPU running, A20 enabled. */
const OUTPUT_PORT_DEFAULT = I8042_OUT_RESET | I8042_OUT_A20;
/** A guest that never reads replies cannot grow the queue beyond this. */
const OUTPUT_QUEUE_MAX = 16;

/** What the controller is wired to. */
export interface I8042Options {
  /** IRQ 1. */
  keyboardIrq?: IrqLine;
  /** IRQ 12. */
  mouseIrq?: IrqLine;
}

/** Where the byte in the output buffer came from. */
type Source = "controller" | "keyboard" | "mouse";

/** The 8042 controller; register `data` at 0x60 and `command` at 0x64 (length 1 each). */
export class I8042 {
  /** Port 0x60. */
  readonly data: BusDevice;
  /** Port 0x64. */
  readonly command: BusDevice;
  readonly keyboard: Ps2Keyboard = new Ps2Keyboard();
  readonly mouse: Ps2Mouse = new Ps2Mouse();
  readonly #onReset: () => void;
  readonly #keyboardIrq?: IrqLine;
  readonly #mouseIrq?: IrqLine;
  /** Controller replies, ahead of the devices' bytes. */
  #output: number[] = [];
  #buffer: { byte: number; source: Source } | undefined;
  /** A set-2 break prefix (F0) seen while translating: the next byte gets bit 7. */
  #breakPrefix = false;
  #ctr = CTR_DEFAULT;
  #outputPort = OUTPUT_PORT_DEFAULT;
  #lastWasCommand = false;
  /** The command waiting for its parameter byte at 0x60. */
  #pending: number | undefined;

  /** @param onReset called when the guest pulses the CPU reset line */
  constructor(onReset: () => void, options: I8042Options = {}) {
    this.#onReset = onReset;
    this.#keyboardIrq = options.keyboardIrq;
    this.#mouseIrq = options.mouseIrq;
    this.data = {
      name: "i8042-data",
      read: (_offset, data) => fillByte(data, this.#readData()),
      write: (_offset, data) => {
        if (data.length > 0) this.#writeData(data[0]);
      },
    };
    this.command = {
      name: "i8042-command",
      read: (_offset, data) => fillByte(data, this.#status()),
      write: (_offset, data) => {
        if (data.length > 0) this.#writeCommand(data[0]);
      },
    };
  }

  /** Whether the output port's A20 gate is open. */
  get a20(): boolean {
    return (this.#outputPort & I8042_OUT_A20) !== 0;
  }

  /** A key event from a console client; false when the keyboard's buffer was full. */
  keyEvent(key: KeyCodes, down: boolean): boolean {
    const ok = this.keyboard.key(key, down);
    this.#fill();
    return ok;
  }

  /** A relative mouse movement from a console client (dy positive = up). */
  mouseEvent(dx: number, dy: number, buttons: MouseButtons): void {
    this.mouse.move(dx, dy, buttons);
    this.#fill();
  }

  #status(): number {
    const b = this.#buffer;
    return (b ? I8042_STATUS_OBF : 0) | (b?.source === "mouse" ? I8042_STATUS_AUX_OBF : 0) |
      (this.#ctr & I8042_CTR_SYS ? I8042_STATUS_SYS : 0) |
      (this.#lastWasCommand ? I8042_STATUS_CMD : 0) | I8042_STATUS_UNLOCKED;
  }

  #reply(byte: number): void {
    if (this.#output.length + (this.#buffer ? 1 : 0) < OUTPUT_QUEUE_MAX) this.#output.push(byte);
    this.#fill();
  }

  /** Moves the next byte into the empty output buffer and updates the IRQ lines. */
  #fill(): void {
    while (!this.#buffer) {
      const reply = this.#output.shift();
      if (reply !== undefined) {
        this.#buffer = { byte: reply, source: "controller" };
        break;
      }
      if (!(this.#ctr & I8042_CTR_KBD_DISABLE) && this.keyboard.queue.length > 0) {
        const raw = this.keyboard.queue.shift()!;
        if (this.#ctr & I8042_CTR_XLATE) {
          if (raw === 0xf0) {
            this.#breakPrefix = true;
            continue;
          }
          const b = SET2_TO_SET1[raw] | (this.#breakPrefix ? 0x80 : 0);
          this.#breakPrefix = false;
          this.#buffer = { byte: b, source: "keyboard" };
        } else this.#buffer = { byte: raw, source: "keyboard" };
        break;
      }
      if (!(this.#ctr & I8042_CTR_AUX_DISABLE) && this.mouse.queue.length > 0) {
        this.#buffer = { byte: this.mouse.queue.shift()!, source: "mouse" };
        break;
      }
      break;
    }
    this.#updateIrqs();
  }

  #updateIrqs(): void {
    const src = this.#buffer?.source;
    this.#keyboardIrq?.setLevel(src === "keyboard" && (this.#ctr & I8042_CTR_KBD_INT) !== 0);
    this.#mouseIrq?.setLevel(src === "mouse" && (this.#ctr & I8042_CTR_AUX_INT) !== 0);
  }

  #readData(): number {
    const b = this.#buffer;
    this.#buffer = undefined;
    // The line drops when the buffer is read and rises again for the next byte: an edge
    // per byte, which an edge-triggered PIC input needs to see the next one.
    this.#updateIrqs();
    this.#fill();
    return b?.byte ?? 0;
  }

  #writeData(value: number): void {
    this.#lastWasCommand = false;
    const pending = this.#pending;
    this.#pending = undefined;
    switch (pending) {
      case I8042_CMD_WRITE_CTR:
        this.#ctr = value;
        this.#fill();
        return;
      case I8042_CMD_WRITE_OUTPUT:
        this.#outputPort = value;
        if (!(value & I8042_OUT_RESET)) this.#onReset();
        return;
      case I8042_CMD_WRITE_KBD_OUT:
        this.keyboard.queue.push(value);
        this.#fill();
        return;
      case I8042_CMD_WRITE_AUX_OUT:
        this.mouse.queue.push(value);
        this.#fill();
        return;
      case I8042_CMD_WRITE_AUX:
        this.mouse.command(value);
        this.#fill();
        return;
      default:
        // A byte for the keyboard; writing it also enables the keyboard clock.
        this.#ctr &= ~I8042_CTR_KBD_DISABLE;
        this.keyboard.command(value);
        this.#fill();
        return;
    }
  }

  #writeCommand(value: number): void {
    this.#lastWasCommand = true;
    this.#pending = undefined;
    switch (value) {
      case I8042_CMD_READ_CTR:
        this.#reply(this.#ctr);
        return;
      case I8042_CMD_WRITE_CTR:
      case I8042_CMD_WRITE_OUTPUT:
      case I8042_CMD_WRITE_KBD_OUT:
      case I8042_CMD_WRITE_AUX_OUT:
      case I8042_CMD_WRITE_AUX:
        this.#pending = value;
        return;
      case I8042_CMD_AUX_DISABLE:
        this.#ctr |= I8042_CTR_AUX_DISABLE;
        return;
      case I8042_CMD_AUX_ENABLE:
        this.#ctr &= ~I8042_CTR_AUX_DISABLE;
        this.#fill();
        return;
      case I8042_CMD_AUX_TEST:
        this.#reply(0x00);
        return;
      case I8042_CMD_SELF_TEST:
        this.#ctr |= I8042_CTR_SYS;
        this.#reply(I8042_SELF_TEST_OK);
        return;
      case I8042_CMD_KBD_TEST:
        this.#reply(0x00);
        return;
      case I8042_CMD_KBD_DISABLE:
        this.#ctr |= I8042_CTR_KBD_DISABLE;
        return;
      case I8042_CMD_KBD_ENABLE:
        this.#ctr &= ~I8042_CTR_KBD_DISABLE;
        this.#fill();
        return;
      case I8042_CMD_READ_OUTPUT:
        this.#reply(this.#outputPort);
        return;
    }
    if (value >= 0xf0) {
      // Pulse the output lines whose bit is clear in the low nibble; bit 0 is reset.
      if (!(value & I8042_OUT_RESET)) this.#onReset();
      return;
    }
    guestLog.log(`i8042: command 0x${value.toString(16)} not supported; ignored`);
  }
}

function fillByte(data: Uint8Array, value: number): void {
  data.fill(0);
  if (data.length > 0) data[0] = value;
}
