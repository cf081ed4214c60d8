/**
 * The thread of one application processor: attaches to the VM the device
 * thread created (same fd, same RAM), creates its vCPU, builds its local
 * APIC over the shared register file (irqchip "user") and runs
 * {@link runApLoop}. The device thread (machine/smp.ts) starts it in a
 * Worker of the same module as its own (vcpu_worker.ts), so one module
 * graph serves every vCPU thread.
 *
 * @module
 */

import { createAccel } from "../accel/select.ts";
import type { Accel, Vcpu, Vm } from "../accel/types.ts";
import { ApicBus } from "../devices/apic.ts";
import { LocalApic } from "../devices/apic.ts";
import { openLibc } from "../ffi/libc.ts";
import { resetState } from "../loaders/cpu_state.ts";
import { runApLoop } from "./ap_loop.ts";
import { ExitMailbox } from "./exit_mailbox.ts";
import { apicFiles, EoiMailbox } from "./machine.ts";
import type { Outcome } from "./machine.ts";
import type { ApRequest } from "./smp.ts";
import { Activity } from "./vcpu_channel.ts";
import { VcpuPeers } from "./vcpu_peers.ts";

/** Runs AP `req.index` until the VM ends; `post` answers the device thread. */
export async function runApThread(req: ApRequest, post: (message: unknown) => void): Promise<void> {
  const libc = openLibc();
  const peers = new VcpuPeers(req.controls, libc, req.index);
  const control = peers.controls[req.index];
  control.publishThread(Number(libc.threadId()));
  const mailbox = new ExitMailbox(req.mailbox);
  const wake = () => peers.notify(0);
  const shift = performance.timeOrigin - req.originMs;
  const clock = { nowNs: () => (performance.now() + shift) * 1e6 };
  let accel: Accel | undefined;
  let vm: Vm | undefined;
  let vcpu: Vcpu | undefined;
  let outcome: Outcome;
  try {
    accel = await createAccel(req.accel, libc);
    if (!accel.attachVm) throw new Error(`accel "${accel.name}" cannot run several vCPUs`);
    vm = accel.attachVm(req.share, req.vmOptions);
    vcpu = vm.createVcpu(req.index, resetState());
    let lapic: LocalApic | undefined;
    if (req.apicBuffer) {
      const files = apicFiles(req.apicBuffer, req.vmOptions.vcpus);
      const eois = new EoiMailbox(req.eoiMailbox);
      lapic = new LocalApic({
        id: req.index,
        regs: files[req.index],
        clock,
        bus: new ApicBus(files, (i) => peers.notify(i)),
        bsp: false,
        eoiBroadcast: (v) => {
          eois.post(v);
          wake();
        },
      });
    }
    // Activity leaves STARTING inside the loop; the device thread waits for this message.
    control.activity = Activity.IN_VMM;
    post({ type: "started" });
    outcome = runApLoop({
      index: req.index,
      vcpu,
      lapic,
      clock,
      control,
      mailbox,
      wakeDeviceThread: wake,
    });
  } catch (e) {
    outcome = {
      kind: "failed",
      reason: `vCPU ${req.index}: ${e instanceof Error ? e.message : e}`,
    };
  }
  try {
    vcpu?.close();
    vm?.close();
    accel?.close?.();
  } catch (e) {
    console.error(`vmmctl: closing vCPU ${req.index}: ${e instanceof Error ? e.message : e}`);
  }
  // Only an end of the AP's own (not a stop the device thread asked for) ends the VM.
  if (outcome.kind !== "stopped") mailbox.reportOutcome(outcome, wake);
  control.activity = Activity.DONE;
  post({ type: "ended" }); // the device thread may still wait for "started"
}
