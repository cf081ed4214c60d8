import assert from "node:assert/strict";
import { inb, inN, outb, outN, RecordingIrqLine } from "./fakes.ts";
import {
  Uart16550,
  UART_DLL,
  UART_DLM,
  UART_FCR,
  UART_IER,
  UART_IIR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_RBR,
  UART_SCR,
  UART_THR,
} from "./uart16550.ts";

function setup() {
  const irq = new RecordingIrqLine();
  const out: number[] = [];
  const uart = new Uart16550("com1", irq, (bytes) => out.push(...bytes));
  return { uart, irq, out };
}

Deno.test("uart: power-on register values", () => {
  const { uart, irq } = setup();
  assert.equal(inb(uart, UART_IER), 0);
  assert.equal(inb(uart, UART_IIR), 0x01);
  assert.equal(inb(uart, UART_LCR), 0);
  assert.equal(inb(uart, UART_MCR), 0);
  assert.equal(inb(uart, UART_LSR), 0x60);
  assert.equal(inb(uart, UART_MSR), 0xb0);
  assert.equal(inb(uart, UART_SCR), 0);
  assert.equal(irq.level, false);
});

Deno.test("uart: THR bytes go to output at once and THR stays empty", () => {
  const { uart, out } = setup();
  for (const c of "hi\n") outb(uart, UART_THR, c.charCodeAt(0));
  assert.deepEqual(out, [0x68, 0x69, 0x0a]);
  assert.equal(inb(uart, UART_LSR) & 0x60, 0x60);
});

Deno.test("uart: DLAB selects the divisor latch at offsets 0 and 1", () => {
  const { uart, out } = setup();
  outb(uart, UART_IER, 0x05);
  outb(uart, UART_LCR, 0x83);
  outb(uart, UART_DLL, 0x0c);
  outb(uart, UART_DLM, 0x01);
  assert.equal(inb(uart, UART_DLL), 0x0c);
  assert.equal(inb(uart, UART_DLM), 0x01);
  assert.equal(out.length, 0, "a DLL write is not a transmit");
  outb(uart, UART_LCR, 0x03);
  assert.equal(uart.divisor, 0x10c);
  assert.equal(inb(uart, UART_IER), 0x05, "IER kept while DLAB was set");
  assert.equal(inb(uart, UART_LCR), 0x03);
});

Deno.test("uart: IER keeps only bits 3-0 (Linux autoconfig IER test)", () => {
  const { uart } = setup();
  outb(uart, UART_IER, 0);
  assert.equal(inb(uart, UART_IER), 0);
  outb(uart, UART_IER, 0xff);
  assert.equal(inb(uart, UART_IER), 0x0f);
});

Deno.test("uart: scratch register holds any byte", () => {
  const { uart } = setup();
  for (const v of [0x00, 0x55, 0xaa, 0xff]) {
    outb(uart, UART_SCR, v);
    assert.equal(inb(uart, UART_SCR), v);
  }
});

Deno.test("uart: received byte sets DR and raises RDI; reading RBR clears it", () => {
  const { uart, irq } = setup();
  outb(uart, UART_IER, 0x01);
  assert.equal(uart.receive(new Uint8Array([0x41])), 1);
  assert.equal(inb(uart, UART_LSR) & 0x01, 0x01);
  assert.equal(inb(uart, UART_IIR), 0x04);
  assert.equal(irq.level, true);
  assert.equal(inb(uart, UART_RBR), 0x41);
  assert.equal(inb(uart, UART_LSR) & 0x01, 0);
  assert.equal(inb(uart, UART_IIR), 0x01);
  assert.equal(irq.level, false);
  assert.equal(inb(uart, UART_RBR), 0x41, "empty RBR reads the last byte again");
});

Deno.test("uart: without FIFOs the receiver holds one byte (back-pressure)", () => {
  const { uart } = setup();
  assert.equal(uart.rxSpace(), 1);
  assert.equal(uart.receive(new Uint8Array([1, 2, 3])), 1);
  assert.equal(uart.rxSpace(), 0);
  assert.equal(uart.receive(new Uint8Array([2, 3])), 0);
  assert.equal(inb(uart, UART_RBR), 1);
  assert.equal(uart.receive(new Uint8Array([2, 3])), 1);
  assert.equal(inb(uart, UART_RBR), 2);
  assert.equal(inb(uart, UART_LSR) & 0x02, 0, "back-pressure means no overrun");
});

