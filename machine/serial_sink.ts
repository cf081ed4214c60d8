/**
 * Where a VM's COM1 output goes: the terminal, a file, or nowhere — always
 * written synchronously so nothing is lost when the VM ends.
 *
 * @module
 */

import { serialFileProblem } from "../loaders/image_file.ts";

/** The console choice, as the config normalizes it. */
export interface SerialTarget {
  serial: "stdio" | "pty" | "none" | "file";
  path?: string;
  /** Translate "\n" to "\r\n" (the terminal is in raw mode, like a tty's ONLCR). */
  crlf?: boolean;
}

function writeAll(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
}

/** Inserts "\r" before every "\n" not already preceded by one (across calls). */
export function addCr(bytes: Uint8Array, prev: { last: number }): Uint8Array {
  const out: number[] = [];
  let last = prev.last;
  for (const b of bytes) {
    if (b === 0x0a && last !== 0x0d) out.push(0x0d);
    out.push(b);
    last = b;
  }
  prev.last = last;
  return out.length === bytes.length ? bytes : new Uint8Array(out);
}

/** Console output cannot go where the config says (see {@link serialFileProblem}). */
export class SerialSinkError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SerialSinkError";
  }
}

/**
 * A synchronous byte sink for `target`; `close()` releases a file. Throws
 * {@link SerialSinkError} when a file target cannot take console output.
 */
export function openSerialSink(
  target: SerialTarget,
): { write: (bytes: Uint8Array) => void; close: () => void } {
  const prev = { last: 0 };
  switch (target.serial) {
    case "stdio":
      return {
        write: (b) => writeAll(Deno.stdout, target.crlf ? addCr(b, prev) : b),
        close: () => {},
      };
    case "file": {
      const path = target.path!;
      const problem = serialFileProblem(path);
      if (problem) throw new SerialSinkError(`console file ${JSON.stringify(path)} ${problem}`);
      let f: Deno.FsFile;
      try {
        f = Deno.openSync(path, { write: true, create: true, append: true });
      } catch (e) {
        throw new SerialSinkError(
          `console file ${JSON.stringify(path)} cannot be opened: ${
            e instanceof Error ? e.message : e
          }`,
          { cause: e },
        );
      }
      return { write: (b) => writeAll(f, b), close: () => f.close() };
    }
    case "pty":
    case "none":
      return { write: () => {}, close: () => {} };
  }
}

const RING_HEAD = 0;
const RING_TAIL = 1;
const RING_DROPPED = 2;
const RING_SEQ = 3;
const RING_HEADER_SLOTS = 4;
/** Default capacity of a {@link SerialOutputRing}: a few seconds of a busy 115200-baud line. */
export const SERIAL_RING_BYTES = 64 * 1024;

/**
 * Console output from the vCPU thread to the host thread over shared memory
 * (one producer, one consumer), so a managed VM's main thread can copy it to
 * its log, pty and attached console without a message per byte. When the host
 * falls behind, new bytes are dropped and counted rather than blocking the vCPU.
 */
export class SerialOutputRing {
  readonly buffer: SharedArrayBuffer;
  readonly #i32: Int32Array;
  readonly #data: Uint8Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(RING_HEADER_SLOTS * 4 + SERIAL_RING_BYTES);
    this.#i32 = new Int32Array(this.buffer, 0, RING_HEADER_SLOTS);
    this.#data = new Uint8Array(this.buffer, RING_HEADER_SLOTS * 4);
  }

  /** Producer side: appends what fits, counts the rest as dropped, wakes the consumer. */
  push(bytes: Uint8Array): void {
    const size = this.#data.length;
    const head = Atomics.load(this.#i32, RING_HEAD);
    const tail = Atomics.load(this.#i32, RING_TAIL);
    const free = size - 1 - ((head - tail + size) % size);
    const n = Math.min(free, bytes.length);
    for (let i = 0; i < n; i++) this.#data[(head + i) % size] = bytes[i];
    Atomics.store(this.#i32, RING_HEAD, (head + n) % size);
    if (n < bytes.length) Atomics.add(this.#i32, RING_DROPPED, bytes.length - n);
    Atomics.add(this.#i32, RING_SEQ, 1);
    Atomics.notify(this.#i32, RING_SEQ);
  }

  /** Consumer side: takes every waiting byte (empty when none). */
  drain(): Uint8Array {
    const size = this.#data.length;
    const head = Atomics.load(this.#i32, RING_HEAD);
    const tail = Atomics.load(this.#i32, RING_TAIL);
    const n = (head - tail + size) % size;
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.#data[(tail + i) % size];
    Atomics.store(this.#i32, RING_TAIL, head);
    return out;
  }

  /** Bytes dropped so far because the consumer fell behind. */
  get dropped(): number {
    return Atomics.load(this.#i32, RING_DROPPED);
  }

  /** Consumer side: resolves when the producer pushed since `seq` (see {@link seq}) or after `ms`. */
  async changed(seq: number, ms: number): Promise<void> {
    const w = Atomics.waitAsync(this.#i32, RING_SEQ, seq, ms);
    if (w.async) await w.value;
  }

  /** The producer's push counter, to pass to {@link changed}. */
  get seq(): number {
    return Atomics.load(this.#i32, RING_SEQ);
  }
}
