/**
 * The channel between the host side (main thread: console, timers, control
 * socket) and a vCPU thread, over one SharedArrayBuffer.
 *
 * Layout (Int32 slots, then a Float64 deadline, then the console input ring):
 * - COMMAND: what the host wants (run, pause, stop); the vCPU polls it after every exit.
 * - STATE: what the vCPU is doing (running in the guest, halted, paused, ...).
 * - WAKE: bumped and notified by the host whenever it wants a sleeping vCPU to look again.
 * - IN_HEAD/IN_TAIL: a single-producer single-consumer byte ring for serial input.
 * - DEADLINE_SEQ: bumped by the vCPU when it publishes a new timer deadline.
 *
 * @module
 */

/** Host requests. */
export const Command = { RUN: 0, PAUSE: 1, STOP: 2 } as const;
/** vCPU activity, as the host sees it. */
export const Activity = {
  STARTING: 0,
  IN_GUEST: 1,
  IN_VMM: 2,
  HALTED: 3,
  PAUSED: 4,
  DONE: 5,
} as const;

const COMMAND = 0;
const STATE = 1;
const WAKE = 2;
const IN_HEAD = 3;
const IN_TAIL = 4;
const DEADLINE_SEQ = 5;
const PAUSE_ACK = 6;
/** Set by a host that watches the vCPU's deadline (then the vCPU need not read the clock per exit). */
const TIMER_DUE = 7;
const HOST_WATCHES_DEADLINE = -1;
/** The vCPU thread's kernel thread id, for kicks from any thread (0: not yet known). */
const THREAD = 8;
/** Set by another thread that delivered something to this vCPU; cleared when the vCPU looks. */
const ATTENTION = 9;
const INT_SLOTS = 10;
const INPUT_RING = 4096;