Deno.test("uart: FIFO mode holds 16 bytes in order and IIR shows 0xC0", () => {
  const { uart } = setup();
  outb(uart, UART_FCR, 0x01);
  assert.equal(inb(uart, UART_IIR), 0xc1);
  const input = Uint8Array.from({ length: 20 }, (_, i) => 0x30 + i);
  assert.equal(uart.receive(input), 16);
  assert.equal(uart.rxSpace(), 0);
  const got: number[] = [];
  while (inb(uart, UART_LSR) & 0x01) got.push(inb(uart, UART_RBR));
  assert.deepEqual(got, [...input.subarray(0, 16)]);
  assert.equal(uart.rxSpace(), 16);
});

Deno.test("uart: FCR trigger level separates RDI from character timeout", () => {
  const { uart } = setup();
  outb(uart, UART_IER, 0x01);
  for (const [fcr, trigger] of [[0x01, 1], [0x41, 4], [0x81, 8], [0xc1, 14]]) {
    outb(uart, UART_FCR, fcr | 0x02);
    if (trigger > 1) {
      uart.receive(new Uint8Array(trigger - 1));
      assert.equal(inb(uart, UART_IIR), 0xcc, `below trigger ${trigger}: timeout`);
    }
    uart.receive(new Uint8Array(1));
    assert.equal(inb(uart, UART_IIR), 0xc4, `at trigger ${trigger}: RDI`);
  }
});

Deno.test("uart: FCR clear bits and FIFO enable toggling empty the receiver", () => {
  const { uart } = setup();
  outb(uart, UART_FCR, 0x01);
  uart.receive(new Uint8Array([1, 2, 3]));
  outb(uart, UART_FCR, 0x03); // clear RX
  assert.equal(inb(uart, UART_LSR) & 0x01, 0);
  uart.receive(new Uint8Array([1, 2, 3]));
  outb(uart, UART_FCR, 0x05); // clear TX only
  assert.equal(inb(uart, UART_LSR) & 0x01, 0x01);
  outb(uart, UART_FCR, 0x00); // FIFOs off: emptied, IIR bits 7-6 clear
  assert.equal(inb(uart, UART_LSR) & 0x01, 0);
  assert.equal(inb(uart, UART_IIR) & 0xc0, 0);
  outb(uart, UART_FCR, 0xc6); // FCR0 clear: the other bits do not program
  assert.equal(inb(uart, UART_IIR), 0x01);
});

Deno.test("uart: THRE interrupt on enable, cleared by IIR read, re-armed by IER", () => {
  // The sequence Linux's serial8250_startup uses to test THRE re-assertion.
  const { uart, irq } = setup();
  outb(uart, UART_IER, 0x02);
  assert.equal(irq.level, true);
  const iir1 = inb(uart, UART_IIR);
  assert.equal(iir1, 0x02);
  assert.equal(irq.level, false);
  assert.equal(inb(uart, UART_IIR), 0x01, "IIR read acknowledged THRE");
  outb(uart, UART_IER, 0);
  outb(uart, UART_IER, 0x02);
  assert.equal(inb(uart, UART_IIR), 0x02, "THRE re-asserted by setting ETBEI again");
});

Deno.test("uart: THR write re-raises THRE, with an edge the PIC can see", () => {
  const { uart, irq } = setup();
  outb(uart, UART_IER, 0x02);
  inb(uart, UART_IIR);
  const edges = irq.risingEdges;
  outb(uart, UART_THR, 0x41);
  assert.equal(irq.level, true);
  assert.equal(irq.risingEdges, edges + 1);
  outb(uart, UART_IER, 0x00);
  assert.equal(irq.level, false);
  assert.equal(inb(uart, UART_IIR), 0x01);
});

Deno.test("uart: IIR priorities: line status > RX > THRE > modem status", () => {
  const { uart } = setup();
  outb(uart, UART_IER, 0x0f);
  // modem status: leave and re-enter loopback to get delta bits
  outb(uart, UART_MCR, 0x10);
  outb(uart, UART_THR, 0x98); // loopback: fills the one-byte receiver
  outb(uart, UART_THR, 0x99); // the receiver is full -> overrun
  assert.equal(inb(uart, UART_IIR), 0x06, "line status first");
  assert.equal(inb(uart, UART_LSR) & 0x02, 0x02);
  assert.equal(inb(uart, UART_LSR) & 0x02, 0, "OE clears on LSR read");
  assert.equal(inb(uart, UART_IIR), 0x04, "then received data");
  inb(uart, UART_RBR);
  assert.equal(inb(uart, UART_IIR), 0x02, "then THRE");
  assert.equal(inb(uart, UART_IIR), 0x00, "then modem status");
  assert.notEqual(inb(uart, UART_MSR) & 0x0f, 0);
  assert.equal(inb(uart, UART_IIR), 0x01, "MSR read cleared the deltas");
});

