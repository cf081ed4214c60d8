/**
 * Picks the accelerator a config asks for, and loads only that back-end:
 * each one is a dynamic `import()`, so a KVM start never loads the OpenBSD
 * back-end, and a real OpenBSD start never loads KVM.
 *
 * The one edge from the product into the test machinery is here:
 * `openbsd-on-kvm` loads the vmm(4) emulation from `tests/vmm_emulation/`
 * (a testing aid that runs the OpenBSD back-end over KVM), and only when
 * that accelerator is chosen.
 *
 * @module
 */

import type { Libc } from "../ffi/libc.ts";
import type { Accel } from "./types.ts";

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

/** Loads and opens the accelerator; errors say what to do. */
export async function createAccel(choice: AccelChoice, libc: Libc): Promise<Accel> {
  const which = resolveAccel(choice);
  switch (which) {
    case "kvm": {
      if (Deno.build.os !== "linux") {
        throw new Error(`accel "kvm" needs Linux; this host runs ${Deno.build.os}`);
      }
      const { KvmAccel } = await import("./kvm/kvm.ts");
      return new KvmAccel(libc);
    }
    case "openbsd": {
      if ((Deno.build.os as string) !== "openbsd") {
        throw new Error(
          `accel "openbsd" needs OpenBSD; this host runs ${Deno.build.os} ` +
            `(accel "openbsd-on-kvm" runs the same back-end over KVM, for testing)`,
        );
      }
      // With the layout of this host's own vmm(4) headers.
      const { openOpenbsdAccel } = await import("./openbsd/vmm.ts");
      return openOpenbsdAccel(libc);
    }
    case "openbsd-on-kvm": {
      // A testing aid: the OpenBSD back-end talking to vmm(4) as emulated on KVM.
      if (Deno.build.os !== "linux") {
        throw new Error(`accel "openbsd-on-kvm" needs Linux KVM; this host runs ${Deno.build.os}`);
      }
      const [{ OpenbsdAccel }, { VmmOnKvmLibc }] = await Promise.all([
        import("./openbsd/vmm.ts"),
        import("../tests/vmm_emulation/vmm_on_kvm.ts"),
      ]);
      return new OpenbsdAccel(new VmmOnKvmLibc(libc));
    }
  }
}
