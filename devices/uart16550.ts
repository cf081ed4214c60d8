/**
 * A 16550A UART (COM1 at 0x3f8, IRQ4; register it with length 8).
 *
 * The transmitter is infinitely fast: a byte written to THR goes to `output`
 * at once and THR/TSR are empty again immediately, as in QEMU. Received
 * bytes come from the host through {@link Uart16550.receive}, which takes
 * only what fits in the receive FIFO (back-pressure instead of overruns).
 *
 * Register map (offset: read / write; DLAB = LCR bit 7):
 *
 * | off | DLAB=0 read | DLAB=0 write | DLAB=1 |
 * | --- | --- | --- | --- |
 * | 0 | RBR receive buffer | THR transmit holding | DLL divisor low |
 * | 1 | IER interrupt enable | IER | DLM divisor high |
 * | 2 | IIR interrupt ident | FCR FIFO control | (same) |
 * | 3 | LCR line control | LCR | |
 * | 4 | MCR modem control | MCR | |
 * | 5 | LSR line status | (ignored) | |
 * | 6 | MSR modem status | (ignored) | |
 * | 7 | SCR scratch | SCR | |
 *
 * Differences from the chip, on purpose: the character-timeout interrupt is
 * reported as soon as the FIFO holds data below the trigger level (the line
 * is infinitely fast, so no more characters are on their way), and the IRQ
 * output is not gated by MCR OUT2 (like QEMU, so guests that never set OUT2
 * still get interrupts).
 *
 * @example
 * ```ts
 * import { Uart16550 } from "./uart16550.ts";
 * const out: number[] = [];
 * const uart = new Uart16550("com1", { setLevel() {} }, (b) => out.push(...b));
 * uart.write(0, new Uint8Array([0x41])); // THR
 * out; // [0x41]
 * ```
 * @module
 */

import { type BusDevice, guestLog, type IrqLine } from "../core/device.ts";

/** Receive buffer register (read, DLAB=0). */
export const UART_RBR = 0;
/** Transmit holding register (write, DLAB=0). */
export const UART_THR = 0;
/** Divisor latch low byte (DLAB=1). */
export const UART_DLL = 0;
/** Interrupt enable register (DLAB=0). */
export const UART_IER = 1;
/** Divisor latch high byte (DLAB=1). */
export const UART_DLM = 1;
/** Interrupt identification register (read). */
export const UART_IIR = 2;
/** FIFO control register (write). */
export const UART_FCR = 2;
/** Line control register. */
export const UART_LCR = 3;
/** Modem control register. */
export const UART_MCR = 4;
/** Line status register. */
export const UART_LSR = 5;
/** Modem status register. */
export const UART_MSR = 6;
/** Scratch register. */
export const UART_SCR = 7;

/** IER: received data available. */
export const UART_IER_RDI = 0x01;
/** IER: transmitter holding register empty. */
export const UART_IER_THRI = 0x02;
/** IER: receiver line status. */
export const UART_IER_RLSI = 0x04;
/** IER: modem status. */
export const UART_IER_MSI = 0x08;

/** IIR: no interrupt pending. */
export const UART_IIR_NO_INT = 0x01;
/** IIR: modem status change (lowest priority). */
export const UART_IIR_MSI = 0x00;
/** IIR: transmitter holding register empty. */
export const UART_IIR_THRI = 0x02;
/** IIR: received data at or above the trigger level. */
export const UART_IIR_RDI = 0x04;
/** IIR: receiver line status (highest priority). */
export const UART_IIR_RLSI = 0x06;
/** IIR: character timeout (data below the trigger level). */
export const UART_IIR_RX_TIMEOUT = 0x0c;
/** IIR: both bits set when the FIFOs are enabled. */
export const UART_IIR_FIFO_ENABLED = 0xc0;

/** FCR: enable both FIFOs. */
export const UART_FCR_ENABLE_FIFO = 0x01;
/** FCR: clear the receive FIFO. */
export const UART_FCR_CLEAR_RCVR = 0x02;
/** FCR: clear the transmit FIFO. */
export const UART_FCR_CLEAR_XMIT = 0x04;
/** FCR: DMA mode select. */
export const UART_FCR_DMA_SELECT = 0x08;
/** FCR: receive trigger level field (1, 4, 8, 14 bytes). */
export const UART_FCR_TRIGGER_MASK = 0xc0;

