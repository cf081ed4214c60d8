/**
 * Exit round trip: PIO and MMIO exits per second through vmmctl's real run
 * loop, exit dispatcher and bus, against bench/c/kvm_loop.c running a
 * snapshot of the very same machine (same guest bytes, same CPU state).
 *
 * The guests (pioloop, bench_mmio) hammer port 0x80 / MMIO 0x30000000 from
 * 64-bit ring 3, the only code that runs natively on a software-nested KVM,
 * so the loop itself costs nothing and each iteration is one exit. Time is
 * taken from the first hammered exit to the end of the run (the guest's few
 * trailing exits are the same on both sides).
 *
 * @module
 */

import type { AccelChoice } from "../accel/select.ts";
import { createAccel } from "../accel/select.ts";
import type { Accel } from "../accel/types.ts";
import type { VmConfig } from "../config/schema.ts";
import type { BusDevice } from "../core/device.ts";
import { findLibcPath, openLibc } from "../ffi/libc.ts";
import * as abi from "../accel/kvm/abi.ts";
import type { KvmAccel, KvmVcpu } from "../accel/kvm/kvm.ts";
import { guestPath } from "../guests/images.ts";
import { VcpuControl } from "../machine/vcpu_channel.ts";
import { Machine, type Outcome } from "../machine/machine.ts";
import { runLoop } from "../machine/run_loop.ts";
import { measuredRow, type Row, skippedRow } from "./report.ts";
import { ScriptedPioAccel } from "./fake_vcpu.ts";
import { snapshotMachine } from "./snapshot.ts";
import { threadCpuMs } from "./child.ts";
import { mapStat, median, summarize } from "./stats.ts";

/** The MMIO address bench_mmio writes (guests/bench_mmio.asm BENCH_MMIO_ADDR). */
export const BENCH_MMIO_ADDR = 0x3000_0000;
/** Guest RAM of the benchmark VMs. */
export const BENCH_MEMORY_BYTES = 64 * 1024 * 1024;
/** The debug exit port. */
export const EXIT_PORT = 0xf4;

/** One exit-heavy guest. */
export interface ExitGuest {
  kind: "PIO" | "MMIO";
  guest: "pioloop" | "bench_mmio";
  /** The value the guest writes to the exit port when it is done. */
  exitValue: number;
}

/** The two guests. */
export const EXIT_GUESTS: readonly ExitGuest[] = [
  { kind: "PIO", guest: "pioloop", exitValue: 0x16 },
  { kind: "MMIO", guest: "bench_mmio", exitValue: 0x17 },
];

/** A config for a benchmark guest: 64 MiB, our PIC, serial nowhere, exit port 0xF4. */
export function benchConfig(kernel: string, cmdline: string, accel: AccelChoice = "kvm"): VmConfig {
  return {
    vm: { name: "bench", memoryBytes: BENCH_MEMORY_BYTES, vcpus: 1, accel, irqchip: "user" },
    boot: { kernel, cmdline },
    disks: [],
    interfaces: [],
    console: { serial: "none" },
    debug: { exitPort: EXIT_PORT },
  };
}

/** One timed run. */
export interface ExitRun {
  /** Hammered exits seen. */
  counted: number;
  /** ms from the first hammered exit to the end of the run. */
  countedMs: number;
  /** ms of the whole run loop. */
  loopMs: number;
  /** User-space CPU ms of the vCPU thread over the counted part (the VMM's own work). */
  userMs: number;
  /** Kernel CPU ms over the counted part (KVM_RUN, the exit, the nested hypervisor). */
  sysMs: number;
}

