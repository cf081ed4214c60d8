import assert from "node:assert/strict";
import { VcpuControl } from "../machine/vcpu_channel.ts";
import { Machine } from "../machine/machine.ts";
import { runLoop } from "../machine/run_loop.ts";
import { guestPath } from "../guests/images.ts";
import { benchConfig, runLoopJsCostNs } from "./exits.ts";
import { ScriptedPioAccel } from "./fake_vcpu.ts";

Deno.test("ScriptedPioAccel drives the real run loop: N POST writes, then the exit port", () => {
  const m = new Machine({
    config: benchConfig(guestPath("pioloop"), ""),
    accel: new ScriptedPioAccel(5, 0xf4, 0x16),
    serialOut: () => {},
  });
  try {
    const outcome = runLoop(m, new VcpuControl());
    assert.deepEqual(outcome, { kind: "exit-port", status: 0x2d });
    assert.equal(m.post.entries().length, 5);
  } finally {
    m.close();
  }
});

Deno.test("runLoopJsCostNs gives a positive per-exit cost", () => {
  const ns = runLoopJsCostNs(2000);
  assert.ok(Number.isFinite(ns) && ns > 0, String(ns));
});
