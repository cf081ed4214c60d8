/**
 * The device thread's side of a VM with several vCPUs: starts one Worker
 * per application processor (machine/ap_thread.ts, in the vcpu_worker.ts module), serves their forwarded
 * device accesses on the machine's buses (this thread is the only one that
 * touches shared devices: see exit_mailbox.ts), and stops them all when the
 * VM ends.
 *
 * @module
 */

import type { AccelChoice } from "../accel/select.ts";
import type { VmOptions, VmShare } from "../accel/types.ts";
import { handleExit } from "./dispatch.ts";
import { ExitMailbox } from "./exit_mailbox.ts";
import type { Machine, Outcome } from "./machine.ts";
import { Activity, Command } from "./vcpu_channel.ts";
import type { VcpuPeers } from "./vcpu_peers.ts";

/** Device thread -> AP thread. */
export interface ApRequest {
  kind: "ap";
  index: number;
  accel: AccelChoice;
  vmOptions: VmOptions;
  share: VmShare;
  /** Every vCPU's channel buffer, by index. */
  controls: SharedArrayBuffer[];
  mailbox: SharedArrayBuffer;
  /** irqchip "user": the local APICs' register files and the EOI mailbox. */
  apicBuffer?: SharedArrayBuffer;
  eoiMailbox?: SharedArrayBuffer;
  originMs: number;
}

/** How long the device thread waits for the AP threads to create their vCPUs. */
const AP_START_TIMEOUT_MS = 120_000;

/** The AP threads run the vCPU worker module too (one module graph for every vCPU thread). */
const AP_WORKER_URL = new URL("./vcpu_worker.ts", import.meta.url);

/** The application processors of one machine, as the device thread drives them. */
export class ApThreads {
  readonly #machine: Machine;
  readonly #peers: VcpuPeers;
  readonly #mailboxes: ExitMailbox[] = [];
  readonly #workers: Worker[] = [];
  readonly #started: Promise<void>[] = [];
  #stopped = false;

  constructor(machine: Machine, peers: VcpuPeers, accel: AccelChoice, originMs: number) {
    this.#machine = machine;
    this.#peers = peers;
    const vm = machine.vm;
    if (!vm.share) throw new Error(`accel "${machine.accel.name}" cannot run several vCPUs yet`);
    const share = vm.share();
    const vcpus = machine.config.vm.vcpus;
    const vmOptions: VmOptions = {
      name: machine.config.vm.name,
      ram: machine.layout.ram,
      vcpus,
      irqchip: machine.irqchip,
    };
    for (let index = 1; index < vcpus; index++) {
      const mailbox = new ExitMailbox();
      this.#mailboxes.push(mailbox);
      const request: ApRequest = {
        kind: "ap",
        index,
        accel,
        vmOptions,
        share,
        controls: peers.controls.map((c) => c.buffer),
        mailbox: mailbox.buffer,
        apicBuffer: machine.interrupts?.apicBuffer,
        eoiMailbox: machine.interrupts?.eoiMailbox.words.buffer as SharedArrayBuffer | undefined,
        originMs,
      };
      const worker = new Worker(AP_WORKER_URL, { type: "module" });
      this.#started.push(
        new Promise((resolve) => {
          worker.onmessage = () => resolve();
          worker.onerror = (e) => {
            e.preventDefault();
            resolve();
          };
        }),
      );
      worker.postMessage(request);
      this.#workers.push(worker);
    }
  }

  /**
   * Resolves once every AP thread has created its vCPU (or given up): the
   * BSP must not run before, KVM drops IPIs to vCPUs it does not know yet.
   * Asynchronous on purpose: loading a Worker's module may need this
   * thread's event loop.
   */
  async started(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), AP_START_TIMEOUT_MS);
    });
    const r = await Promise.race([Promise.all(this.#started), timeout]);
    clearTimeout(timer);
    const late = this.#peers.controls.slice(1).some((c) => c.activity === Activity.STARTING);
    if (r === "timeout" || late) {
      this.stopAll();
      throw new Error(
        `The application processors' threads did not start within ${AP_START_TIMEOUT_MS} ms`,
      );
    }
  }

  /** Serves every waiting forwarded access; returns an AP's end if one reported it. */
  serve(): Outcome | undefined {
    for (const mailbox of this.#mailboxes) {
      if (!mailbox.pending) continue;
      const o = mailbox.serve((exit) => handleExit(exit, this.#machine));
      if (o) return o;
    }
    return undefined;
  }

  /** Stops every AP and waits (at most `timeoutMs`) until their threads let go of the VM. */
  stopAll(timeoutMs = 2000): void {
    if (this.#stopped) return;
    this.#stopped = true;
    const aps = this.#peers.controls.slice(1);
    for (const c of aps) c.request(Command.STOP);
    const until = performance.now() + timeoutMs;
    for (let i = 0; i < aps.length; i++) {
      while (aps[i].activity !== Activity.DONE && performance.now() < until) {
        this.serve(); // an AP waiting on its mailbox notices the stop within 50 ms anyway
        this.#peers.kick(i + 1);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    }
    for (const w of this.#workers) w.terminate();
  }
}
