import assert from "node:assert/strict";
import {
  canTransition,
  IllegalTransitionError,
  Lifecycle,
  VALID_TRANSITIONS,
  type VcpuState,
} from "./lifecycle.ts";

const ALL = Object.keys(VALID_TRANSITIONS) as VcpuState[];

Deno.test("lifecycle: a normal run goes through the table", () => {
  const seen: string[] = [];
  const l = new Lifecycle((from, to) => seen.push(`${from}>${to}`));
  for (
    const s of ["configured", "running", "awaiting-io", "exited", "running", "paused"] as const
  ) {
    l.to(s);
  }
  l.to("running");
  l.to("stopped");
  l.to("destroyed");
  assert.equal(l.state, "destroyed");
  assert.equal(seen.length, 9);
  assert.equal(seen[2], "running>awaiting-io");
});

Deno.test("lifecycle: illegal transitions throw naming both states", () => {
  const l = new Lifecycle();
  assert.throws(() => l.to("running"), /from "created" to "running"/);
  l.to("configured");
  l.to("running");
  assert.throws(() => l.to("destroyed"), IllegalTransitionError);
  assert.equal(l.state, "running", "a refused transition leaves the state unchanged");
});

Deno.test("lifecycle: every live state can stop, nothing leaves destroyed", () => {
  for (const s of ALL) {
    if (s === "stopped" || s === "destroyed") continue;
    assert.ok(canTransition(s, "stopped"), `${s} -> stopped`);
  }
  for (const s of ALL) assert.equal(canTransition("destroyed", s), false);
  // awaiting-io must complete before the vCPU runs again.
  assert.equal(canTransition("awaiting-io", "running"), false);
});