/** LCR: divisor latch access bit. */
export const UART_LCR_DLAB = 0x80;

/** MCR: data terminal ready. */
export const UART_MCR_DTR = 0x01;
/** MCR: request to send. */
export const UART_MCR_RTS = 0x02;
/** MCR: auxiliary output 1. */
export const UART_MCR_OUT1 = 0x04;
/** MCR: auxiliary output 2 (the IRQ gate on PC boards). */
export const UART_MCR_OUT2 = 0x08;
/** MCR: local loopback. */
export const UART_MCR_LOOP = 0x10;

/** LSR: data ready. */
export const UART_LSR_DR = 0x01;
/** LSR: overrun error. */
export const UART_LSR_OE = 0x02;
/** LSR: parity error. */
export const UART_LSR_PE = 0x04;
/** LSR: framing error. */
export const UART_LSR_FE = 0x08;
/** LSR: break interrupt. */
export const UART_LSR_BI = 0x10;
/** LSR: transmitter holding register empty. */
export const UART_LSR_THRE = 0x20;
/** LSR: transmitter empty (THR and shift register). */
export const UART_LSR_TEMT = 0x40;
/** LSR: error in the receive FIFO. */
export const UART_LSR_FIFOE = 0x80;

/** MSR: delta clear to send. */
export const UART_MSR_DCTS = 0x01;
/** MSR: delta data set ready. */
export const UART_MSR_DDSR = 0x02;
/** MSR: trailing edge ring indicator. */
export const UART_MSR_TERI = 0x04;
/** MSR: delta data carrier detect. */
export const UART_MSR_DDCD = 0x08;
/** MSR: clear to send. */
export const UART_MSR_CTS = 0x10;
/** MSR: data set ready. */
export const UART_MSR_DSR = 0x20;
/** MSR: ring indicator. */
export const UART_MSR_RI = 0x40;
/** MSR: data carrier detect. */
export const UART_MSR_DCD = 0x80;

/** Depth of the 16550A receive and transmit FIFOs. */
export const UART_FIFO_BYTES = 16;

/** Receive trigger level for each value of FCR bits 7-6. */
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;

/** LSR bits that raise the line-status interrupt (cleared by reading LSR). */
const LSR_ERROR_BITS = UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI;

/** What the modem inputs read when not in loopback: a connected, ready peer. */
const MODEM_INPUTS_CONNECTED = UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD;

/** A 16550A UART; see the module documentation for the register map. */
export class Uart16550 implements BusDevice {
  readonly name: string;
  readonly #irq: IrqLine;
  readonly #output: (bytes: Uint8Array) => void;

  // Receive FIFO as a ring (capacity 16 with FIFOs on, 1 without).
  readonly #rx = new Uint8Array(UART_FIFO_BYTES);
  #rxHead = 0;
  #rxCount = 0;
  #rbr = 0; // last byte read, returned again when the FIFO is empty

  #ier = 0;
  #fcr = 0;
  #lcr = 0;
  #mcr = 0;
  #lsrErrors = 0;
  #msr = MODEM_INPUTS_CONNECTED;
  #scr = 0;
  #dll = 0;
  #dlm = 0;
  #thrInterruptPending = false;
  #irqLevel = false;

  /**
   * @param name name for logs ("com1")
   * @param irq the interrupt line (IRQ4 for COM1)
   * @param output receives every transmitted byte at once
   */
  constructor(name: string, irq: IrqLine, output: (bytes: Uint8Array) => void) {
    this.name = name;
    this.#irq = irq;
    this.#output = output;
  }

  /** Returns the UART to its power-on state (the IRQ line goes low). */
  reset(): void {
    this.#rxHead = 0;
    this.#rxCount = 0;
    this.#rbr = 0;
    this.#ier = 0;
    this.#fcr = 0;
    this.#lcr = 0;
    this.#mcr = 0;
    this.#lsrErrors = 0;
    this.#msr = MODEM_INPUTS_CONNECTED;
    this.#scr = 0;
    this.#dll = 0;
    this.#dlm = 0;
    this.#thrInterruptPending = false;
    this.#updateIrq();
  }

