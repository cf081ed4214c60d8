/**
 * `vmmctl stop`'s clean path for ACPI guests: the guest (guests/acpi_off.asm)
 * reads the SCI and PM1a blocks from our FADT, routes the SCI through the
 * I/O APIC, enables the fixed power button and waits; the host's shutdown
 * request presses the button and the guest enters S5 (power-off).
 */
import assert from "node:assert/strict";
import { compareSerial } from "../guests/expectations.ts";
import { guestPath } from "../guests/images.ts";
import { bootGuest, kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";

const noKvm = !kvmAvailable();
if (noKvm) console.warn(`acpi guest: ${NO_KVM_MESSAGE}`);

const LINES = [
  "acpi power button guest",
  "sci=9 pm1a_evt=0600 pm1a_cnt=0604",
  "waiting for the power button",
  "power button pressed: entering S5",
];

for (const irqchip of ["user", "kernel"] as const) {
  Deno.test({
    name: `acpi guest: the host's shutdown request presses the power button (irqchip ${irqchip})`,
    ignore: noKvm,
    async fn() {
      let accepted: boolean | undefined;
      const r = await bootGuest({
        kernel: guestPath("acpi_off"),
        irqchip,
        timeoutMs: 60_000,
        // Pressed at once: PWRBTN_STS stays set until the guest enables the button.
        onStarted: (host) => {
          accepted = host.pressPowerButton();
        },
      });
      assert.equal(accepted, true);
      assert.equal(compareSerial(LINES, r.serial), undefined, r.serial);
      assert.equal(r.outcome.kind, "poweroff", JSON.stringify(r.outcome));
    },
  });
}
