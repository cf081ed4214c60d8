import assert from "node:assert/strict";
import { CC_PATH, NO_CC_MESSAGE } from "../../tests/cc.ts";
import { ABI_2025_12, abiForShape, type VmmShape } from "./abi_tables.ts";
import {
  matchProbe,
  type ProbeHost,
  type ProbeResult,
  resolveVmmAbi,
  runHeaderProbe,
} from "./header_probe.ts";
import { FakeVmmLibc } from "./test_helpers.ts";
import { type HeaderRevision, writeHeaderTree } from "./testdata/vmm_headers.ts";
import { openOpenbsdAccel } from "./vmm.ts";

if (!CC_PATH) console.warn(`header probe: ${NO_CC_MESSAGE}`);

function probeRevision(revision: HeaderRevision): ProbeResult {
  const dir = Deno.makeTempDirSync({ prefix: "obsd-headers-" });
  try {
    writeHeaderTree(dir, revision);
    return runHeaderProbe({ cc: CC_PATH!, includeDirs: [dir], workDir: dir });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Offset of a field as the compiler put it. */
function at(p: ProbeResult, key: string): number {
  return p.fields[key].offset;
}

const ACCEPTED: { revision: HeaderRevision; shape: VmmShape; fdAt?: number; runVcpuAt: number }[] =
  [
    { revision: {}, shape: { fd: "none", vmIds: true, avic: false }, runVcpuAt: 4 },
    {
      revision: { fd: "after-id" },
      shape: { fd: "after-id", vmIds: true, avic: false },
      fdAt: 604,
      runVcpuAt: 4,
    },
    {
      revision: { fd: "after-poscbit" },
      shape: { fd: "after-poscbit", vmIds: true, avic: false },
      fdAt: 608,
      runVcpuAt: 4,
    },
    {
      revision: { fd: "end" },
      shape: { fd: "end", vmIds: true, avic: false },
      fdAt: 2656,
      runVcpuAt: 4,
    },
    {
      revision: { fd: "after-id", vmIds: false, withoutInfo: true },
      shape: { fd: "after-id", vmIds: false, avic: false },
      fdAt: 604,
      runVcpuAt: 0,
    },
    {
      revision: { fd: "after-poscbit", vmIds: false },
      shape: { fd: "after-poscbit", vmIds: false, avic: false },
      fdAt: 608,
      runVcpuAt: 0,
    },
    {
      revision: { fd: "end", vmIds: false, withoutInfo: true },
      shape: { fd: "end", vmIds: false, avic: false },
      fdAt: 2656,
      runVcpuAt: 0,
    },
    { revision: { avic: true }, shape: { fd: "none", vmIds: true, avic: true }, runVcpuAt: 4 },
    {
      revision: { fd: "end", vmIds: false, avic: true },
      shape: { fd: "end", vmIds: false, avic: true },
      fdAt: 2660,
      runVcpuAt: 0,
    },
  ];

Deno.test({
  name: "header probe: gcc over every known revision yields that revision's table exactly",
  ignore: !CC_PATH,
  fn() {
    for (const { revision, shape, fdAt, runVcpuAt } of ACCEPTED) {
      const what = JSON.stringify(revision);
      const p = probeRevision(revision);
      const m = matchProbe(p);
      assert.ok(!("error" in m), `${what}: ${"error" in m ? m.error : ""}`);
      assert.deepEqual(m.abi.shape, shape, what);
      assert.deepEqual(m.notes, [], `${what}: an exact table, nothing moved`);
      const table = abiForShape(shape);
      // The table the back-end gets is the compiler's layout, field by field.
      for (const [name, layout] of Object.entries(m.abi.structs)) {
        if (!layout) continue;
        assert.equal(layout.size, p.structs[name], `${what}: sizeof ${name}`);
        for (const f of layout.fields) {
          assert.equal(f.offset, at(p, `${name}.${f.name}`), `${what}: ${name}.${f.name}`);
        }
      }
      for (const [name, r] of Object.entries(m.abi.requests)) {
        assert.equal(r.value, p.requests[name], `${what}: ${name}`);
        assert.equal(r.value, table.requests[name as keyof typeof table.requests]?.value);
      }
      assert.equal(m.abi.structs.vm_run_params.offsetOf("vrp_vcpu_id"), runVcpuAt, what);
      if (fdAt === undefined) {
        assert.ok(p.absent.includes("vm_create_params.vcp_fd"), what);
        assert.equal(m.abi.era, "A");
      } else {
        assert.equal(m.abi.structs.vm_create_params.offsetOf("vcp_fd"), fdAt, what);
        assert.equal(m.abi.era, "B");
      }
    }
    // The probe of the 2025-12 headers is the verified table (vmm.h 1.13, vmmvar.h 1.117).
    const m = matchProbe(probeRevision({}));
    assert.equal("abi" in m && m.abi.requests.VMM_IOC_CREATE.value, 0xca605601);
  },
});

Deno.test({
  name: "header probe: a known shape with a field moved uses the probed offsets and says so",
  ignore: !CC_PATH,
  fn() {
    const p = probeRevision({ fd: "end", beforeAsid: "\tuint32_t vcp_flags;\n" });
    const m = matchProbe(p);
    if ("error" in m) throw new Error(m.error);
    const create = m.abi.structs.vm_create_params;
    assert.equal(create.offsetOf("vcp_asid"), 612);
    assert.equal(create.offsetOf("vcp_fd"), 2660);
    assert.equal(create.size, 2664);
    assert.equal(m.abi.requests.VMM_IOC_CREATE.value, p.requests.VMM_IOC_CREATE);
    assert.ok(m.notes.includes("vm_create_params.vcp_asid is at offset 612 (table: 608)"));
    assert.match(m.abi.name, /fields moved/);
  },
});

Deno.test({
  name: "header probe: layouts it does not know are refused, naming the mismatch",
  ignore: !CC_PATH,
  fn() {
    const refused: [HeaderRevision, RegExp][] = [
      [{ veiData: "uint64_t" }, /vm_exit_inout\.vei_data is 8 bytes, vmmctl handles 4/],
      [{ fd: "end", runWithoutVmId: true }, /but not vm_run_params\.vrp_vm_id/],
    ];
    for (const [revision, message] of refused) {
      const m = matchProbe(probeRevision(revision));
      assert.ok("error" in m, JSON.stringify(revision));
      assert.match(m.error, /^vmm\(4\) headers not supported: /);
      assert.match(m.error, message);
    }
    // A field every layout has, renamed: the compile fails and the probe names it.
    assert.throws(
      () => probeRevision({ irqready: "vrp_ready" }),
      /vmm\(4\) headers not supported: no field vm_run_params\.vrp_irqready/,
    );
  },
});

/** A host whose probe answers from `result` (or has no compiler). */
function fakeHost(result: ProbeResult | "no-cc", release = "7.9") {
  const cache = new Map<string, string>();
  let probes = 0;
  let version = "OpenBSD 7.9 (GENERIC.MP) #1";
  const host: ProbeHost = {
    kernelVersion: () => version,
    release: () => release,
    headers: () => new TextEncoder().encode("struct vm_create_params { ... };"),
    probe: () => {
      probes++;
      if (result === "no-cc") throw new Deno.errors.NotFound("cc");
      return result;
    },
    cacheRead: (k) => cache.get(k),
    cacheWrite: (k, t) => void cache.set(k, t),
  };
  return {
    host,
    cache,
    get probes() {
      return probes;
    },
    setVersion: (v: string) => (version = v),
  };
}

/** A probe result from a table (what gcc prints for headers that match it). */
function resultOf(shape: VmmShape): ProbeResult {
  const abi = abiForShape(shape);
  const r: ProbeResult = { structs: {}, fields: {}, absent: [], requests: {} };
  const visit = (l: typeof abi.structs.vm_exit) => {
    r.structs[l.name] = l.size;
    for (const f of l.fields) {
      r.fields[`${l.name}.${f.name}`] = { offset: f.offset, size: f.size };
      const t = f.type;
      if (typeof t === "object" && "fields" in t) visit(t);
      if (typeof t === "object" && "kind" in t && t.kind === "array") {
        if (typeof t.element === "object" && "fields" in t.element) visit(t.element);
      }
    }
  };
  for (const l of Object.values(abi.structs)) if (l) visit(l);
  for (const [n, q] of Object.entries(abi.requests)) r.requests[n] = q.value;
  return r;
}

Deno.test("resolveVmmAbi: probes once per kernel version and headers, then reads the cache", () => {
  const shape: VmmShape = { fd: "after-id", vmIds: false, avic: false };
  const f = fakeHost(resultOf(shape));
  const first = resolveVmmAbi(f.host);
  assert.deepEqual(first.abi.shape, shape);
  assert.match(first.message, /probed from the headers/);
  assert.equal(resolveVmmAbi(f.host).abi.name, first.abi.name);
  assert.equal(f.probes, 1, "the second start reads the cache");
  f.setVersion("OpenBSD 7.9-current (GENERIC.MP) #2");
  resolveVmmAbi(f.host);
  assert.equal(f.probes, 2, "a new kernel is probed again");
  assert.equal(f.cache.size, 2);
});

Deno.test("resolveVmmAbi: no compiler means the release's table, and the message says so", () => {
  const r = resolveVmmAbi(fakeHost("no-cc", "7.9").host);
  assert.equal(r.abi.name, ABI_2025_12.name);
  assert.match(r.message, /the table for release 7\.9 \(no C compiler; not probed\)/);
  assert.throws(
    () => resolveVmmAbi(fakeHost("no-cc", "8.0").host),
    /no C compiler, and release "8\.0" has no built-in table .*Install the compiler/,
  );
});

Deno.test("no compiler on -current: the table by the kernel's build date, or a refusal that says why", () => {
  const at = (version: string) => {
    const f = fakeHost("no-cc", "8.0");
    f.setVersion(version);
    return f.host;
  };
  const spring = resolveVmmAbi(
    at("OpenBSD 8.0-current (GENERIC.MP) #12: Mon Mar  2 10:11:12 MST 2026"),
  );
  assert.equal(spring.abi.name, ABI_2025_12.name);
  assert.match(
    spring.message,
    /the table for -current of 2026-03-02 \(no C compiler; not probed\)/,
  );
  assert.throws(
    () => resolveVmmAbi(at("OpenBSD 8.0-current (GENERIC.MP) #40: Mon Sep 21 10:11:12 MDT 2026")),
    /-current of 2026-09-21 has the per-VM fd, whose place in vm_create_params only the probe can tell/,
  );
  assert.throws(
    () => resolveVmmAbi(at("OpenBSD 7.8-current (GENERIC.MP) #3: Tue Nov  4 10:11:12 MST 2025")),
    /-current of 2025-11-04 is older than every built-in table/,
  );
  assert.throws(
    () => resolveVmmAbi(at("OpenBSD 8.0-current (GENERIC.MP)")),
    /cannot read the build date/,
  );
});

Deno.test("resolveVmmAbi: a cached probe that matches no table is still refused by name", () => {
  const r = resultOf({ fd: "none", vmIds: true, avic: false });
  r.fields["vm_run_params.vrp_exit_reason"].size = 4;
  assert.throws(
    () => resolveVmmAbi(fakeHost(r).host),
    /vm_run_params\.vrp_exit_reason is 4 bytes, vmmctl handles 2/,
  );
});

Deno.test("matchProbe: unknown combinations and moved register images are refused by name", () => {
  const noIds = resultOf({ fd: "end", vmIds: false, avic: false });
  delete noIds.fields["vm_create_params.vcp_fd"];
  const m0 = matchProbe(noIds);
  assert.ok("error" in m0 && /\(era A\) is none vmmctl knows: .*no VM can be named/.test(m0.error));
  const halfAvic = resultOf({ fd: "none", vmIds: true, avic: true });
  delete halfAvic.fields["vm_run_params.vrp_cr8_threshold"];
  const m1 = matchProbe(halfAvic);
  assert.ok("error" in m1 && /vcp_avic but not vm_run_params\.vrp_cr8_threshold/.test(m1.error));
  const fdFirst = resultOf({ fd: "end", vmIds: true, avic: false });
  fdFirst.fields["vm_create_params.vcp_fd"].offset = 0;
  const m2 = matchProbe(fdFirst);
  assert.ok("error" in m2 && /vcp_fd is at offset 0, in no place vmmctl knows/.test(m2.error));
  const movedRip = resultOf({ fd: "none", vmIds: true, avic: false });
  movedRip.fields["vcpu_reg_state.vrs_crs"].offset += 8;
  const m3 = matchProbe(movedRip);
  assert.ok("error" in m3 && /struct vcpu_reg_state differs from every table/.test(m3.error));
});

Deno.test("openOpenbsdAccel: the probed layout reaches the back-end, and the start says which", () => {
  const shape: VmmShape = { fd: "none", vmIds: true, avic: false };
  const lines: string[] = [];
  const libc = new FakeVmmLibc().on("VMM_IOC_INFO", () => 0);
  const accel = openOpenbsdAccel(libc, fakeHost(resultOf(shape)).host, (l) => lines.push(l));
  assert.equal(accel.abi.name, ABI_2025_12.name);
  assert.equal(accel.abi.source, "probed from the installed headers");
  assert.deepEqual(lines, [`vmm(4) layout: ${ABI_2025_12.name}, probed from the headers`]);
  // An era-B layout on an era-A kernel: refused before any VM.
  const b = fakeHost(resultOf({ fd: "after-id", vmIds: true, avic: false })).host;
  assert.throws(() => openOpenbsdAccel(libc, b, () => {}), /headers do not match the kernel/);
});