/** Shared control block; construct on the host, pass `.buffer` to the worker. */
export class VcpuControl {
  readonly buffer: SharedArrayBuffer;
  readonly #i32: Int32Array;
  readonly #deadline: Float64Array;
  readonly #ring: Uint8Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(INT_SLOTS * 4 + 8 + INPUT_RING);
    this.#i32 = new Int32Array(this.buffer, 0, INT_SLOTS);
    this.#deadline = new Float64Array(this.buffer, INT_SLOTS * 4, 1);
    this.#ring = new Uint8Array(this.buffer, INT_SLOTS * 4 + 8, INPUT_RING);
    if (!buffer) this.#deadline[0] = Infinity;
  }

  // ---- host side ----

  /** Asks the vCPU to run, pause or stop, and wakes it if it sleeps. */
  request(command: number): void {
    Atomics.store(this.#i32, COMMAND, command);
    this.wake();
  }

  /**
   * Declares that this host watches the published deadline and calls
   * {@link markTimerDue} when it passes (machine/host.ts does): the vCPU then
   * skips reading the clock on every exit.
   */
  watchDeadline(): void {
    Atomics.store(this.#i32, TIMER_DUE, HOST_WATCHES_DEADLINE);
  }

  /** The published deadline passed: the vCPU polls its timers at the next exit. */
  markTimerDue(): void {
    Atomics.compareExchange(this.#i32, TIMER_DUE, HOST_WATCHES_DEADLINE, 1);
  }

  /** Wakes a vCPU sleeping in {@link sleep}. */
  wake(): void {
    Atomics.add(this.#i32, WAKE, 1);
    Atomics.notify(this.#i32, WAKE);
  }

  /** Queues console input; returns how many bytes fit (the rest must be retried). */
  pushInput(bytes: Uint8Array): number {
    const head = Atomics.load(this.#i32, IN_HEAD);
    const tail = Atomics.load(this.#i32, IN_TAIL);
    const free = INPUT_RING - 1 - ((head - tail + INPUT_RING) % INPUT_RING);
    const n = Math.min(free, bytes.length);
    for (let i = 0; i < n; i++) this.#ring[(head + i) % INPUT_RING] = bytes[i];
    Atomics.store(this.#i32, IN_HEAD, (head + n) % INPUT_RING);
    if (n > 0) this.wake();
    return n;
  }

  /** The vCPU's activity (set by the vCPU, read by the host). */
  get activity(): number {
    return Atomics.load(this.#i32, STATE);
  }

  set activity(value: number) {
    Atomics.store(this.#i32, STATE, value);
    this.#bumpSeq();
  }

  /** The timer deadline the vCPU published (ms on the shared time base), or Infinity. */
  get deadlineMs(): number {
    return this.#deadline[0];
  }

  /** Resolves when the vCPU publishes a new deadline or changes activity (or after `ms`). */
  async changed(ms: number): Promise<void> {
    const seq = Atomics.load(this.#i32, DEADLINE_SEQ);
    const w = Atomics.waitAsync(this.#i32, DEADLINE_SEQ, seq, ms);
    if (w.async) await w.value;
  }

  /** How many pause requests the vCPU has acknowledged (it bumps this once paused). */
  get pauseAcks(): number {
    return Atomics.load(this.#i32, PAUSE_ACK);
  }

  /** The vCPU thread's kernel thread id (0 until it published it). */
  get thread(): number {
    return Atomics.load(this.#i32, THREAD);
  }

  /**
   * Another thread delivered something (an IPI, a forwarded access): the
   * host keeps kicking a running vCPU until it {@link takeAttention}s.
   */
  requestAttention(): void {
    Atomics.store(this.#i32, ATTENTION, 1);
    this.wake();
  }

  /** Whether attention was requested and not yet taken. */
  get wantsAttention(): boolean {
    return Atomics.load(this.#i32, ATTENTION) !== 0;
  }

  // ---- vCPU side ----

  /** Clears the attention flag (before the vCPU looks at what was delivered). */
  takeAttention(): void {
    if (Atomics.load(this.#i32, ATTENTION) !== 0) Atomics.store(this.#i32, ATTENTION, 0);
  }

  /** Publishes the thread id that kicks (tgkill) must target. */
  publishThread(tid: number): void {
    Atomics.store(this.#i32, THREAD, tid);
  }

  get command(): number {
    return Atomics.load(this.#i32, COMMAND);
  }

  /** Publishes the next timer deadline (ms on the shared time base) for the host's kicker. */
  publishDeadline(ms: number): void {
    if (this.#deadline[0] === ms) return;
    this.#deadline[0] = ms;
    this.#bumpSeq();
  }

  #bumpSeq(): void {
    Atomics.add(this.#i32, DEADLINE_SEQ, 1);
    Atomics.notify(this.#i32, DEADLINE_SEQ);
  }

  /**
   * Whether timers may be due: with a watching host, only when it said so
   * (and the flag is re-armed); otherwise always (the caller reads the clock).
   */
  takeTimerDue(): boolean {
    const v = Atomics.load(this.#i32, TIMER_DUE);
    if (v === HOST_WATCHES_DEADLINE) return false;
    if (v === 1) Atomics.store(this.#i32, TIMER_DUE, HOST_WATCHES_DEADLINE);
    return true;
  }

  /** The current wake counter; pass it to {@link sleep} so no wake-up is lost. */
  get wakeSeq(): number {
    return Atomics.load(this.#i32, WAKE);
  }

  /** Sleeps until woken (if nothing happened since `seq` was read) or `timeoutMs` passes. */
  sleep(seq: number, timeoutMs: number): void {
    Atomics.wait(this.#i32, WAKE, seq, Math.max(0, timeoutMs));
  }

  /** Marks a pause as taken effect. */
  ackPause(): void {
    Atomics.add(this.#i32, PAUSE_ACK, 1);
    this.#bumpSeq();
  }

  /** Bytes of input waiting. */
  get inputAvailable(): number {
    const head = Atomics.load(this.#i32, IN_HEAD);
    const tail = Atomics.load(this.#i32, IN_TAIL);
    return (head - tail + INPUT_RING) % INPUT_RING;
  }

  /** Hands waiting input to `accept`, which returns how many bytes it took. */
  drainInput(accept: (bytes: Uint8Array) => number): void {
    const n = this.inputAvailable;
    if (n === 0) return;
    const tail = Atomics.load(this.#i32, IN_TAIL);
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = this.#ring[(tail + i) % INPUT_RING];
    const taken = accept(bytes);
    Atomics.store(this.#i32, IN_TAIL, (tail + taken) % INPUT_RING);
  }
}
