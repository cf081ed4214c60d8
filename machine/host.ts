/**
 * The host side of a running VM (main thread): starts the vCPU worker, feeds
 * it console input, kicks it out of the guest when a timer is due, and
 * pauses, resumes and stops it.
 *
 * @example
 * ```ts
 * import { VmHost } from "./host.ts";
 * // const host = new VmHost({ config, serial: { serial: "stdio" } });
 * // const outcome = await host.start();
 * ```
 * @module
 */

import type { AccelChoice } from "../accel/select.ts";
import { installKickHandler, kickVcpu } from "../accel/kick.ts";
import type { KickToken } from "../accel/types.ts";
import type { VmConfig } from "../config/schema.ts";
import { openLibc } from "../ffi/libc.ts";
import { Activity, Command, VcpuControl } from "./vcpu_channel.ts";
import type { Outcome } from "./machine.ts";
import { SerialOutputRing, type SerialTarget } from "./serial_sink.ts";
import type { VgaShared } from "../devices/vga/shared.ts";
import type { DisplayHost } from "../display/display_host.ts";

/**
 * The PC machine's vCPU worker (the default). Another machine kind brings its
 * own worker speaking the same protocol; which one a config needs is decided
 * in one place: `machineWorker` in `solo5/select.ts`.
 */
export const PC_WORKER_URL: URL = new URL("./vcpu_worker.ts", import.meta.url);
import type { LockdownPlan, LockdownReport } from "./lockdown.ts";

/** Host -> worker. */
export interface WorkerRequest {
  config: VmConfig;
  accel: AccelChoice;
  control: SharedArrayBuffer;
  originMs: number;
  serial: SerialTarget;
  kernelImage?: Uint8Array;
  /** A {@link SerialOutputRing}'s buffer: console output is also copied there. */
  outputRing?: SharedArrayBuffer;
  /** Every vCPU's channel (index 0 is `control`), when the config has several. */
  controls?: SharedArrayBuffer[];
  /**
   * Two Int32 slots: [0] a {@link GuestRequest} for the guest's vmmci device
   * (0 when none); [1] 1 while a guest driver runs that device (the worker writes it).
   */
  guestRequests?: SharedArrayBuffer;
  /** The VGA's shared memory, when the config has a display. */
  display?: VgaShared;
  /** Lock the process down once the machine is built, before the guest runs (see lockdown.ts). */
  lockdown?: LockdownPlan;
}

/** Requests to the guest through its vmmci device (see {@link VmHost.requestGuest}). */
export const GuestRequest = { NONE: 0, SHUTDOWN: 1, REBOOT: 2, POWER_BUTTON: 3 } as const;

/** Worker -> host. */
export type WorkerReply =
  | {
    type: "started";
    kickToken: KickToken;
    boot: string;
    vmmci?: boolean;
    lockdown?: LockdownReport;
    /** The machine has the ACPI power button (the PC machine does). */
    powerButton?: boolean;
  }
  | { type: "outcome"; outcome: Outcome; postCodes: { code: number; atNs: number }[] };

/** Options for {@link VmHost}. */
export interface VmHostOptions {
  config: VmConfig;
  serial: SerialTarget;
  /** Overrides `config.vm.accel`. */
  accel?: AccelChoice;
  kernelImage?: Uint8Array;
  /** The vCPU worker module to run (default {@link PC_WORKER_URL}). */
  worker?: URL;
  /** Called once the guest is about to run, with the loader's summary. */
  onStarted?: (boot: string) => void;
  /**
   * Receives a copy of the guest's console output on the host thread (in
   * addition to `serial`), in chunks, in order; every byte is delivered before
   * the promise from {@link VmHost.start} resolves.
   */
  onSerialOutput?: (bytes: Uint8Array) => void;
  /** Lock the VM process down before the guest runs; see {@link VmHost.lockdown}. */
  lockdown?: LockdownPlan;
}

