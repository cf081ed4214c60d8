/**
 * The vCPU thread of a Solo5 unikernel: the tender machine's twin of
 * `machine/vcpu_worker.ts`, speaking the same {@link WorkerRequest} /
 * {@link WorkerReply} protocol so {@link VmHost} runs either.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { createAccel } from "../accel/select.ts";
import { openLibc } from "../ffi/libc.ts";
import { VcpuControl } from "../machine/vcpu_channel.ts";
import type { Outcome } from "../machine/machine.ts";
import { openSerialSink, SerialOutputRing } from "../machine/serial_sink.ts";
import type { WorkerReply, WorkerRequest } from "../machine/host.ts";
import { describeTrap, Solo5Machine } from "./tender.ts";

function reply(message: WorkerReply): void {
  self.postMessage(message);
}

self.onmessage = async (event: MessageEvent<WorkerRequest>) => {
  const req = event.data;
  const control = new VcpuControl(req.control);
  let sink: ReturnType<typeof openSerialSink> = { write: () => {}, close: () => {} };
  const ring = req.outputRing ? new SerialOutputRing(req.outputRing) : undefined;
  const output = (bytes: Uint8Array) => {
    sink.write(bytes);
    ring?.push(bytes);
  };
  const shift = performance.timeOrigin - req.originMs;
  const clock = { nowNs: () => (performance.now() + shift) * 1e6 };
  let machine: Solo5Machine | undefined;
  let outcome: Outcome;
  try {
    sink = openSerialSink(req.serial); // may refuse the file: that ends the VM with its reason
    const libc = openLibc();
    machine = new Solo5Machine({
      config: req.config,
      accel: await createAccel(req.accel, libc),
      output,
      clock,
      kernelImage: req.kernelImage,
      libc,
    });
    const lockdown = req.lockdown
      ? await (await import("../machine/lockdown.ts")).lockDownVcpuThread(req.lockdown)
      : undefined;
    reply({
      type: "started",
      lockdown,
      kickToken: machine.vcpu.kickToken(),
      boot: machine.boot.summary,
    });
    outcome = machine.run(control);
    if (machine.lastTrap && outcome.kind === "exit-port") {
      console.error(`vmmctl: solo5: guest aborted after a trap: ${describeTrap(machine.lastTrap)}`);
    }
  } catch (e) {
    outcome = { kind: "failed", reason: e instanceof Error ? e.message : String(e) };
  }
  try {
    machine?.close();
  } catch (e) {
    console.error(`vmmctl: closing the VM: ${e instanceof Error ? e.message : e}`);
  }
  sink.close();
  reply({ type: "outcome", outcome, postCodes: [] });
};
