/**
 * What the vCPU Worker loads for a KVM start: its own static graph plus the
 * KVM back-end that `accel/select.ts` imports on demand — and nothing of the
 * OpenBSD back-end or of the test machinery (the vmm(4) emulation).
 */
import assert from "node:assert/strict";
import { moduleGraph } from "./module_graph.ts";

const repo = new URL("../", import.meta.url);
const at = (path: string) => new URL(path, repo).href;
const rel = (specifier: string) => specifier.slice(repo.href.length);

Deno.test("vCPU worker under KVM loads no OpenBSD back-end or emulation module", async () => {
  const g = await moduleGraph(new URL("machine/vcpu_worker.ts", repo));
  const select = g.modules.get(at("accel/select.ts"));
  assert.ok(select, "the worker imports accel/select.ts");
  // The back-ends are dynamic edges of the selection point (so this test sees them at all).
  assert.deepEqual(
    select.dynamicDeps.map(rel).sort(),
    ["accel/kvm/kvm.ts", "accel/openbsd/vmm.ts", "tests/vmm_emulation/vmm_on_kvm.ts"],
  );
  const atStart = g.loadedFrom([g.root]);
  const kvmStart = g.loadedFrom([g.root, at("accel/kvm/kvm.ts")]);
  const banned = [...kvmStart].map(rel).filter((p) =>
    p.startsWith("accel/openbsd/") || p.startsWith("tests/") || p.startsWith("bench/")
  );
  assert.deepEqual(banned, [], "modules a KVM start must not load");
  // The OpenBSD back-end and the emulation are really reachable, only not on this path: loaded
  // up front (as before, when a KVM start loaded 66 modules, 745 KB) they would add a dozen.
  const obsd = g.loadedFrom([g.root, at("accel/openbsd/vmm.ts")]);
  assert.ok(obsd.has(at("accel/openbsd/x86_decode.ts")));
  const everything = g.loadedFrom([g.root, ...select.dynamicDeps]);
  assert.ok(
    everything.size - kvmStart.size >= 8,
    `on-demand loading saves ${everything.size - kvmStart.size} modules`,
  );
  assert.ok(!atStart.has(at("accel/kvm/kvm.ts")), "KVM itself is loaded only when chosen");
  console.log(
    `vCPU worker, KVM start: ${kvmStart.size} modules, ${
      Math.round(g.bytes(kvmStart) / 1024)
    } KiB ` +
      `(every back-end: ${everything.size})`,
  );
});