/** A device that counts accesses and notes when the first came; delegates to `inner`. */
function timedDevice(name: string, inner?: BusDevice) {
  const t = {
    counted: 0,
    firstMs: 0,
    cpu: { userMs: 0, sysMs: 0 },
    first() {
      t.cpu = threadCpuMs();
      t.firstMs = performance.now();
    },
    device: {
      name,
      read(offset: number, data: Uint8Array) {
        if (t.counted++ === 0) t.first();
        if (inner) inner.read(offset, data);
        else data.fill(0);
      },
      write(offset: number, data: Uint8Array) {
        if (t.counted++ === 0) t.first();
        inner?.write(offset, data);
      },
    } satisfies BusDevice,
  };
  return t;
}

/** Builds the machine for `g` with `n` iterations on `accel`. */
export function buildExitMachine(accel: Accel, g: ExitGuest, n: number): Machine {
  return new Machine({
    config: benchConfig(guestPath(g.guest), `n=${n}`, accel.name as AccelChoice),
    accel,
    serialOut: () => {},
  });
}

function checkOutcome(o: Outcome, g: ExitGuest): void {
  if (o.kind !== "exit-port" || o.status !== ((g.exitValue << 1) | 1)) {
    throw new Error(`${g.guest} ended with ${JSON.stringify(o)}, not exit value ${g.exitValue}`);
  }
}

/** Runs `g` once through vmmctl's run loop on this thread. */
export function runOurs(accel: Accel, g: ExitGuest, n: number): ExitRun {
  const m = buildExitMachine(accel, g, n);
  try {
    let timed;
    if (g.kind === "PIO") {
      // The POST port stays the device behind port 0x80; the wrapper only notes the time.
      timed = timedDevice("post (timed)", m.post);
      m.pio.remove(m.post, 0x80);
      m.pio.insert(0x80, 1, timed.device);
    } else {
      timed = timedDevice("bench sink");
      m.mmio.insert(BENCH_MMIO_ADDR, 0x1000, timed.device);
    }
    // As under `vmmctl up`, where the host watches the timer deadline and the vCPU does not
    // read the clock per exit (these guests program no timer they wait for).
    const control = new VcpuControl();
    control.watchDeadline();
    const t0 = performance.now();
    const outcome = runLoop(m, control);
    const t1 = performance.now();
    const cpu = threadCpuMs();
    checkOutcome(outcome, g);
    return {
      counted: timed.counted,
      countedMs: t1 - timed.firstMs,
      loopMs: t1 - t0,
      userMs: cpu.userMs - timed.cpu.userMs,
      sysMs: cpu.sysMs - timed.cpu.sysMs,
    };
  } finally {
    m.close();
  }
}

/** The kvm_run offsets (the KVM back-end's table). */
const RUN = abi.KVM_RUN_AT;

let rawIoctl: { symbols: { ioctl: (fd: number, req: bigint, arg: bigint) => number } } | undefined;

/**
 * kvm_loop.c's loop written in TypeScript: raw KVM_RUN through one FFI
 * symbol and DataView reads of kvm_run, no run loop, bus or device model.
 * It runs vmmctl's machine (built by the loader) and tells how much of the
 * gap to C is FFI and V8 and how much is vmmctl's own run loop.
 */
