/**
 * Load and leaks: managed VMs started and stopped in a row and in parallel,
 * resets, a guest flooding its serial console and one that never halts.
 * Nothing may leak (processes, fds, sockets, state files, taps), the control
 * socket answers within a second under load, and the VM process's memory and
 * log stay within stated bounds. The default run takes a few seconds;
 * VMMCTL_LOAD=1 runs the long version (20 VMs in a row, 8 at once, a minute
 * of flooding).
 */
import assert from "node:assert/strict";
import { guestPath } from "../guests/images.ts";
import { kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { vmmctl } from "./cli.ts";
import { linkExists } from "./netns.ts";
import { type ControlRequest, controlRequest } from "../cli/control/protocol.ts";

const LONG = Deno.env.get("VMMCTL_LOAD") === "1";
const ignore = !kvmAvailable() || Deno.build.os !== "linux";
if (ignore) console.warn(`load tests: ${NO_KVM_MESSAGE}`);
const tapsWork = (() => {
  try {
    Deno.openSync("/dev/net/tun", { read: true, write: true }).close();
    return Deno.uid() === 0;
  } catch {
    return false;
  }
})();

/** Bounds stated in docs/THREAT_MODEL.md ("Load and leaks"). */
const REPLY_BOUND_MS = 1000;
const RSS_BOUND_BYTES = 320 * 2 ** 20; // a 32 MiB guest's VM process
const RSS_GROWTH_BOUND_BYTES = 48 * 2 ** 20; // over the whole flood
const LOG_BOUND_BYTES = 1024 * 1024 + 64 * 1024; // LOG_MAX_BYTES plus one console chunk

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function config(dir: string, name: string, guest: string, tap?: string): Promise<string> {
  const path = `${dir}/${name}.toml`;
  const lines = [
    "[vm]",
    `name = "${name}"`,
    'memory = "32M"',
    "[boot]",
    `kernel = ${JSON.stringify(guestPath(guest))}`,
  ];
  if (tap) lines.push("[[interface]]", `tap = "${tap}"`);
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  return path;
}

/** "gone", or the state letter of /proc/PID/stat (Z: exited, waiting for a reaper). */
function procState(pid: number): string {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return "gone";
  }
}

/** The process ended (PID 1 here does not reap orphans: a zombie is an ended process). */
async function waitEnded(pid: number, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms;
  let s = procState(pid);
  while (s !== "gone" && s !== "Z" && Date.now() < deadline) {
    await sleep(20);
    s = procState(pid);
  }
  return s;
}

