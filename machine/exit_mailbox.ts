/**
 * How an application processor's thread reaches the shared devices: every
 * device that several vCPUs can touch (UART, PIC, PIT, RTC, PCI, virtio,
 * I/O APIC) lives on one thread, vCPU 0's (the device thread), and is only
 * ever called from there. An AP's port or MMIO exit (other than its own
 * local APIC's page) is copied into that AP's `ExitMailbox`; the AP wakes
 * the device thread (a kick when it is in the guest) and waits; the device
 * thread serves the access on its buses between two exits of its own or
 * while it is halted, and hands the data back.
 *
 * The mailbox also carries an AP's end (a triple fault, a failure) to the
 * device thread, which then ends the VM.
 *
 * Layout: Int32 slots STATE, KIND, PORT_OR_GPA_LOW, GPA_HIGH, SIZE, COUNT,
 * then {@link MAILBOX_DATA_BYTES} of data.
 *
 * @module
 */

import type { VcpuExit } from "../accel/types.ts";
import type { Outcome } from "./machine.ts";

const STATE = 0;
const KIND = 1;
const ADDR_LOW = 2;
const ADDR_HIGH = 3;
const SIZE = 4;
const COUNT = 5;
const SLOTS = 8;
/** The largest access a mailbox carries (string I/O: size x count). */
export const MAILBOX_DATA_BYTES = 4096;

const IDLE = 0;
const REQUEST = 1;
const DONE = 2;

const KINDS = ["io-in", "io-out", "mmio-read", "mmio-write", "outcome"] as const;
type Kind = typeof KINDS[number];

/** One AP's mailbox to the device thread (see the module doc). */
export class ExitMailbox {
  readonly buffer: SharedArrayBuffer;
  readonly #i32: Int32Array;
  readonly #data: Uint8Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(SLOTS * 4 + MAILBOX_DATA_BYTES);
    this.#i32 = new Int32Array(this.buffer, 0, SLOTS);
    this.#data = new Uint8Array(this.buffer, SLOTS * 4, MAILBOX_DATA_BYTES);
  }

  // ---- AP side ----

  /**
   * Posts an I/O or MMIO exit and waits until the device thread served it
   * (for reads, `exit.data` then holds the answer). `wake` is called once
   * after posting, `giveUp` every 50 ms while waiting: true abandons the wait
   * (the VM is ending). Returns false when abandoned.
   */
  forward(exit: VcpuExit, wake: () => void, giveUp: () => boolean): boolean {
    if (
      exit.kind !== "io-in" && exit.kind !== "io-out" && exit.kind !== "mmio-read" &&
      exit.kind !== "mmio-write"
    ) {
      throw new Error(`Cannot forward a "${exit.kind}" exit`);
    }
    const io = exit.kind === "io-in" || exit.kind === "io-out";
    const length = exit.data.length;
    if (length > MAILBOX_DATA_BYTES) return false; // cannot happen with KVM's data page
    this.#i32[KIND] = KINDS.indexOf(exit.kind);
    this.#i32[ADDR_LOW] = io ? exit.port : exit.gpa % 2 ** 32;
    this.#i32[ADDR_HIGH] = io ? 0 : Math.floor(exit.gpa / 2 ** 32);
    this.#i32[SIZE] = io ? exit.size : length;
    this.#i32[COUNT] = io ? exit.count : 1;
    if (exit.kind === "io-out" || exit.kind === "mmio-write") this.#data.set(exit.data);
    Atomics.store(this.#i32, STATE, REQUEST);
    wake();
    while (Atomics.load(this.#i32, STATE) !== DONE) {
      if (Atomics.wait(this.#i32, STATE, REQUEST, 50) === "timed-out" && giveUp()) return false;
    }
    if (exit.kind === "io-in" || exit.kind === "mmio-read") {
      exit.data.set(this.#data.subarray(0, length));
    }
    Atomics.store(this.#i32, STATE, IDLE);
    return true;
  }

  /** Reports the AP's end; the device thread ends the VM with it. */
  reportOutcome(outcome: Outcome, wake: () => void): void {
    const text = new TextEncoder().encode(JSON.stringify(outcome)).subarray(0, MAILBOX_DATA_BYTES);
    this.#data.set(text);
    this.#i32[SIZE] = text.length;
    this.#i32[KIND] = KINDS.indexOf("outcome");
    Atomics.store(this.#i32, STATE, REQUEST);
    wake();
  }

  // ---- device thread side ----

  /** Whether a request waits. */
  get pending(): boolean {
    return Atomics.load(this.#i32, STATE) === REQUEST;
  }

  /**
   * Serves a waiting request with `serve` (which fills `exit.data` for
   * reads); an outcome report is returned instead.
   */
  serve(serve: (exit: VcpuExit) => void): Outcome | undefined {
    if (!this.pending) return undefined;
    const kind: Kind = KINDS[this.#i32[KIND]];
    const size = this.#i32[SIZE];
    if (kind === "outcome") {
      const outcome = JSON.parse(new TextDecoder().decode(this.#data.slice(0, size))) as Outcome;
      Atomics.store(this.#i32, STATE, DONE);
      return outcome;
    }
    const count = this.#i32[COUNT];
    const addr = (this.#i32[ADDR_LOW] >>> 0) + this.#i32[ADDR_HIGH] * 2 ** 32;
    const io = kind === "io-in" || kind === "io-out";
    const data = this.#data.subarray(0, io ? size * count : size);
    const exit: VcpuExit = kind === "io-in" || kind === "io-out"
      ? { kind, port: addr, size, count, data }
      : { kind, gpa: addr, data };
    serve(exit);
    Atomics.store(this.#i32, STATE, DONE);
    Atomics.notify(this.#i32, STATE);
    return undefined;
  }
}