export function runMinimalDeno(accel: Accel, g: ExitGuest, n: number): ExitRun {
  const m = buildExitMachine(accel, g, n);
  const libc = openLibc();
  rawIoctl ??= Deno.dlopen(findLibcPath(), {
    ioctl: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  });
  const ioctl = rawIoctl.symbols.ioctl;
  const vcpu = m.vcpu as KvmVcpu;
  const size = libc.ioctl((accel as KvmAccel).fd, abi.KVM_GET_VCPU_MMAP_SIZE, 0);
  const c = libc.consts;
  // A second mapping of the same kvm_run page (the back-end keeps its own private).
  const mapping = libc.mmap(size, c.PROT_READ | c.PROT_WRITE, c.MAP_SHARED, vcpu.fd, 0);
  try {
    const run = mapping.bytes;
    const v = new DataView(run.buffer, run.byteOffset, run.length);
    const KVM_RUN = BigInt(abi.KVM_RUN.value);
    const fd = vcpu.fd;
    let counted = 0;
    let firstMs = 0;
    let cpu0 = { userMs: 0, sysMs: 0 };
    let status = -1;
    const t0 = performance.now();
    while (status < 0) {
      if (ioctl(fd, KVM_RUN, 0n) < 0) continue; // EINTR: nothing kicks this loop
      const reason = v.getUint32(RUN.exitReason, true);
      if (reason === abi.KVM_EXIT_IO) {
        const port = v.getUint16(RUN.ioPort, true);
        const at = Number(v.getBigUint64(RUN.ioDataOffset, true));
        if (port === 0x80 && counted++ === 0) {
          cpu0 = threadCpuMs();
          firstMs = performance.now();
        }
        if (v.getUint8(RUN.ioDirection) === abi.KVM_EXIT_IO_OUT) {
          if (port === EXIT_PORT) status = run[at];
        } else {
          const bytes = v.getUint8(RUN.ioSize) * v.getUint32(RUN.ioCount, true);
          run.fill(port === 0x3fd ? 0x60 : 0xff, at, at + bytes);
        }
      } else if (reason === abi.KVM_EXIT_MMIO) {
        if (
          Number(v.getBigUint64(RUN.mmioPhysAddr, true)) === BENCH_MMIO_ADDR && counted++ === 0
        ) {
          cpu0 = threadCpuMs();
          firstMs = performance.now();
        }
        if (!v.getUint8(RUN.mmioIsWrite)) run.fill(0, RUN.mmioData, RUN.mmioData + 8);
      } else {
        throw new Error(`minimal Deno loop: unexpected exit ${abi.kvmExitName(reason)}`);
      }
    }
    const t1 = performance.now();
    const cpu1 = threadCpuMs();
    if (status !== g.exitValue) {
      throw new Error(`minimal Deno loop: ${g.guest} wrote ${status}, not ${g.exitValue}`);
    }
    return {
      counted,
      countedMs: t1 - firstMs,
      loopMs: t1 - t0,
      userMs: cpu1.userMs - cpu0.userMs,
      sysMs: cpu1.sysMs - cpu0.sysMs,
    };
  } finally {
    libc.munmap(mapping);
    m.close();
  }
}

/** ns per exit of vmmctl's run loop on {@link ScriptedPioAccel} (JavaScript only, no KVM). */
export function runLoopJsCostNs(n: number): number {
  const g = EXIT_GUESTS[0];
  const m = new Machine({
    config: benchConfig(guestPath(g.guest), ""),
    accel: new ScriptedPioAccel(n, EXIT_PORT, g.exitValue),
    serialOut: () => {},
    // The loader still runs: the scripted vCPU ignores what it loaded.
  });
  try {
    const t0 = performance.now();
    const outcome = runLoop(m, new VcpuControl());
    const t1 = performance.now();
    checkOutcome(outcome, g);
    return ((t1 - t0) * 1e6) / (n + 1);
  } finally {
    m.close();
  }
}

/** What kvm_loop prints. */
interface CLoopOutput {
  status: number;
  exits: number;
  countedExits: number;
  loopNs: number;
  countedNs: number;
  countedUserNs: number;
  countedSysNs: number;
}

