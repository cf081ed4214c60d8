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
// The SMP modules (smp.ts, ap_thread.ts, vcpu_peers.ts) load only for vcpus > 1.
import type { ApRequest } from "./smp.ts";

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

self.onmessage = async (event: MessageEvent<WorkerRequest | ApRequest>) => {
  if ("kind" in event.data && event.data.kind === "ap") {
    const { runApThread } = await import("./ap_thread.ts");
    await runApThread(event.data, (m) => self.postMessage(m));
    self.close();
    return;
  }
  const req = event.data as WorkerRequest;
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
    control.publishThread(Number(libc.threadId()));
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
    const pm = machine.pm;
    if (req.guestRequests) {
      // Polled with the timers after every exit and wake-up: hands the host's
      // request to the vmmci device and the ACPI power button on this thread,
      // where the devices live.
      const slot = new Int32Array(req.guestRequests);
      machine.timed.push({
        poll() {
          Atomics.store(slot, 1, vmmci?.driverReady() ? 1 : 0);
          const r = Atomics.exchange(slot, 0, GuestRequest.NONE);
          if (r === GuestRequest.SHUTDOWN) {
            vmmci?.requestShutdown();
            pm.pressPowerButton();
          } else if (r === GuestRequest.REBOOT) vmmci?.requestReboot();
          else if (r === GuestRequest.POWER_BUTTON) pm.pressPowerButton();
        },
        nextDeadlineNs: () => Infinity,
      });
    }
    const vcpus = req.config.vm.vcpus;
    if (vcpus > 1) {
      // This thread is the device thread; each AP gets a thread of its own.
      const buffers = req.controls ??
        [req.control, ...Array.from({ length: vcpus - 1 }, () => new VcpuControl().buffer)];
      const { VcpuPeers } = await import("./vcpu_peers.ts");
      const { ApThreads } = await import("./smp.ts");
      const peers = new VcpuPeers(buffers, libc, 0);
      machine.notifyVcpu = (i) => peers.notify(i);
      machine.aps = new ApThreads(machine, peers, req.accel, req.originMs);
      await machine.aps.started();
    }
    // Everything is open: give up what the guest must not reach through us.
    const lockdown = req.lockdown
      ? await (await import("./lockdown.ts")).lockDownVcpuThread(req.lockdown)
      : undefined;
    reply({
      type: "started",
      lockdown,
      vmmci: vmmci !== undefined,
      powerButton: true,
      kickToken: machine.vcpu.kickToken(),
      boot: machine.boot.summary,
    });
    outcome = runLoop(machine, control);
  } catch (e) {
    outcome = { kind: "failed", reason: e instanceof Error ? e.message : String(e) };
  }
  try {
    machine?.aps?.stopAll(); // no AP may run once the VM's memory goes
    machine?.close();
    accel?.close?.();
  } catch (e) {
    console.error(`vmmctl: closing the VM: ${e instanceof Error ? e.message : e}`);
  }
  sink.close();
  reply({ type: "outcome", outcome, postCodes: machine?.post.entries() ?? [] });
};