/** A VM whose vCPU runs in a Worker. */
export class VmHost {
  /** vCPU 0's channel (the device thread's). */
  readonly control: VcpuControl = new VcpuControl();
  /** Every vCPU's channel, by index (`control` first). */
  readonly controls: VcpuControl[];
  readonly options: VmHostOptions;
  #worker?: Worker;
  #token?: KickToken;
  #done = false;
  readonly #guestRequests = new Int32Array(new SharedArrayBuffer(8));
  #hasVmmci = false;
  /** What the lock-down did (set before `onStarted` is called). */
  lockdown?: LockdownReport;
  #hasPowerButton = false;

  /** POST codes the guest wrote, with timestamps (after the VM ended). */
  postCodes: { code: number; atNs: number }[] = [];
  #display?: DisplayHost;

  constructor(options: VmHostOptions) {
    this.options = options;
    const vcpus = Math.max(1, options.config.vm.vcpus);
    this.controls = [this.control, ...Array.from({ length: vcpus - 1 }, () => new VcpuControl())];
    for (const c of this.controls) c.watchDeadline();
  }

  /** The graphical console, when the config has one (from {@link start} on). */
  get display(): DisplayHost | undefined {
    return this.#display;
  }

  /** Makes the vCPU poll its devices soon (console clients' input waits there). */
  #attention(): void {
    this.control.markTimerDue();
    this.control.wake();
    this.kick();
  }

  /** Boots the VM; resolves with how it ended. */
  async start(): Promise<Outcome> {
    const d = this.options.config.display;
    if (d && !this.#display) {
      // Loaded only for a VM with a display: the console servers are not on every start's path.
      const { DisplayHost } = await import("../display/display_host.ts");
      this.#display = new DisplayHost(d, this.options.config.vm.name, () => this.#attention());
    }
    return this.#run();
  }

  #run(): Promise<Outcome> {
    installKickHandler();
    const worker = new Worker(this.options.worker ?? PC_WORKER_URL, { type: "module" });
    this.#worker = worker;
    const request: WorkerRequest = {
      config: this.options.config,
      accel: this.options.accel ?? this.options.config.vm.accel,
      control: this.control.buffer,
      originMs: performance.timeOrigin,
      serial: this.options.serial,
      kernelImage: this.options.kernelImage,
      guestRequests: this.#guestRequests.buffer as SharedArrayBuffer,
      display: this.#display?.shared,
      lockdown: this.options.lockdown,
      controls: this.controls.length > 1 ? this.controls.map((c) => c.buffer) : undefined,
    };
    // Listen before the vCPU starts (and before any lock-down): the sockets stay open.
    this.#display?.start();
    const onOutput = this.options.onSerialOutput;
    const ring = onOutput ? new SerialOutputRing() : undefined;
    if (ring) request.outputRing = ring.buffer;
    const outcome = new Promise<Outcome>((resolve) => {
      worker.onmessage = (e: MessageEvent<WorkerReply>) => {
        const m = e.data;
        if (m.type === "started") {
          this.#token = m.kickToken;
          this.#hasVmmci = m.vmmci === true;
          this.lockdown = m.lockdown;
          this.#hasPowerButton = m.powerButton === true;
          this.options.onStarted?.(m.boot);
          this.#kicker(this.control, true);
          for (const c of this.controls.slice(1)) this.#kicker(c, false);
        } else {
          this.postCodes = m.postCodes;
          this.#finish();
          resolve(m.outcome);
        }
      };
      worker.onerror = (e) => {
        e.preventDefault();
        this.#finish();
        resolve({ kind: "failed", reason: `vCPU thread crashed: ${e.message}` });
      };
      worker.postMessage(request);
    });
    if (!ring || !onOutput) return outcome;
    let ended = false;
    const pump = (async () => {
      while (!ended) {
        const seq = ring.seq;
        const bytes = ring.drain();
        if (bytes.length) onOutput(bytes);
        else await ring.changed(seq, 200);
      }
      // The worker pushed its last bytes before it posted the outcome.
      const rest = ring.drain();
      if (rest.length) onOutput(rest);
    })();
    return outcome.then(async (o) => {
      ended = true;
      await pump;
      return o;
    });
  }

  #finish(): void {
    this.#done = true;
    this.#display?.close();
    this.control.wake();
    this.#worker?.terminate();
  }

  /** Kicks the vCPUs out of the guest (they then look at commands, input and timers). */
  kick(): void {
    for (const c of this.controls) this.#kick(c);
  }

  #kick(c: VcpuControl): void {
    const a = c.activity;
    if (this.#done || (a !== Activity.IN_GUEST && a !== Activity.IN_VMM)) return;
    // vCPU 0 gave its token when it started; the others publish their thread ids.
    const token = c === this.control
      ? this.#token
      : c.thread
      ? { thread: String(c.thread) }
      : undefined;
    if (token) kickVcpu(openLibc(), token);
  }

  /**
   * Guest time must advance while the vCPU runs without exiting: kick it at
   * each deadline, and again every few ms while something waits for it
   * (a command, input, a passed deadline). A kick is only a signal, and one
   * that lands just before the vCPU enters the guest is lost: the next one
   * is not. (The host never writes into the vCPU's kvm_run page: the vCPU
   * thread may unmap it at any moment.)
   */
  async #kicker(control: VcpuControl, deviceThread: boolean): Promise<void> {
    while (!this.#done && control.activity !== Activity.DONE) {
      const a = control.activity;
      const busy = a === Activity.IN_GUEST || a === Activity.IN_VMM;
      const wait = control.deadlineMs - performance.now();
      const wanted = wait <= 0 || control.command !== Command.RUN || control.wantsAttention ||
        (deviceThread &&
          (control.inputAvailable > 0 || Atomics.load(this.#guestRequests, 0) !== 0));
      if (wait <= 0) control.markTimerDue();
      if (!busy) {
        // Halted or paused: the vCPU sleeps on its own deadline; wait for it to change state.
        await control.changed(1000);
      } else if (wanted) {
        this.#kick(control);
        await control.changed(5);
      } else {
        await control.changed(Math.min(wait, 1000));
      }
    }
  }

  /** Sends console input; returns how many bytes were accepted. */
  input(bytes: Uint8Array): number {
    const n = this.control.pushInput(bytes);
    if (n > 0) this.kick();
    return n;
  }

  /** Pauses the vCPU; resolves once it has stopped executing guest code. */
  async pause(): Promise<void> {
    const acks = this.controls.map((c) => c.pauseAcks);
    for (const c of this.controls) c.request(Command.PAUSE);
    this.kick();
    for (const [i, c] of this.controls.entries()) {
      while (!this.#done && c.activity !== Activity.DONE && c.pauseAcks === acks[i]) {
        await c.changed(50);
      }
    }
  }

  /** Resumes paused vCPUs. */
  resume(): void {
    for (const c of this.controls) c.request(Command.RUN);
  }

  /**
   * Asks the guest to shut down or reboot through its vmmci device (the guest
   * decides; nothing is forced). False when the VM has no vmmci device or the
   * guest runs no driver for it (vmd then powers the VM off at once).
   */
  requestGuest(request: typeof GuestRequest.SHUTDOWN | typeof GuestRequest.REBOOT): boolean {
    // No device, or no driver for it (a guest that would never see the request).
    if (!this.#hasVmmci || this.#done || Atomics.load(this.#guestRequests, 1) !== 1) return false;
    Atomics.store(this.#guestRequests, 0, request);
    this.control.wake();
    this.kick();
    return true;
  }
  /**
   * Presses the ACPI power button (PM1a PWRBTN_STS, the SCI): an ACPI guest
   * shuts itself down. False when the machine has none (Solo5) or ended.
   */
  pressPowerButton(): boolean {
    if (this.#done || !this.#hasPowerButton) return false;
    Atomics.store(this.#guestRequests, 0, GuestRequest.POWER_BUTTON);
    this.control.wake();
    this.kick();
    return true;
  }

  /** Asks the vCPU to stop; the promise from {@link start} then resolves with "stopped". */
  stop(): void {
    for (const c of this.controls) c.request(Command.STOP);
    this.kick();
  }
}
