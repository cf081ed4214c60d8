/**
 * Records a guest run of the OpenBSD back-end over the vmm(4)-on-KVM
 * emulation as a transcript, and runs a guest over any {@link Libc} with the
 * same machine (so a replay sees exactly the calls the recording made).
 *
 * Regenerate the committed transcript (needs /dev/kvm):
 *
 * ```sh
 * deno run --allow-all tests/transcripts/openbsd/record.ts
 * ```
 *
 * @module
 */

import type { Libc } from "../../../ffi/libc.ts";
import { openLibc } from "../../../ffi/libc.ts";
import type { VmConfig } from "../../../config/schema.ts";
import { VcpuControl } from "../../../machine/vcpu_channel.ts";
import { Machine, type Outcome } from "../../../machine/machine.ts";
import { runLoop } from "../../../machine/run_loop.ts";
import { VmmOnKvmLibc } from "../../vmm_emulation/vmm_on_kvm.ts";
import { OpenbsdAccel } from "../../../accel/openbsd/vmm.ts";
import { formatTranscript, RecordingLibc, type Transcript } from "./transcript.ts";

/** What a guest run produced. */
export interface GuestRun {
  outcome: Outcome;
  serial: string;
}

/** The machine config the transcripts are recorded with (small, no devices beyond the PC). */
export function transcriptConfig(kernel: string, cmdline: string): VmConfig {
  return {
    vm: {
      name: "transcript",
      memoryBytes: 16 * 1024 * 1024,
      vcpus: 1,
      accel: "openbsd",
      irqchip: "user",
    },
    boot: { kernel, cmdline },
    disks: [],
    interfaces: [],
    console: { serial: "none" },
    debug: { exitPort: 0xf4 },
  };
}

/**
 * Boots `image` on the OpenBSD back-end over `libc` and runs it to the end,
 * with a clock that stands still (so timers never fire and the run is the
 * same every time).
 */
export function runGuest(libc: Libc, image: Uint8Array, cmdline: string): GuestRun {
  const accel = new OpenbsdAccel(libc);
  let serial = "";
  const decoder = new TextDecoder();
  try {
    const machine = new Machine({
      config: transcriptConfig("guest.bin", cmdline),
      accel,
      kernelImage: image,
      clock: { nowNs: () => 0 },
      serialOut: (bytes) => (serial += decoder.decode(bytes, { stream: true })),
    });
    let outcome: Outcome;
    try {
      outcome = runLoop(machine, new VcpuControl());
    } finally {
      machine.close();
    }
    return { outcome, serial };
  } finally {
    accel.close();
  }
}

/** Runs `image` over the emulation and returns the transcript of it. */
export function recordGuest(
  image: Uint8Array,
  cmdline: string,
  description: string,
): { transcript: Transcript; run: GuestRun } {
  const emulation = new VmmOnKvmLibc(openLibc());
  const recorder = new RecordingLibc(emulation);
  try {
    const run = runGuest(recorder, image, cmdline);
    return { transcript: recorder.transcript(description), run };
  } finally {
    emulation.shutdown();
  }
}

/** The committed transcript of the hello guest. */
export const HELLO_TRANSCRIPT = new URL("./hello.json", import.meta.url);
/** The command line it was recorded with. */
export const HELLO_CMDLINE = "greeting=hi answer=42";

if (import.meta.main) {
  const image = Deno.readFileSync(new URL("../../../guests/bin/hello.bin", import.meta.url));
  const { transcript, run } = recordGuest(
    image,
    HELLO_CMDLINE,
    "guests/bin/hello.bin on the OpenBSD back-end over vmm(4)-on-KVM (era A, VMX)",
  );
  Deno.writeTextFileSync(HELLO_TRANSCRIPT, formatTranscript(transcript));
  // The repository's JSON is deno-fmt formatted.
  new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", HELLO_TRANSCRIPT.pathname] })
    .outputSync();
  console.log(
    `${transcript.events.length} calls; outcome ${
      JSON.stringify(run.outcome)
    }; serial:\n${run.serial}`,
  );
}
