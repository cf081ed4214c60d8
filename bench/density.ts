/**
 * Density: VMs created, booted to their exit port and destroyed per second
 * on one core. vmmctl in-process (a Machine on the KVM back-end, the hello
 * guest, the run loop on this thread, close; again), against QEMU's
 * process-per-VM rate (microvm + KVM, one after another).
 *
 * @module
 */

import { createAccel } from "../accel/select.ts";
import type { Accel } from "../accel/types.ts";
import { openLibc } from "../ffi/libc.ts";
import { guestPath } from "../guests/images.ts";
import { VcpuControl } from "../machine/vcpu_channel.ts";
import { Machine } from "../machine/machine.ts";
import { runLoop } from "../machine/run_loop.ts";
import { checkRun, runQemuFlavour } from "./boot.ts";
import { benchConfig } from "./exits.ts";
import { qemuLabel } from "./qemu_ref.ts";
import { measuredRow, type Row } from "./report.ts";
import { summarize } from "./stats.ts";

/** hello's exit status. */
const HELLO_STATUS = 33;

/** Builds, runs and destroys one hello VM in this thread; throws unless it exits normally. */
export function oneVm(accel: Accel, image: Uint8Array, kernel: string): void {
  const m = new Machine({
    config: benchConfig(kernel, ""),
    accel,
    serialOut: () => {},
    kernelImage: image,
  });
  try {
    const o = runLoop(m, new VcpuControl());
    if (o.kind !== "exit-port" || o.status !== HELLO_STATUS) {
      throw new Error(`hello ended with ${JSON.stringify(o)}`);
    }
  } finally {
    m.close();
  }
}

/** Options of {@link benchDensity}. */
export interface DensityBenchOptions {
  reps: number;
  /** Length of one in-process sample. */
  windowMs: number;
  qemuInstalled: boolean;
  log: (line: string) => void;
}

/** The density rows. */
export async function benchDensity(o: DensityBenchOptions): Promise<Row[]> {
  const kernel = guestPath("hello");
  const image = await Deno.readFile(kernel);
  const accel = await createAccel("kvm", openLibc());
  oneVm(accel, image, kernel); // warm-up: JIT, CPUID cache
  const ours: number[] = [];
  const qemu: number[] = [];
  const qemuCpu: number[] = [];
  for (let i = 0; i < o.reps; i++) {
    let n = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < o.windowMs) {
      oneVm(accel, image, kernel);
      n++;
      t = performance.now();
    }
    ours.push((n * 1000) / (t - t0));
    if (o.qemuInstalled) {
      const q = await runQemuFlavour("microvm-kvm", { kernel });
      checkRun("QEMU microvm KVM hello", q, HELLO_STATUS);
      qemu.push(1000 / q.exitMs);
      qemuCpu.push(q.cpuMs);
    }
    o.log(`  rep ${i + 1}/${o.reps}: vmmctl ${ours[i].toFixed(1)} VMs/s in-process`);
  }
  return [measuredRow({
    section: "density",
    name: "hello VMs created, run to exit, destroyed per second, one core",
    unit: "VMs/s",
    better: "higher",
    ours: summarize(ours),
    reference: qemu.length ? summarize(qemu) : undefined,
    referenceName: qemu.length ? `${qemuLabel("microvm-kvm")}, process per VM` : undefined,
    note: qemu.length
      ? `vmmctl: in-process, sequential; QEMU: one process after another, ` +
        `${summarize(qemuCpu).median.toFixed(0)} ms CPU each`
      : "QEMU skipped: qemu-system-x86_64 is not installed",
  })];
}