Deno.test("uart: MSR reports a connected peer and delta bits on change", () => {
  const { uart } = setup();
  assert.equal(inb(uart, UART_MSR), 0xb0);
  outb(uart, UART_MCR, 0x10); // loopback, all outputs low: CTS, DSR, DCD fall
  assert.equal(inb(uart, UART_MSR), 0x0b);
  assert.equal(inb(uart, UART_MSR), 0x00);
  outb(uart, UART_MCR, 0x14); // OUT1 -> RI
  assert.equal(inb(uart, UART_MSR), 0x40);
  outb(uart, UART_MCR, 0x10); // RI falls: trailing edge
  assert.equal(inb(uart, UART_MSR), 0x04);
  outb(uart, UART_MCR, 0x1f);
  assert.equal(inb(uart, UART_MSR), 0xfb);
});

Deno.test("uart: Linux autoconfig loopback test reads 0x90", () => {
  const { uart } = setup();
  outb(uart, UART_MCR, 0x10 | 0x0a);
  assert.equal(inb(uart, UART_MSR) & 0xf0, 0x90);
  outb(uart, UART_MCR, 0x00);
  assert.equal(inb(uart, UART_MSR) & 0xf0, 0xb0);
});

Deno.test("uart: MCR keeps bits 4-0", () => {
  const { uart } = setup();
  outb(uart, UART_MCR, 0xff);
  assert.equal(inb(uart, UART_MCR), 0x1f);
});

Deno.test("uart: loopback sends THR to the receiver, not the output", () => {
  const { uart, out } = setup();
  outb(uart, UART_FCR, 0x01);
  outb(uart, UART_MCR, 0x10);
  assert.equal(uart.rxSpace(), 0, "serial input disconnected in loopback");
  assert.equal(uart.receive(new Uint8Array([7])), 0);
  outb(uart, UART_THR, 0x5a);
  outb(uart, UART_THR, 0xa5);
  assert.deepEqual(out, []);
  assert.equal(inb(uart, UART_RBR), 0x5a);
  assert.equal(inb(uart, UART_RBR), 0xa5);
  outb(uart, UART_MCR, 0x00);
  outb(uart, UART_THR, 0x33);
  assert.deepEqual(out, [0x33]);
});

Deno.test("uart: OpenBSD comprobe1 finds IIR bits 5-3 clear", () => {
  const { uart } = setup();
  outb(uart, UART_LCR, 0);
  outb(uart, UART_IIR, 0); // FCR write
  assert.equal(inb(uart, UART_IIR) & 0x38, 0);
});

Deno.test("uart: LSR and MSR writes are ignored", () => {
  const { uart } = setup();
  outb(uart, UART_LSR, 0x00);
  outb(uart, UART_MSR, 0x00);
  assert.equal(inb(uart, UART_LSR), 0x60);
  assert.equal(inb(uart, UART_MSR), 0xb0);
});

Deno.test("uart: wide accesses act on the byte at the offset", () => {
  const { uart, out } = setup();
  outN(uart, UART_THR, 2, 0x4241);
  assert.deepEqual(out, [0x41], "only the low byte is transmitted");
  outN(uart, UART_SCR, 4, 0x11223344);
  assert.equal(inN(uart, UART_SCR, 4), 0x44);
  assert.equal(inN(uart, UART_LSR, 2), 0x60);
});

Deno.test("uart: offsets beyond the register file read 0xff and ignore writes", () => {
  const { uart, out } = setup();
  assert.equal(inb(uart, 8), 0xff);
  outb(uart, 9, 0x41);
  assert.deepEqual(out, []);
});

Deno.test("uart: receiver line-status interrupt needs ELSI", () => {
  const { uart, irq } = setup();
  outb(uart, UART_MCR, 0x10);
  outb(uart, UART_THR, 1);
  outb(uart, UART_THR, 2); // overrun with IER = 0
  assert.equal(irq.level, false);
  outb(uart, UART_IER, 0x04);
  assert.equal(irq.level, true);
  assert.equal(inb(uart, UART_LSR) & 0x03, 0x03);
  assert.equal(irq.level, false);
});

Deno.test("uart: reset returns to power-on state and lowers the IRQ", () => {
  const { uart, irq } = setup();
  outb(uart, UART_IER, 0x02);
  outb(uart, UART_SCR, 0x77);
  assert.equal(irq.level, true);
  uart.reset();
  assert.equal(irq.level, false);
  assert.equal(inb(uart, UART_IER), 0);
  assert.equal(inb(uart, UART_SCR), 0);
});
