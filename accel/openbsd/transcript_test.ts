/**
 * The OpenBSD back-end against recorded and hand-written ioctl transcripts,
 * with no hypervisor: every request and every input byte must be what the
 * transcript says.
 */
import assert from "node:assert/strict";
import type { CpuState, Segment } from "../types.ts";
import { OpenbsdAccel } from "./vmm.ts";
import {
  loadTranscript,
  patch,
  ReplayLibc,
  type Transcript,
  TranscriptMismatch,
  unpatch,
} from "../../tests/transcripts/openbsd/transcript.ts";
import {
  HELLO_CMDLINE,
  HELLO_TRANSCRIPT,
  recordGuest,
  runGuest,
} from "../../tests/transcripts/openbsd/record.ts";

const HELLO_IMAGE = new URL("../../guests/bin/hello.bin", import.meta.url);
const HELLO_SERIAL = "Hello from vmmctl guest\r\ncmdline: greeting=hi answer=42\r\nbye\r\n";
const HELLO_OUTCOME = { kind: "exit-port", status: 33 };

function transcript(name: string): Transcript {
  return loadTranscript(new URL(`../../tests/transcripts/openbsd/${name}`, import.meta.url));
}

function kvmAvailable(): boolean {
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("patch/unpatch: runs over a base, round trip", () => {
  const base = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const bytes = base.slice();
  bytes[1] = 0xff;
  bytes[3] = 0xee;
  bytes[11] = 0;
  const p = patch(bytes, base);
  assert.deepEqual(p, { n: 12, d: [[1, "ff03ee"], [11, "00"]] });
  assert.deepEqual(unpatch(p, base), bytes);
  assert.deepEqual(patch(new Uint8Array(4)), { n: 4, d: [] });
  assert.throws(() => unpatch({ n: 2, d: [[1, "aabb"]] }), /runs past 2 bytes/);
});

Deno.test("transcript hello.json: the hello guest replays byte for byte with no hypervisor", () => {
  const t = transcript("hello.json");
  const replay = new ReplayLibc(t);
  const run = runGuest(replay, Deno.readFileSync(HELLO_IMAGE), HELLO_CMDLINE);
  assert.equal(replay.mismatch, undefined, replay.mismatch?.message);
  assert.ok(replay.complete, `replayed ${replay.position} of ${t.events.length} calls`);
  assert.deepEqual(run.outcome, HELLO_OUTCOME);
  assert.equal(run.serial, HELLO_SERIAL);
  // The transcript holds the duties: every IO exit's RIP advance and IN merge is checked.
  assert.ok(t.events.filter((e) => e.request === "VMM_IOC_RUN").length > 50);
});

Deno.test("transcript replay fails on the first difference in the input bytes", () => {
  const t = transcript("hello.json");
  // Make the kernel report a 2-byte instruction for the first OUT: the back-end then
  // passes RIP + 2 into the next RUN, which no longer matches what was recorded.
  const runs = t.events.map((e, i) => [e, i] as const).filter(([e]) => e.request === "VMM_IOC_RUN");
  const [first, index] = runs[0];
  const lenAt = 12; // vm_exit.vei.vei_insn_len
  const exitOut = unpatch(first.exitOut!, unpatch(first.exitIn!));
  assert.equal(exitOut[lenAt], 1, "the first exit is a 1-byte OUT");
  exitOut[lenAt] = 2;
  const changed = structuredClone(t);
  changed.events[index].exitOut = patch(exitOut, unpatch(first.exitIn!));
  const replay = new ReplayLibc(changed);
  // The run loop turns the mismatch into a failed outcome; closing the VM then
  // goes off the transcript too.
  assert.throws(
    () => runGuest(replay, Deno.readFileSync(HELLO_IMAGE), HELLO_CMDLINE),
    TranscriptMismatch,
  );
  assert.ok(replay.mismatch instanceof TranscriptMismatch);
  // Byte 152 of vm_exit is vrs.vrs_gprs[RIP]: one too far.
  assert.match(
    replay.mismatch.message,
    /event \d+: VMM_IOC_RUN on fd \d+: vm_exit passed in differs at byte 152 \(expected ([0-9a-f]{2})/,
  );
});

Deno.test("transcripts open_eacces/open_eperm/open_enxio: open errors say what to do", () => {
  for (
    const [name, message] of [
      ["open_eacces.json", /^no permission on \/dev\/vmm: run as root \(doas\)$/],
      ["open_eperm.json", /^no permission on \/dev\/vmm: run as root \(doas\)$/],
      ["open_enxio.json", /^vmm\(4\) is not enabled: \/dev\/vmm is missing \(enable VMX\/SVM/],
    ] as const
  ) {
    const replay = new ReplayLibc(transcript(name));
    let error: Error | undefined;
    try {
      new OpenbsdAccel(replay);
    } catch (e) {
      error = e as Error;
    }
    assert.ok(error, name);
    assert.match(error.message, message, name);
    assert.ok(replay.complete, name);
  }
});

const OPTIONS = { ram: [{ gpa: 0, size: 0x200000 }], vcpus: 1, irqchip: "user" as const };

Deno.test("transcript create_enomem: VMM_IOC_CREATE's ENOMEM becomes a clear error", () => {
  const replay = new ReplayLibc(transcript("create_enomem.json"));
  const accel = new OpenbsdAccel(replay);
  assert.equal(accel.era, "A");
  assert.throws(
    () => accel.createVm({ ...OPTIONS, name: "enomem" }),
    /Cannot create VM "enomem": vmm\(4\) is out of memory or vCPUs \(VMM_IOC_CREATE: ENOMEM\)/,
  );
  accel.close();
  assert.ok(replay.complete, replay.mismatch?.message);
});

function zeroSegment(): Segment {
  return {
    base: 0n,
    limit: 0,
    selector: 0,
    type: 0,
    present: false,
    dpl: 0,
    db: false,
    s: false,
    l: false,
    g: false,
    avl: false,
    unusable: false,
  };
}

Deno.test("transcript unknown_exit: an exit reason vmmctl does not know fails, naming it", () => {
  const replay = new ReplayLibc(transcript("unknown_exit.json"));
  const accel = new OpenbsdAccel(replay);
  const vm = accel.createVm({ ...OPTIONS, name: "unknown" });
  const z = zeroSegment();
  const zero: CpuState = {
    regs: {
      rax: 0n,
      rbx: 0n,
      rcx: 0n,
      rdx: 0n,
      rsi: 0n,
      rdi: 0n,
      rsp: 0n,
      rbp: 0n,
      r8: 0n,
      r9: 0n,
      r10: 0n,
      r11: 0n,
      r12: 0n,
      r13: 0n,
      r14: 0n,
      r15: 0n,
      rip: 0n,
      rflags: 0n,
    },
    sregs: {
      cs: z,
      ds: z,
      es: z,
      fs: z,
      gs: z,
      ss: z,
      tr: z,
      ldt: z,
      gdt: { base: 0n, limit: 0 },
      idt: { base: 0n, limit: 0 },
      cr0: 0n,
      cr2: 0n,
      cr3: 0n,
      cr4: 0n,
      cr8: 0n,
      efer: 0n,
    },
  };
  const vcpu = vm.createVcpu(0, zero);
  const exit = vcpu.run();
  assert.ok(exit.kind === "fail", exit.kind);
  assert.equal(exit.raw, 0x21);
  assert.match(exit.reason, /^unexpected vmm\(4\) exit VM_EXIT_0x21 \(33\) at RIP 0x0: 00 00/);
  vcpu.close();
  vm.close();
  accel.close();
  assert.ok(replay.complete, replay.mismatch?.message ?? `at ${replay.position}`);
});

Deno.test({
  name: "transcript: a fresh recording over vmm(4)-on-KVM replays byte for byte",
  ignore: !kvmAvailable(),
  fn() {
    const image = Deno.readFileSync(HELLO_IMAGE);
    const { transcript: fresh, run } = recordGuest(image, HELLO_CMDLINE, "fresh hello");
    assert.deepEqual(run.outcome, HELLO_OUTCOME);
    assert.equal(run.serial, HELLO_SERIAL);
    const replay = new ReplayLibc(JSON.parse(JSON.stringify(fresh)));
    const again = runGuest(replay, image, HELLO_CMDLINE);
    assert.ok(replay.complete, replay.mismatch?.message);
    assert.equal(again.serial, HELLO_SERIAL);
    // The committed transcript was made the same way: same calls in the same order.
    const committed = loadTranscript(HELLO_TRANSCRIPT);
    assert.deepEqual(
      fresh.events.map((e) => e.request ?? e.op),
      committed.events.map((e) => e.request ?? e.op),
    );
  },
});