const fdCount = (pid: number) => [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
const files = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
const rss = (pid: number) =>
  Number(/^VmRSS:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0) *
  1024;

/** A control request from this process, timed: the VM's own answer, without a CLI start-up. */
async function timed(sock: string, req: ControlRequest): Promise<number> {
  const t0 = performance.now();
  const reply = await controlRequest(sock, req);
  const ms = performance.now() - t0;
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return ms;
}

interface Started {
  id: number;
  pid: number;
  sock: string;
}

async function start(rundir: string, cfg: string): Promise<Started> {
  const r = await vmmctl(["start", "--rundir", rundir, cfg]);
  assert.equal(r.code, 0, r.stderr);
  const id = Number(/started vm (\d+)/i.exec(r.stdout + r.stderr)?.[1]);
  const state = JSON.parse(await Deno.readTextFile(`${rundir}/${id}.json`));
  return { id, pid: state.pid, sock: `${rundir}/${id}.sock` };
}

/** The process's fd count once it is the same over three samples 200 ms apart (at most 10 s). */
async function steadyFdCount(pid: number): Promise<number> {
  let last = fdCount(pid);
  let same = 0;
  for (let i = 0; i < 50 && same < 2; i++) {
    await sleep(200);
    const n = fdCount(pid);
    same = n === last ? same + 1 : 0;
    last = n;
  }
  return last;
}

Deno.test({
  name: "load: VMs started, reset and stopped in a row and in parallel leave no process, fd, " +
    "socket, state file or tap behind",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "priv-load-" });
    const rundir = `${dir}/run`;
    const tag = `${Deno.pid % 10000}`;
    try {
      const inRow = LONG ? 20 : 2;
      for (let i = 0; i < inRow; i++) {
        const tap = tapsWork ? `vpr${tag}s${i}` : undefined;
        const vm = await start(rundir, await config(dir, `row${i}`, "ticker", tap));
        if (tap) assert.ok(linkExists(tap), `tap ${tap} exists while the VM runs`);
        if (i === 0) {
          // Resets rebuild the machine in the process: what it reopens, it closed first.
          // (The first count is taken after a reset: start-up swaps the client's pipes for the log.)
          // A reset takes a while to finish on a busy host: count once the number holds still.
          let fds = -1;
          for (let k = 0; k < (LONG ? 10 : 3); k++) {
            await timed(vm.sock, { op: "reset" });
            await sleep(500);
            if (fds < 0) fds = await steadyFdCount(vm.pid);
          }
          assert.equal(await steadyFdCount(vm.pid), fds, "fds of the VM process after resets");
        }
        const stop = await vmmctl(["stop", "-f", "-w", "--rundir", rundir, `row${i}`]);
        assert.equal(stop.code, 0, stop.stderr);
        assert.match(await waitEnded(vm.pid), /^(gone|Z)$/, `VM process ${vm.pid}`);
        if (tap) assert.equal(linkExists(tap), false, `tap ${tap} left behind`);
        assert.deepEqual(files(rundir).filter((f) => !f.endsWith(".log")), [], "run directory");
      }
      const atOnce = LONG ? 8 : 3;
      const names = Array.from({ length: atOnce }, (_, i) => `par${i}`);
      const vms = await Promise.all(
        names.map(async (n, i) =>
          await start(
            rundir,
            await config(dir, n, "ticker", tapsWork ? `vpr${tag}p${i}` : undefined),
          )
        ),
      );
      assert.deepEqual(new Set(vms.map((v) => v.id)).size, atOnce, "distinct ids");
      const status = await vmmctl(["status", "--rundir", rundir]);
      for (const n of names) assert.match(status.stdout, new RegExp(` running ${n}\\n`));
      const stop = await vmmctl(["stop", "-a", "-f", "-w", "--rundir", rundir]);
      assert.equal(stop.code, 0, stop.stderr);
      for (const v of vms) assert.match(await waitEnded(v.pid), /^(gone|Z)$/);
      if (tapsWork) {
        for (let i = 0; i < atOnce; i++) assert.equal(linkExists(`vpr${tag}p${i}`), false);
      }
      assert.deepEqual(files(rundir).filter((f) => !f.endsWith(".log")), []);
    } finally {
      await vmmctl(["stop", "-a", "-f", "-w", "--rundir", rundir]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "load: a guest flooding its console: the control socket answers within a second, " +
    "memory and the log stay bounded, a graceful stop works",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "priv-flood-" });
    const rundir = `${dir}/run`;
    try {
      const vm = await start(rundir, await config(dir, "flood", "flood"));
      const log = `${rundir}/flood.log`;
      const first = rss(vm.pid);
      let worstMs = 0;
      let peak = first;
      const until = Date.now() + (LONG ? 60_000 : 3_000);
      while (Date.now() < until) {
        worstMs = Math.max(worstMs, await timed(vm.sock, { op: "info" }));
        peak = Math.max(peak, rss(vm.pid));
        await sleep(200);
      }
      const size = Deno.statSync(log).size;
      assert.ok(size > 0 && size <= LOG_BOUND_BYTES, `log ${size} bytes`);
      let rotated = 0;
      try {
        rotated = Deno.statSync(`${log}.1`).size;
      } catch {
        // not rotated yet in a short run
      }
      assert.ok(rotated <= LOG_BOUND_BYTES, `rotated log ${rotated} bytes`);
      console.log(
        `flood: slowest info reply ${worstMs.toFixed(0)} ms, RSS ${first >> 20} -> ` +
          `${peak >> 20} MiB peak, log ${size} + ${rotated} bytes`,
      );
      assert.ok(worstMs < REPLY_BOUND_MS, `info took ${worstMs.toFixed(0)} ms`);
      assert.ok(peak < RSS_BOUND_BYTES, `VM process RSS ${peak >> 20} MiB`);
      assert.ok(peak - first < RSS_GROWTH_BOUND_BYTES, `RSS grew ${(peak - first) >> 20} MiB`);
      assert.match(await Deno.readTextFile(log), /flood \d+\r?\n/);
      // Graceful: 'q' typed on the console; the guest reads it between two lines.
      const stop = await vmmctl(["stop", "-w", "--keys", "q", "--rundir", rundir, "flood"]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.match(await Deno.readTextFile(log), /flood: power off requested/);
      assert.match(await waitEnded(vm.pid), /^(gone|Z)$/);
      assert.deepEqual(files(rundir).filter((f) => !f.startsWith("flood.log")), []);
    } finally {
      await vmmctl(["stop", "-a", "-f", "-w", "--rundir", rundir]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "load: a guest that never halts: info, pause, unpause and a forced stop answer within " +
    "a second",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "priv-spin-" });
    const rundir = `${dir}/run`;
    try {
      const vm = await start(rundir, await config(dir, "spin", "spin"));
      await sleep(300); // spinning by now
      const replies: Record<string, number> = {};
      replies.info = await timed(vm.sock, { op: "info" });
      replies.pause = await timed(vm.sock, { op: "pause" });
      replies.unpause = await timed(vm.sock, { op: "unpause" });
      replies.stop = await timed(vm.sock, { op: "stop", force: true, timeoutMs: 0 });
      console.log(
        `spin: replies in ms ${
          JSON.stringify(replies, (_, v) => typeof v === "number" ? Math.round(v) : v)
        }`,
      );
      for (const [op, ms] of Object.entries(replies)) {
        assert.ok(ms < REPLY_BOUND_MS, `${op} took ${ms.toFixed(0)} ms`);
      }
      const t0 = performance.now();
      assert.match(await waitEnded(vm.pid, 5_000), /^(gone|Z)$/);
      assert.ok(performance.now() - t0 < 3_000, "the forced stop ended the process");
      assert.deepEqual(files(rundir).filter((f) => !f.endsWith(".log")), []);
    } finally {
      await vmmctl(["stop", "-a", "-f", "-w", "--rundir", rundir]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
