/**
 * Every test guest under vmmctl's KVM back-end: the same output and exit
 * status as under QEMU (guests/expectations.ts is what QEMU prints), with
 * both interrupt-controller modes where the guest allows.
 */
import assert from "node:assert/strict";
import { compareSerial, expectationLabel, GUEST_EXPECTATIONS } from "../guests/expectations.ts";
import { guestPath } from "../guests/images.ts";
import { bootGuest, kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";

const ignore = !kvmAvailable();
if (ignore) console.warn(`kvm guests: ${NO_KVM_MESSAGE}`);

for (const e of GUEST_EXPECTATIONS) {
  Deno.test({
    name: `kvm guest ${expectationLabel(e)}: same output and exit status as under QEMU`,
    ignore,
    async fn() {
      // pioloop's 100k port exits take seconds; many times that when the host is loaded.
      const r = await bootGuest({
        kernel: guestPath(e.name),
        cmdline: e.cmdline,
        timeoutMs: 120_000,
      });
      const diff = compareSerial(e.lines, r.serial);
      assert.equal(diff, undefined, `${diff}\n--- serial ---\n${r.serial}`);
      if (e.end.kind === "triple-fault") {
        assert.equal(r.outcome.kind, "triple-fault");
      } else if (e.end.kind === "poweroff") {
        assert.equal(r.outcome.kind, "poweroff");
        assert.equal(r.status, 0);
      } else {
        assert.equal(r.status, e.status, JSON.stringify(r.outcome));
      }
    },
  });
}

// KVM's in-kernel PIC/PIT/IOAPIC (and its port 0x61) instead of ours.
for (const name of ["demo", "timer", "rtc", "hello", "serial"]) {
  Deno.test({
    name: `kvm guest ${name} with irqchip = "kernel"`,
    ignore,
    async fn() {
      const e = GUEST_EXPECTATIONS.find((x) => x.name === name)!;
      const r = await bootGuest({ kernel: guestPath(name), cmdline: e.cmdline, irqchip: "kernel" });
      assert.equal(compareSerial(e.lines, r.serial), undefined, r.serial);
      if (e.end.kind === "debug-exit") assert.equal(r.status, e.status);
    },
  });
}

Deno.test({
  name: "kvm: POST codes are recorded with increasing timestamps",
  ignore,
  async fn() {
    const r = await bootGuest({ kernel: guestPath("hello") });
    assert.ok(r.postCodes.length >= 2, JSON.stringify(r.postCodes));
    for (let i = 1; i < r.postCodes.length; i++) {
      assert.ok(r.postCodes[i].atNs >= r.postCodes[i - 1].atNs);
    }
  },
});

Deno.test({
  name: "kvm: pause stops the guest's progress, resume continues it, stop ends it",
  ignore,
  async fn() {
    // cpl3 with a long loop: it runs natively without exits, so pausing must kick it out.
    let paused = 0;
    let resumedAfter = 0;
    const r = await bootGuest({
      kernel: guestPath("cpl3"),
      cmdline: "iters=4000000000",
      timeoutMs: 30_000,
      onStarted: (host) => {
        (async () => {
          await new Promise((res) => setTimeout(res, 200));
          const t0 = performance.now();
          await host.pause();
          paused = performance.now() - t0;
          assert.equal(host.control.activity, 4 /* PAUSED */);
          await new Promise((res) => setTimeout(res, 300));
          assert.equal(host.control.activity, 4, "still paused after 300 ms");
          host.resume();
          await new Promise((res) => setTimeout(res, 100));
          resumedAfter = host.control.activity;
          host.stop();
        })();
      },
    });
    assert.equal(r.outcome.kind, "stopped");
    assert.ok(paused < 1000, `pause took ${paused} ms`);
    assert.notEqual(resumedAfter, 4, "the vCPU left the paused state");
  },
});
