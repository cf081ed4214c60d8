/**
 * Picks the accelerator a config asks for.
 *
 * @module
 */

import type { Libc } from "../ffi/libc.ts";
import type { Accel } from "./types.ts";
import { KvmAccel } from "./kvm/kvm.ts";
import { OpenbsdAccel } from "./openbsd/vmm.ts";
import { VmmOnKvmLibc } from "../tests/vmm_emulation/vmm_on_kvm.ts";

/** The accelerator names a config or `--accel` may use. */
export type AccelChoice = "auto" | "kvm" | "openbsd" | "openbsd-on-kvm";

/** The concrete back-end `choice` means on this host. */
export function resolveAccel(choice: AccelChoice, os: string = Deno.build.os): Exclude<
  AccelChoice,
  "auto"
> {
  if (choice !== "auto") return choice;
  return os === "openbsd" ? "openbsd" : "kvm";
}

/** Opens the accelerator; errors say what to do. */
export function createAccel(choice: AccelChoice, libc: Libc): Accel {
  const which = resolveAccel(choice);
  switch (which) {
    case "kvm":
      if (Deno.build.os !== "linux") {
        throw new Error(`accel "kvm" needs Linux; this host runs ${Deno.build.os}`);
      }
      return new KvmAccel(libc);
    case "openbsd":
      if ((Deno.build.os as string) !== "openbsd") {
        throw new Error(
          `accel "openbsd" needs OpenBSD; this host runs ${Deno.build.os} ` +
            `(accel "openbsd-on-kvm" runs the same back-end over KVM, for testing)`,
        );
      }
      return new OpenbsdAccel(libc);
    case "openbsd-on-kvm":
      // A testing aid: the OpenBSD back-end talking to vmm(4) as emulated on KVM.
      if (Deno.build.os !== "linux") {
        throw new Error(`accel "openbsd-on-kvm" needs Linux KVM; this host runs ${Deno.build.os}`);
      }
      return new OpenbsdAccel(new VmmOnKvmLibc(libc));
  }
}