  /** The divisor latch (115200 / divisor = baud rate); 0 until the guest sets it. */
  get divisor(): number {
    return (this.#dlm << 8) | this.#dll;
  }

  /**
   * Free space in the receive FIFO, in bytes. Zero in loopback mode, where
   * the chip disconnects its serial input.
   */
  rxSpace(): number {
    if (this.#mcr & UART_MCR_LOOP) return 0;
    return this.#rxCapacity() - this.#rxCount;
  }

  /**
   * Offers host input to the receiver. Returns how many leading bytes of
   * `bytes` were taken; the caller keeps the rest and retries later (after
   * the guest has read some), so host input is never dropped.
   */
  receive(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, this.rxSpace());
    for (let i = 0; i < n; i++) this.#rxPush(bytes[i]);
    if (n > 0) this.#updateIrq();
    return n;
  }

  read(offset: number, data: Uint8Array): void {
    // 8-bit registers: a wider access is a byte access at `offset`.
    const value = this.#readRegister(offset);
    data.fill(0);
    if (data.length > 0) data[0] = value;
    this.#updateIrq();
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.#writeRegister(offset, data[0]);
    this.#updateIrq();
  }

  #readRegister(offset: number): number {
    const dlab = (this.#lcr & UART_LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR:
        return dlab ? this.#dll : this.#readRbr();
      case UART_IER:
        return dlab ? this.#dlm : this.#ier;
      case UART_IIR:
        return this.#readIir();
      case UART_LCR:
        return this.#lcr;
      case UART_MCR:
        return this.#mcr;
      case UART_LSR: {
        const lsr = this.#lsr();
        this.#lsrErrors = 0; // error bits clear on read
        return lsr;
      }
      case UART_MSR: {
        const msr = this.#msr;
        this.#msr &= 0xf0; // delta bits clear on read
        return msr;
      }
      case UART_SCR:
        return this.#scr;
      default:
        guestLog.log(`${this.name}: read at offset ${offset} beyond the 8 registers`);
        return 0xff;
    }
  }

  #writeRegister(offset: number, value: number): void {
    const dlab = (this.#lcr & UART_LCR_DLAB) !== 0;
    switch (offset) {
      case UART_THR:
        if (dlab) this.#dll = value;
        else this.#transmit(value);
        return;
      case UART_IER:
        if (dlab) this.#dlm = value;
        else this.#writeIer(value);
        return;
      case UART_FCR:
        this.#writeFcr(value);
        return;
      case UART_LCR:
        this.#lcr = value;
        return;
      case UART_MCR:
        this.#writeMcr(value);
        return;
      case UART_LSR:
      case UART_MSR:
        return; // status registers: writes are the chip's factory test, ignored
      case UART_SCR:
        this.#scr = value;
        return;
      default:
        guestLog.log(`${this.name}: write at offset ${offset} beyond the 8 registers`);
    }
  }

  #fifoEnabled(): boolean {
    return (this.#fcr & UART_FCR_ENABLE_FIFO) !== 0;
  }

