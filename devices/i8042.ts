/**
 * The 8042 keyboard controller, with no keyboard or mouse attached: enough
 * for guests to probe it, read and write its command byte, and reset the
 * machine through it (the classic reboot path).
 *
 * | port | device | read | write |
 * | --- | --- | --- | --- |
 * | 0x60 | `data` | output buffer (0 when empty) | command parameter, or to the (absent) keyboard |
 * | 0x64 | `command` | status register | controller command |
 *
 * Commands: 0x20 read command byte, 0x60 write command byte, 0xA7/0xA8
 * disable/enable aux, 0xAA self test (answers 0x55), 0xAB keyboard interface
 * test (answers 0x00), 0xAD/0xAE disable/enable keyboard, 0xD0 read output
 * port, 0xD1 write output port (bit 0 clear resets the CPU), 0xF0-0xFF pulse
 * output lines (bit 0 clear pulses reset: 0xFE is the reboot command).
 * Others are ignored, as by a controller with nothing behind that port.
 * There is no IRQ: replies are picked up by polling OBF, as guests do while
 * talking to the controller itself.
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

import { type BusDevice, guestLog } from "../core/device.ts";

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

/** The 8042 controller; register `data` at 0x60 and `command` at 0x64 (length 1 each). */
export class I8042 {
  /** Port 0x60. */
  readonly data: BusDevice;
  /** Port 0x64. */
  readonly command: BusDevice;
  readonly #onReset: () => void;
  #output: number[] = [];
  #ctr = CTR_DEFAULT;
  #outputPort = OUTPUT_PORT_DEFAULT;
  #lastWasCommand = false;
  /** The command waiting for its parameter byte at 0x60. */
  #pending: number | undefined;

  /** @param onReset called when the guest pulses the CPU reset line */
  constructor(onReset: () => void) {
    this.#onReset = onReset;
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

  #status(): number {
    return (this.#output.length > 0 ? I8042_STATUS_OBF : 0) |
      (this.#ctr & I8042_CTR_SYS ? I8042_STATUS_SYS : 0) |
      (this.#lastWasCommand ? I8042_STATUS_CMD : 0) | I8042_STATUS_UNLOCKED;
  }

  #reply(byte: number): void {
    if (this.#output.length < OUTPUT_QUEUE_MAX) this.#output.push(byte);
  }

  #readData(): number {
    return this.#output.shift() ?? 0;
  }

  #writeData(value: number): void {
    this.#lastWasCommand = false;
    const pending = this.#pending;
    this.#pending = undefined;
    switch (pending) {
      case I8042_CMD_WRITE_CTR:
        this.#ctr = value;
        return;
      case I8042_CMD_WRITE_OUTPUT:
        this.#outputPort = value;
        if (!(value & I8042_OUT_RESET)) this.#onReset();
        return;
      default:
        // A byte for the keyboard: nothing is attached to answer it.
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
        this.#pending = value;
        return;
      case I8042_CMD_AUX_DISABLE:
        this.#ctr |= I8042_CTR_AUX_DISABLE;
        return;
      case I8042_CMD_AUX_ENABLE:
        this.#ctr &= ~I8042_CTR_AUX_DISABLE;
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