/** Compiles bench/c/kvm_loop.c into `dir`; undefined (with the reason) when there is no cc. */
export async function compileKvmLoop(dir: string): Promise<{ path?: string; why?: string }> {
  const src = new URL("./c/kvm_loop.c", import.meta.url).pathname;
  const path = `${dir}/kvm_loop`;
  try {
    const r = await new Deno.Command("cc", {
      args: ["-O2", "-Wall", "-Werror", "-o", path, src],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      return { why: `cc failed on bench/c/kvm_loop.c: ${new TextDecoder().decode(r.stderr)}` };
    }
    return { path };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { why: "no C compiler (cc) on PATH" };
    throw e;
  }
}

/** Writes the snapshot of `g` with `n` iterations for the C loop. */
export function writeSnapshot(accel: Accel, g: ExitGuest, n: number, path: string): void {
  const m = buildExitMachine(accel, g, n);
  try {
    Deno.writeFileSync(
      path,
      snapshotMachine(m, openLibc(), {
        exitPort: EXIT_PORT,
        countPort: g.kind === "PIO" ? 0x80 : undefined,
        countMmio: g.kind === "MMIO" ? BENCH_MMIO_ADDR : undefined,
      }),
    );
  } finally {
    m.close();
  }
}

/** Runs the C loop on a snapshot once. */
export async function runC(loop: string, snapshot: string, g: ExitGuest): Promise<ExitRun> {
  const r = await new Deno.Command(loop, { args: [snapshot], stdout: "piped", stderr: "piped" })
    .output();
  const err = new TextDecoder().decode(r.stderr).trim();
  if (!r.success) throw new Error(`kvm_loop failed (status ${r.code}): ${err}`);
  const out = JSON.parse(new TextDecoder().decode(r.stdout)) as CLoopOutput;
  if (out.status !== g.exitValue) {
    throw new Error(
      `kvm_loop: ${g.guest} wrote ${out.status} to the exit port, not ${g.exitValue}`,
    );
  }
  return {
    counted: out.countedExits,
    countedMs: out.countedNs / 1e6,
    loopMs: out.loopNs / 1e6,
    userMs: out.countedUserNs / 1e6,
    sysMs: out.countedSysNs / 1e6,
  };
}

/** Options of {@link benchExits}. */
export interface ExitBenchOptions {
  /** Exits per run. */
  count: number;
  reps: number;
  /** The compiled C loop, or why there is none. */
  cLoop: { path?: string; why?: string };
  tempDir: string;
  /** Back-ends to measure besides "kvm". */
  extraAccels: AccelChoice[];
  /** Exits per run on the extra back-ends (they can be far slower). */
  extraCount: number;
  log: (line: string) => void;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** "user/sys µs per exit: vmmctl 1.2/6.8, C 0.1/7.0" (medians). */
function cpuSplit(ours: ExitRun[], c: ExitRun[]): string {
  const per = (runs: ExitRun[], k: "userMs" | "sysMs") =>
    median(runs.map((r) => (r[k] * 1000) / r.counted)).toFixed(2);
  const part = (label: string, runs: ExitRun[]) =>
    `${label} ${per(runs, "userMs")}/${per(runs, "sysMs")}`;
  return `CPU user/sys µs per exit: ${part("vmmctl", ours)}` +
    (c.length ? `, ${part("C", c)}` : "");
}

const usPerExit = (r: ExitRun) => (r.countedMs * 1000) / r.counted;

/** The exit round-trip rows: per guest, KVM (vs C) and each extra back-end (vs the same C). */
export async function benchExits(o: ExitBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const libc = openLibc();
  let kvm: Accel;
  try {
    kvm = await createAccel("kvm", libc);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return EXIT_GUESTS.map((g) => skippedRow("exits", `${g.kind} exit round trip`, why));
  }
  const extras = new Map<AccelChoice, Accel | string>();
  for (const a of o.extraAccels) {
    try {
      extras.set(a, await createAccel(a, libc));
    } catch (e) {
      extras.set(a, `not available (${firstLine(e)})`);
    }
  }
  for (const g of EXIT_GUESTS) {
    const snapshot = `${o.tempDir}/${g.guest}.snap`;
    if (o.cLoop.path) writeSnapshot(kvm, g, o.count, snapshot);
    const ours: ExitRun[] = [];
    const c: ExitRun[] = [];
    const minimal: ExitRun[] = [];
    const extra = new Map<AccelChoice, ExitRun[] | string>();
    for (const [name, a] of extras) {
      if (typeof a === "string") extra.set(name, a);
      else {
        // A tiny run tells whether the back-end can run this guest at all.
        try {
          runOurs(a, g, 10);
          extra.set(name, []);
        } catch (e) {
          extra.set(name, `not available for ${g.guest} (${firstLine(e)})`);
        }
      }
    }
    // Interleaved, so slow drifts of the host hit both sides alike.
    for (let i = 0; i < o.reps; i++) {
      if (o.cLoop.path) c.push(await runC(o.cLoop.path, snapshot, g));
      ours.push(runOurs(kvm, g, o.count));
      minimal.push(runMinimalDeno(kvm, g, o.count));
      for (const [name, runs] of extra) {
        if (typeof runs !== "string") {
          runs.push(runOurs(extras.get(name) as Accel, g, o.extraCount));
        }
      }
      o.log(
        `  ${g.kind} rep ${i + 1}/${o.reps}: vmmctl ${usPerExit(ours[i]).toFixed(2)} µs, ` +
          `minimal Deno ${usPerExit(minimal[i]).toFixed(2)} µs` +
          (c[i] ? `, C ${usPerExit(c[i]).toFixed(2)} µs` : ""),
      );
    }
    const extraRuns = [...extra.values()].filter((v) => typeof v !== "string").flat();
    for (const [r, want] of [...ours, ...c, ...minimal].map((r) => [r, o.count] as const)) {
      if (r.counted !== want) {
        throw new Error(`${g.guest}: ${r.counted} hammered exits counted, not ${want}`);
      }
    }
    for (const r of extraRuns) {
      if (r.counted !== o.extraCount) {
        throw new Error(`${g.guest}: ${r.counted} hammered exits counted, not ${o.extraCount}`);
      }
    }
    const ref = c.length ? summarize(c.map(usPerExit)) : undefined;
    const refName = "C KVM loop";
    const noRef = o.cLoop.why ? `C reference skipped: ${o.cLoop.why}` : undefined;
    const oursStat = summarize(ours.map(usPerExit));
    const rate = mapStat(oursStat, (us) => 1e6 / us).median;
    rows.push(measuredRow({
      section: "exits",
      name: `${g.kind} exit round trip (${g.guest}, KVM)`,
      unit: "µs",
      better: "lower",
      ours: oursStat,
      reference: ref,
      referenceName: refName,
      note: (noRef ??
        `${Math.round(rate).toLocaleString("en-US")} exits/s vs C ` +
          `${Math.round(1e6 / ref!.median).toLocaleString("en-US")}; target: within 1.10x of C; `) +
        cpuSplit(ours, c),
    }));
    rows.push(measuredRow({
      section: "exits",
      name: `${g.kind} exit round trip (${g.guest}, minimal Deno FFI loop, no vmmctl run loop)`,
      unit: "µs",
      better: "lower",
      ours: summarize(minimal.map(usPerExit)),
      reference: ref,
      referenceName: refName,
      note: (noRef ? `${noRef}; ` : "") +
        "diagnostic: kvm_loop.c's loop in TypeScript on the same machine; " +
        cpuSplit(minimal, []).replace("vmmctl", "Deno"),
    }));
    for (const [name, runs] of extra) {
      const label = `${g.kind} exit round trip (${g.guest}, ${name})`;
      if (typeof runs === "string") {
        rows.push(skippedRow("exits", label, runs));
        continue;
      }
      rows.push(measuredRow({
        section: "exits",
        name: label,
        unit: "µs",
        better: "lower",
        ours: summarize(runs.map(usPerExit)),
        reference: ref,
        referenceName: refName,
        note: noRef,
      }));
    }
  }
  const js: number[] = [];
  for (let i = 0; i < o.reps; i++) js.push(runLoopJsCostNs(Math.max(o.count, 200_000)));
  rows.push(measuredRow({
    section: "exits",
    name: "vmmctl run loop's own cost per PIO exit (scripted vCPU, no KVM)",
    unit: "ns",
    better: "lower",
    ours: summarize(js),
    note: "diagnostic: timers, interrupt checks, dispatch, bus and POST device, in JavaScript",
  }));
  return rows;
}
