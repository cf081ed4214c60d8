/**
 * The smp guest (guests/smp.asm) with 1, 2 and 4 vCPUs under KVM, with our
 * local/I/O APICs (irqchip "user") and with KVM's (irqchip "kernel"), each
 * compared with QEMU (TCG) running the same image with `-smp N`: the APs
 * start by INIT/SIPI and print their APIC ids from their own CPUs, take and
 * send IPIs, and the BSP's APIC timer and the I/O APIC deliver.
 */
import assert from "node:assert/strict";
import { compareSerial, debugExitStatus, smpLines } from "../guests/expectations.ts";
import { guestPath } from "../guests/images.ts";
import { bootGuest, kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { isQemuInstalled, runQemu } from "./qemu.ts";

const noKvm = !kvmAvailable();
if (noKvm) console.warn(`smp guests: ${NO_KVM_MESSAGE}`);
const STATUS = debugExitStatus(0x31);

for (const cpus of [2, 4]) {
  Deno.test({
    name: `qemu tcg -smp ${cpus}: the smp guest prints what smpLines(${cpus}) says`,
    ignore: !isQemuInstalled(),
    async fn() {
      const r = await runQemu({
        kernel: guestPath("smp"),
        accel: "tcg",
        smp: cpus,
        timeoutMs: 60_000,
      });
      assert.ok(r);
      assert.equal(compareSerial(smpLines(cpus), r.serial), undefined, r.serial + r.stderr);
      assert.equal(r.status, STATUS);
    },
  });
}

for (const irqchip of ["user", "kernel"] as const) {
  for (const cpus of [1, 2, 4]) {
    Deno.test({
      name:
        `kvm smp guest, vcpus = ${cpus}, irqchip = "${irqchip}": same output as QEMU -smp ${cpus}`,
      ignore: noKvm,
      async fn() {
        const r = await bootGuest({
          kernel: guestPath("smp"),
          vcpus: cpus,
          irqchip,
          timeoutMs: 60_000,
        });
        const diff = compareSerial(smpLines(cpus), r.serial);
        assert.equal(
          diff,
          undefined,
          `${diff}\n--- serial ---\n${r.serial}\n${JSON.stringify(r.outcome)}`,
        );
        assert.equal(r.status, STATUS, JSON.stringify(r.outcome));
      },
    });
  }
}
