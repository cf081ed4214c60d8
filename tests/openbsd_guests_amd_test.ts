/**
 * Every test guest under the OpenBSD back-end over the emulation's AMD
 * personality (SVM exit codes, decode-assist bytes cut at page ends, HLT
 * stepped over before EIO): the same output and exit status as under KVM.
 * The Intel personality runs in openbsd_guests_test.ts.
 */
import { expectationLabel, GUEST_EXPECTATIONS } from "../guests/expectations.ts";
import { kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { checkGuestOverEmulation } from "./openbsd_guest_check.ts";
import { PERSONALITY_ENV } from "./vmm_emulation/vmm_on_kvm.ts";

const ignore = !kvmAvailable();
if (ignore) console.warn(`openbsd guests (AMD): ${NO_KVM_MESSAGE}`);
// This file runs in its own process: the emulation reads it when the VM starts.
Deno.env.set(PERSONALITY_ENV, "svm");

for (const e of GUEST_EXPECTATIONS) {
  Deno.test({
    name: `openbsd-on-kvm (AMD) guest ${
      expectationLabel(e)
    }: same output and exit status as under KVM`,
    ignore,
    fn: () => checkGuestOverEmulation(e),
  });
}