  #rxCapacity(): number {
    return this.#fifoEnabled() ? UART_FIFO_BYTES : 1;
  }

  #rxPush(byte: number): void {
    this.#rx[(this.#rxHead + this.#rxCount) % UART_FIFO_BYTES] = byte;
    this.#rxCount++;
  }

  #rxClear(): void {
    this.#rxHead = 0;
    this.#rxCount = 0;
  }

  #readRbr(): number {
    if (this.#rxCount > 0) {
      this.#rbr = this.#rx[this.#rxHead];
      this.#rxHead = (this.#rxHead + 1) % UART_FIFO_BYTES;
      this.#rxCount--;
    }
    return this.#rbr;
  }

  #transmit(byte: number): void {
    if (this.#mcr & UART_MCR_LOOP) {
      // Loopback: the transmitter feeds our own receiver.
      if (this.#rxCount < this.#rxCapacity()) this.#rxPush(byte);
      else this.#lsrErrors |= UART_LSR_OE;
    } else {
      this.#output(Uint8Array.of(byte));
    }
    // The byte left at once, so THR is empty again: a fresh THRE event.
    this.#thrInterruptPending = (this.#ier & UART_IER_THRI) !== 0;
  }

  #writeIer(value: number): void {
    const old = this.#ier;
    this.#ier = value & 0x0f; // bits 7-4 are hard-wired zero on a 16550A
    // Setting ETBEI while THR is empty raises THRE again, even after an IIR
    // read cleared it (Linux's THRE re-assert test and Windows rely on it).
    if ((this.#ier & UART_IER_THRI) && !(old & UART_IER_THRI)) this.#thrInterruptPending = true;
    if (!(this.#ier & UART_IER_THRI)) this.#thrInterruptPending = false;
  }

  #writeFcr(value: number): void {
    const enable = (value & UART_FCR_ENABLE_FIFO) !== 0;
    if (enable !== this.#fifoEnabled()) this.#rxClear(); // switching modes empties the FIFOs
    if (!enable) {
      this.#fcr = 0; // other bits only program while FCR0 is set
      return;
    }
    if (value & UART_FCR_CLEAR_RCVR) this.#rxClear();
    // CLEAR_XMIT: the transmit FIFO is always empty here.
    this.#fcr = value & (UART_FCR_ENABLE_FIFO | UART_FCR_DMA_SELECT | UART_FCR_TRIGGER_MASK);
  }

  #writeMcr(value: number): void {
    this.#mcr = value & 0x1f;
    this.#setModemInputs(this.#modemInputs());
  }

  /** The modem input lines: the peer's, or in loopback our own outputs. */
  #modemInputs(): number {
    const mcr = this.#mcr;
    if (!(mcr & UART_MCR_LOOP)) return MODEM_INPUTS_CONNECTED;
    return (mcr & UART_MCR_RTS ? UART_MSR_CTS : 0) |
      (mcr & UART_MCR_DTR ? UART_MSR_DSR : 0) |
      (mcr & UART_MCR_OUT1 ? UART_MSR_RI : 0) |
      (mcr & UART_MCR_OUT2 ? UART_MSR_DCD : 0);
  }

  #setModemInputs(inputs: number): void {
    const old = this.#msr & 0xf0;
    const changed = old ^ inputs;
    let deltas = this.#msr & 0x0f;
    if (changed & UART_MSR_CTS) deltas |= UART_MSR_DCTS;
    if (changed & UART_MSR_DSR) deltas |= UART_MSR_DDSR;
    if ((old & UART_MSR_RI) && !(inputs & UART_MSR_RI)) deltas |= UART_MSR_TERI;
    if (changed & UART_MSR_DCD) deltas |= UART_MSR_DDCD;
    this.#msr = inputs | deltas;
  }

  #lsr(): number {
    return (this.#rxCount > 0 ? UART_LSR_DR : 0) | this.#lsrErrors | UART_LSR_THRE |
      UART_LSR_TEMT;
  }

  /** The highest-priority pending interrupt, as an IIR identification code. */
  #pendingInterrupt(): number {
    const ier = this.#ier;
    if ((ier & UART_IER_RLSI) && (this.#lsrErrors & LSR_ERROR_BITS)) return UART_IIR_RLSI;
    if ((ier & UART_IER_RDI) && this.#rxCount > 0) {
      if (!this.#fifoEnabled()) return UART_IIR_RDI;
      const trigger = TRIGGER_LEVELS[this.#fcr >> 6];
      return this.#rxCount >= trigger ? UART_IIR_RDI : UART_IIR_RX_TIMEOUT;
    }
    if ((ier & UART_IER_THRI) && this.#thrInterruptPending) return UART_IIR_THRI;
    if ((ier & UART_IER_MSI) && (this.#msr & 0x0f)) return UART_IIR_MSI;
    return UART_IIR_NO_INT;
  }

  #readIir(): number {
    const id = this.#pendingInterrupt();
    // Reading IIR while it reports THRE is what acknowledges THRE.
    if (id === UART_IIR_THRI) this.#thrInterruptPending = false;
    return id | (this.#fifoEnabled() ? UART_IIR_FIFO_ENABLED : 0);
  }

  #updateIrq(): void {
    const level = this.#pendingInterrupt() !== UART_IIR_NO_INT;
    if (level !== this.#irqLevel) {
      this.#irqLevel = level;
      this.#irq.setLevel(level);
    }
  }
}
