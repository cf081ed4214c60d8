/**
 * The vCPU thread: builds the machine (memory, devices, loaded kernel) and
 * runs vCPU 0's loop with synchronous FFI. Talks to the host through the
 * shared {@link VcpuControl} and a few messages.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { createAccel } from "../accel/select.ts";
import type { Accel } from "../accel/types.ts";
import { openLibc } from "../ffi/libc.ts";
import { VcpuControl } from "./vcpu_channel.ts";
import { Machine, type Outcome } from "./machine.ts";
import { runLoop } from "./run_loop.ts";
import { openSerialSink, SerialOutputRing } from "./serial_sink.ts";
import { GuestRequest, type WorkerReply, type WorkerRequest } from "./host.ts";

function reply(message: WorkerReply): void {
  self.postMessage(message);
}

/** The sink's writer, also copying every byte to the host's output ring. */
function copyTo(
  ring: SerialOutputRing,
  write: (bytes: Uint8Array) => void,
): (bytes: Uint8Array) => void {
  return (bytes) => {
    write(bytes);
    ring.push(bytes);
  };
}

self.onmessage = async (event: MessageEvent<WorkerRequest>) => {
  const req = event.data;
  const control = new VcpuControl(req.control);
  let sink: ReturnType<typeof openSerialSink> = { write: () => {}, close: () => {} };
  // One time base for both threads: ms since the host's time origin.
  const shift = performance.timeOrigin - req.originMs;
  const clock = { nowNs: () => (performance.now() + shift) * 1e6 };
  let machine: Machine | undefined;
  let accel: Accel | undefined;
  let outcome: Outcome;
  try {
    sink = openSerialSink(req.serial); // may refuse the file: that ends the VM with its reason
    const libc = openLibc();
    accel = await createAccel(req.accel, libc);
    machine = new Machine({
      config: req.config,
      accel,
      serialOut: req.outputRing
        ? copyTo(new SerialOutputRing(req.outputRing), sink.write)
        : sink.write,
      clock,
      kernelImage: req.kernelImage,
      // Loaded only for the VMs that need them (a KVM start of a kernel loads neither).
      bios: req.config.boot.kernel === undefined && req.kernelImage === undefined
        ? await import("./bios.ts")
        : undefined,
      scsi: req.config.cdrom ? await import("../devices/virtio/scsi.ts") : undefined,
      display: req.display
        ? { shared: req.display, attach: (await import("./display.ts")).attachDisplay }
        : undefined,
    });
    const vmmci = machine.virtio?.vmmci;
    if (vmmci && req.guestRequests) {
      // Polled with the timers after every exit and wake-up: hands the host's
      // request to the vmmci device on this thread, where the device lives.
      const slot = new Int32Array(req.guestRequests);
      machine.timed.push({
        poll() {
          Atomics.store(slot, 1, vmmci.driverReady() ? 1 : 0);
          const r = Atomics.exchange(slot, 0, GuestRequest.NONE);
          if (r === GuestRequest.SHUTDOWN) vmmci.requestShutdown();
          else if (r === GuestRequest.REBOOT) vmmci.requestReboot();
        },
        nextDeadlineNs: () => Infinity,
      });
    }
    // Everything is open: give up what the guest must not reach through us.
    const lockdown = req.lockdown
      ? await (await import("./lockdown.ts")).lockDownVcpuThread(req.lockdown)
      : undefined;
    reply({
      type: "started",
      lockdown,
      vmmci: vmmci !== undefined,
      kickToken: machine.vcpu.kickToken(),
      boot: machine.boot.summary,
    });
    outcome = runLoop(machine, control);
  } catch (e) {
    outcome = { kind: "failed", reason: e instanceof Error ? e.message : String(e) };
  }
  try {
    machine?.close();
    accel?.close?.();
  } catch (e) {
    console.error(`vmmctl: closing the VM: ${e instanceof Error ? e.message : e}`);
  }
  sink.close();
  reply({ type: "outcome", outcome, postCodes: machine?.post.entries() ?? [] });
};
