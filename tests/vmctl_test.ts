/**
 * vmctl-style management, end to end: the real CLI as subprocesses with a
 * temporary run directory, managed VMs running guests/ticker.asm under KVM.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { guestPath } from "../guests/images.ts";
import { openProcessLibc } from "../ffi/libc.ts";
import { formatScaled, STATUS_HEADER } from "../cli/verbs/status.ts";
import { SERIAL_RING_BYTES, SerialOutputRing } from "../machine/serial_sink.ts";
import { importVmConf } from "../config/vmconf/convert.ts";
import { parseConfig } from "../config/parse.ts";
import { kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { MAIN, NOBODY_UID, setUp, sleep, stateOf, vmmctl } from "./vmctl_helpers.ts";

const KVM = kvmAvailable();

async function writeConfig(
  dir: string,
  name: string,
  extra = "",
  tail = "",
): Promise<string> {
  const path = join(dir, `${name}.toml`);
  await Deno.writeTextFile(
    path,
    [
      "[vm]",
      `name = "${name}"`,
      'memory = "16M"',
      'accel = "kvm"',
      extra,
      "[boot]",
      `kernel = "${guestPath("ticker")}"`,
      tail,
    ].join("\n") + "\n",
  );
  return path;
}

function readLog(rundir: string, name: string): string {
  return Deno.readTextFileSync(join(rundir, `${name}.log`));
}

function ticks(log: string): number {
  return log.match(/^tick \d+\r$/gm)?.length ?? 0;
}

function logSize(rundir: string, name: string): number {
  return Deno.statSync(join(rundir, `${name}.log`)).size;
}

/** The tap devices process `pid` has open (Linux shows a tun fd's interface in its fdinfo). */
function tapsOfProcess(pid: number): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/fdinfo`)) {
    try {
      const m = /^iff:\s+(\S+)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/fdinfo/${e.name}`));
      if (m) out.push(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** An interface's index, or undefined when there is none of that name. */
function ifIndex(name: string): string | undefined {
  try {
    return Deno.readTextFileSync(`/sys/class/net/${name}/ifindex`).trim();
  } catch {
    return undefined;
  }
}

/** Reads a child's stdout until `pattern` shows up (or fails after `ms`). */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  seen: { text: string },
  pattern: RegExp,
  ms = 5000,
): Promise<void> {
  const deadline = Date.now() + ms;
  const dec = new TextDecoder();
  while (!pattern.test(seen.text)) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no ${pattern} in console output: ${JSON.stringify(seen.text)}`);
    const r = await Promise.race([reader.read(), sleep(left).then(() => undefined)]);
    if (!r || r.done) continue;
    seen.text += dec.decode(r.value);
  }
}

function assertNothingLeft(rundir: string, id: number, pid: number): void {
  assert.equal(openProcessLibc().processExists(pid), false, `VM process ${pid} still exists`);
  const left = [...Deno.readDirSync(rundir)].map((e) => e.name).filter((n) => !n.endsWith(".log"));
  assert.deepEqual(left.filter((n) => n.startsWith(`${id}.`)), [], `files left: ${left}`);
}

Deno.test({
  name: "vmctl: up -d, status, console, pause/unpause, graceful stop",
  ignore: !KVM,
  async fn() {
    const { rundir, dir, cleanup } = await setUp();
    try {
      const cfg = await writeConfig(dir, "tick1");
      const up = await vmmctl(rundir, ["up", "-d", cfg]);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stderr, /^vmmctl: started vm 1 successfully, tty \/dev\/pts\/\d+\n$/);
      const { pid, tty } = stateOf(rundir, 1);
      const sock = Deno.statSync(join(rundir, "1.sock"));
      assert.equal(sock.mode! & 0o777, 0o600);

      const st = await vmmctl(rundir, ["status"]);
      assert.equal(st.code, 0, st.stderr);
      const [header, row, ...rest] = st.stdout.trimEnd().split("\n");
      assert.equal(header, STATUS_HEADER);
      assert.deepEqual(rest, []);
      const ttyCol = tty.replace("/dev/", "").padStart(7);
      const expected = `    1 ${String(pid).padStart(5)}     1   16.0M `;
      assert.equal(row.slice(0, expected.length), expected);
      assert.equal(row.slice(expected.length + 7), ` ${ttyCol}         root  running tick1`);

      const json = await vmmctl(rundir, ["status", "--json", "tick1"]);
      const rows = JSON.parse(json.stdout);
      assert.equal(rows.length, 1);
      assert.equal(rows[0].name, "tick1");
      assert.equal(rows[0].pid, pid);
      assert.equal(rows[0].state, "running");
      assert.equal(rows[0].maxmemBytes, 16 * 1024 * 1024);
      assert.equal(rows[0].tty, tty);

      const again = await vmmctl(rundir, ["start", cfg]);
      assert.equal(again.code, 1);
      assert.equal(again.stderr, `vmmctl: VM "tick1" is already running (id 1, pid ${pid})\n`);

      // Console: output arrives, input reaches the guest, a second attach is refused, ~. detaches.
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "--quiet", MAIN, "console", "tick1"],
        env: { VMMCTL_RUNDIR: rundir },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = child.stdout.getReader();
      const seen = { text: "" };
      await readUntil(reader, seen, /tick \d+\r\n/);
      const second = await vmmctl(rundir, ["console", "1"]);
      assert.equal(second.code, 1);
      assert.match(second.stderr, /console of VM "tick1" is already attached/);
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode("e"));
      await readUntil(reader, seen, /echo e\r\n/);
      await writer.write(new TextEncoder().encode("\r~."));
      await writer.close();
      reader.releaseLock();
      const done = await child.output();
      assert.equal(done.code, 0);
      assert.match(new TextDecoder().decode(done.stderr), /detached from VM "tick1"/);

      // log verbose: running VMs log their control requests too.
      const verbose = await vmmctl(rundir, ["log", "verbose"]);
      assert.equal(verbose.code, 0, verbose.stderr);
      assert.equal(JSON.parse(Deno.readTextFileSync(join(rundir, "1.json"))).logLevel, "verbose");

      // Pause: the log (a copy of the console) stops growing; unpause: it grows again.
      const pause = await vmmctl(rundir, ["pause", "tick1"]);
      assert.equal(pause.code, 0, pause.stderr);
      const paused = logSize(rundir, "tick1");
      const ticksPaused = ticks(readLog(rundir, "tick1"));
      await sleep(600); // ~11 ticks' worth
      assert.equal(logSize(rundir, "tick1"), paused);
      assert.match((await vmmctl(rundir, ["status", "1"])).stdout, / paused tick1\n/);
      assert.equal((await vmmctl(rundir, ["unpause", "1"])).code, 0);
      // Count console lines: the log also gets vmmctl's own message about the unpause.
      for (let i = 0; i < 100 && ticks(readLog(rundir, "tick1")) === ticksPaused; i++) {
        await sleep(50);
      }
      assert.ok(ticks(readLog(rundir, "tick1")) > ticksPaused, "no console output after unpause");
      assert.match(readLog(rundir, "tick1"), /vmmctl: control request: \{"op":"pause"\}/);

      // Reset: the machine is built again in the same process: the guest boots from scratch.
      assert.equal((await vmmctl(rundir, ["reboot", "tick1"])).code, 0);
      for (
        let i = 0;
        i < 200 && !/booting it again[^]*tick 2\r\n/.test(readLog(rundir, "tick1"));
        i++
      ) {
        await sleep(50);
      }
      assert.match(
        readLog(rundir, "tick1"),
        /booting it again\n(.*\n)?ticker guest\r\ntick 1\r\ntick 2\r\n/,
      );
      assert.equal(stateOf(rundir, 1).pid, pid);

      // Graceful stop: the ticker powers off when it reads 'q'.
      const stop = await vmmctl(rundir, ["stop", "-w", "--keys", "q", "tick1"]);
      assert.equal(stop.code, 0, stop.stderr);
      // vmctl's one line on stderr.
      assert.equal(stop.stderr, "stopping vm tick1: terminated vm 1\n");
      assert.equal(stop.stdout, "");
      assertNothingLeft(rundir, 1, pid);
      const log = await vmmctl(rundir, ["log", "-n", "2", "tick1"]);
      assert.match(log.stdout, /ticker: power off requested\r?\n.*ended: guest powered off\n$/);
      const empty = await vmmctl(rundir, ["status"]);
      assert.equal(empty.stdout, STATUS_HEADER + "\n");
      assert.equal(empty.code, 1); // vmctl: nothing to show
    } finally {
      await cleanup();
    }
  },
});

Deno.test({
  name: "vmctl: stop -f, a killed VM shows as died once, wait returns the exit status",
  ignore: !KVM,
  async fn() {
    const { rundir, dir, cleanup } = await setUp();
    try {
      const withTap = await writeConfig(dir, "alpha", "", '[[interface]]\ntap = "auto"');
      const a = await vmmctl(rundir, ["start", withTap]);
      assert.equal(a.code, 0, a.stderr);
      // The VM process's own tap (other tests may create taps meanwhile), by name and index.
      const taps = tapsOfProcess(stateOf(rundir, 1).pid);
      assert.equal(taps.length, 1, `taps of the VM process: ${taps}`);
      assert.ok(taps[0].startsWith("vmmctl"), taps[0]);
      const tapIndex = ifIndex(taps[0]);
      const b = await vmmctl(rundir, ["start", await writeConfig(dir, "beta")]);
      assert.match(b.stderr, /started vm 2 /);
      const alpha = stateOf(rundir, 1);
      const beta = stateOf(rundir, 2);

      // -f ends the VM at once and returns once it is gone: one quiet line, no registers.
      const t0 = performance.now();
      const stop = await vmmctl(rundir, ["stop", "-f", "1"]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(stop.stderr, "stopping vm alpha: forced to terminate vm 1\n");
      assert.ok(performance.now() - t0 < 5000);
      assertNothingLeft(rundir, 1, alpha.pid);
      assert.match(readLog(rundir, "alpha"), /ended: VM stopped\n$/);
      // Gone: absent, or the name reused by someone else's new interface.
      assert.notEqual(ifIndex(taps[0]), tapIndex, `tap ${taps[0]} left behind`);

      // The lowest free id is reused.
      const c = await vmmctl(rundir, ["start", await writeConfig(dir, "gamma")]);
      assert.match(c.stderr, /started vm 1 /);
      const gamma = stateOf(rundir, 1);

      // A VM process killed outright leaves a stale socket and state: never taken for live.
      Deno.kill(beta.pid, "SIGKILL");
      for (let i = 0; i < 50 && openProcessLibc().processExists(beta.pid); i++) await sleep(20);
      const st = await vmmctl(rundir, ["status"]);
      assert.match(st.stdout, /^ {4}2 {5}- {5}1 {3}16\.0M {7}- {7}- {9}root {5}died beta$/m);
      assert.match(st.stderr, /VM "beta" \(id 2\) died: unknown exit status/);
      const st2 = await vmmctl(rundir, ["status"]);
      assert.doesNotMatch(st2.stdout, /beta/);
      assert.match(st2.stdout, / running gamma\n/);
      const gone = await vmmctl(rundir, ["pause", "beta"]);
      assert.equal(gone.stderr, 'vmmctl: no VM named "beta"\n');

      // wait: exits 0 once the VM is gone, as vmctl's; --json has how it ended.
      const waiter = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "--quiet", MAIN, "wait", "--json", "gamma"],
        env: { VMMCTL_RUNDIR: rundir },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await sleep(500);
      // The ticker has no vmmci driver and gets no keys: powered off at once, as vmd does.
      const t1 = performance.now();
      const graceful = await vmmctl(rundir, ["stop", "gamma"]);
      assert.equal(graceful.code, 0);
      assert.equal(graceful.stderr, "stopping vm gamma: requested to shutdown vm 1\n");
      const w = await waiter.output();
      assert.ok(performance.now() - t1 < 5000);
      assert.equal(w.code, 0);
      assert.equal(new TextDecoder().decode(w.stderr), "waiting for vm gamma: terminated vm 1\n");
      assert.equal(JSON.parse(new TextDecoder().decode(w.stdout)).outcome, "VM stopped");
      assert.match(readLog(rundir, "gamma"), /no vmmci driver in the guest: powered off/);
      assertNothingLeft(rundir, 1, gamma.pid);
      // Gone means gone: the same VM starts again at once.
      const again = await vmmctl(rundir, ["start", await writeConfig(dir, "gamma")]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal((await vmmctl(rundir, ["stop", "-f", "gamma"])).code, 0);
      assert.equal((await vmmctl(rundir, ["start", await writeConfig(dir, "gamma")])).code, 0);
    } finally {
      await cleanup();
    }
  },
});

Deno.test({
  name: "vmctl: errors for unknown VMs, bad flags and another user's VM; owner grants access",
  ignore: !KVM,
  async fn() {
    const { rundir, dir, cleanup } = await setUp();
    try {
      assert.equal((await vmmctl(rundir, ["pause", "web"])).stderr, 'vmmctl: no VM named "web"\n');
      assert.equal((await vmmctl(rundir, ["stop", "7"])).stderr, "vmmctl: no VM with id 7\n");
      const cfg = await writeConfig(dir, "mine");
      const n = await vmmctl(rundir, ["start", "-n", "uplink", cfg]);
      assert.equal(n.code, 1);
      assert.match(n.stderr, /^vmmctl: -n uplink: virtual switches are not supported yet/);
      const m = await vmmctl(rundir, ["start", "-m", "12Q", cfg]);
      assert.equal(m.code, 1);
      assert.match(m.stderr, /^vmmctl: invalid size: 12Q: Invalid argument\n/);

      // Two starts of one VM at once: exactly one wins.
      const twin = await writeConfig(dir, "twin");
      const both = await Promise.all([
        vmmctl(rundir, ["start", twin]),
        vmmctl(rundir, ["start", twin]),
      ]);
      assert.deepEqual(both.map((r) => r.code).sort(), [0, 1]);
      assert.match(
        both.find((r) => r.code === 1)!.stderr,
        /^vmmctl: VM "twin" is already running \(id \d, pid \d+\)\n$/,
      );
      assert.equal((await vmmctl(rundir, ["stop", "-f", "-w", "twin"])).code, 0);

      assert.equal((await vmmctl(rundir, ["start", "-m", "32M", cfg])).code, 0);
      const shared = await writeConfig(dir, "shared", 'owner = "nobody"');
      assert.equal((await vmmctl(rundir, ["start", shared])).code, 0);
      assert.equal(Deno.statSync(join(rundir, "2.sock")).uid, NOBODY_UID);

      const denied = await vmmctl(rundir, ["pause", "mine"], NOBODY_UID);
      assert.equal(denied.code, 1, denied.stderr);
      assert.equal(
        denied.stderr,
        `vmmctl: permission denied on ${join(rundir, "1.sock")}: VM "mine" belongs to root\n`,
      );
      const st = await vmmctl(rundir, ["status"], NOBODY_UID);
      assert.match(st.stdout, /^ {4}1 .* 32\.0M .* root {2}running mine$/m);
      assert.match(st.stdout, / nobody {2}running shared$/m);
      const allowed = await vmmctl(rundir, ["pause", "shared"], NOBODY_UID);
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.match((await vmmctl(rundir, ["status", "shared"])).stdout, / paused shared\n/);
    } finally {
      await cleanup();
    }
  },
});

Deno.test("vmctl: load remembers definitions, status lists them stopped, start NAME finds them", async () => {
  const { rundir, dir, cleanup } = await setUp();
  try {
    const defs = join(dir, "defs");
    await Deno.mkdir(defs);
    await writeConfig(defs, "web");
    const load = await vmmctl(rundir, ["load", defs]);
    assert.equal(load.code, 0, load.stderr);
    assert.match(load.stderr, /1 VM definitions/);
    const st = await vmmctl(rundir, ["status", "--json"]);
    const rows = JSON.parse(st.stdout);
    assert.deepEqual(rows.map((r: { name: string; state: string }) => [r.name, r.state]), [
      ["web", "stopped"],
    ]);
    const table = await vmmctl(rundir, ["show"]);
    // vmd's numbering of defined VMs, and root as the owner of a VM without one.
    assert.match(table.stdout, /^ {4}1 {5}- {5}1 {3}16\.0M {7}- {7}- {9}root {2}stopped web$/m);
    await writeConfig(defs, "db");
    const reload = await vmmctl(rundir, ["reload"]);
    assert.match(reload.stderr, /2 VM definitions/);
    const unknown = await vmmctl(rundir, ["start", "nosuch"]);
    assert.match(unknown.stderr, /^vmmctl: no VM named "nosuch"/);
    if (KVM) {
      // db was loaded second: it keeps id 2 even when it starts first; web then runs as 1.
      assert.equal((await vmmctl(rundir, ["start", "db"])).code, 0);
      const start = await vmmctl(rundir, ["start", "web"]);
      assert.equal(start.code, 0, start.stderr);
      const after = JSON.parse((await vmmctl(rundir, ["status", "--json"])).stdout);
      assert.deepEqual(
        after.map((r: { id: number; name: string; state: string }) => [r.id, r.name, r.state]),
        [[1, "web", "running"], [2, "db", "running"]],
      );
    } else {
      console.log(NO_KVM_MESSAGE);
    }
  } finally {
    await cleanup();
  }
});

Deno.test("vmctl: --help lists the verbs; send/receive say snapshots do not exist", async () => {
  const help = await vmmctl("/nonexistent", ["--help"]);
  for (const verb of ["start", "stop", "status", "console", "pause", "unpause", "reset", "wait"]) {
    assert.match(help.stdout, new RegExp(`^  ${verb} `, "m"));
  }
  assert.match(help.stdout, /vmmctl stop \[-f\] \[-w\] \[-a\]/);
  assert.match(help.stdout, /send .*not supported yet: snapshots do not exist/);
  const send = await vmmctl("/nonexistent", ["send", "1"]);
  assert.equal(send.code, 1);
  assert.equal(send.stderr, "vmmctl: send: not supported yet: snapshots do not exist\n");
});

Deno.test("vmctl: memory columns are scaled like fmt_scaled(3)", () => {
  assert.equal(formatScaled(0), "0B");
  assert.equal(formatScaled(1023), "1023B");
  assert.equal(formatScaled(512 * 1024 ** 2), "512M");
  assert.equal(formatScaled(1024 ** 3), "1.0G");
  assert.equal(formatScaled(Math.round(88.1 * 1024 ** 2)), "88.1M");
  assert.equal(formatScaled(Math.round(2.94 * 1024 ** 3)), "2.9G");
  assert.equal(formatScaled(150 * 1024 ** 2 + 400 * 1024), "150M");
  assert.equal(formatScaled(16 * 1024 ** 2), "16.0M");
});

Deno.test("vmctl: the console output ring keeps order and counts what it had to drop", () => {
  const producer = new SerialOutputRing();
  const consumer = new SerialOutputRing(producer.buffer);
  const seq = consumer.seq;
  producer.push(new TextEncoder().encode("tick 1\r\n"));
  producer.push(new TextEncoder().encode("tick 2\r\n"));
  assert.notEqual(consumer.seq, seq);
  assert.equal(new TextDecoder().decode(consumer.drain()), "tick 1\r\ntick 2\r\n");
  assert.equal(consumer.drain().length, 0);
  producer.push(new Uint8Array(SERIAL_RING_BYTES + 10).fill(0x41));
  assert.equal(consumer.drain().length, SERIAL_RING_BYTES - 1);
  assert.equal(consumer.dropped, 11);
});

Deno.test({
  name: "vmctl: a guest that exits with a status shows as died once; log keeps its console",
  ignore: !KVM,
  async fn() {
    const { rundir, dir, cleanup } = await setUp();
    try {
      const cfg = join(dir, "hello.toml");
      await Deno.writeTextFile(
        cfg,
        `[vm]\nname = "hello"\nmemory = "16M"\naccel = "kvm"\n[boot]\nkernel = "${
          guestPath("hello")
        }"\n[debug]\nexit_port = 0xf4\n`,
      );
      assert.equal((await vmmctl(rundir, ["start", cfg])).code, 0);
      const { pid } = stateOf(rundir, 1);
      for (let i = 0; i < 100 && openProcessLibc().processExists(pid); i++) await sleep(20);
      // hello writes 0x10 to the debug exit port: exit status (0x10 << 1) | 1.
      const w = await vmmctl(rundir, ["wait", "--json", "hello"]);
      assert.equal(w.code, 0);
      assert.equal(JSON.parse(w.stdout).exitStatus, 33);
      const st = await vmmctl(rundir, ["status"]);
      assert.match(st.stdout, / {5}died hello\n$/);
      assert.match(st.stderr, /VM "hello" \(id 1\) died: exit status 33 \(/);
      assert.equal((await vmmctl(rundir, ["status"])).stdout, STATUS_HEADER + "\n");
      const log = await vmmctl(rundir, ["log", "hello"]);
      assert.match(log.stdout, /Hello from vmmctl guest\r\n[^]*bye\r\n[^]*ended: /);
      assert.equal(
        (await vmmctl(rundir, ["log", "nosuch"])).stderr,
        'vmmctl: no VM named "nosuch"\n',
      );
    } finally {
      await cleanup();
    }
  },
});

Deno.test("vmctl: import writes NAME.toml files that check and load accept", async () => {
  const { rundir, dir, cleanup } = await setUp();
  try {
    const disk = join(dir, "web.img");
    await Deno.writeFile(disk, new Uint8Array(4096));
    const iso = join(dir, "x.iso");
    await Deno.writeFile(iso, new Uint8Array(4096));
    const conf = join(dir, "vm.conf");
    await Deno.writeTextFile(
      conf,
      `kern = "${guestPath("ticker")}"\n` +
        'vm "web" {\n  boot $kern\n  disk "web.img"\n  memory 64M\n  cdrom "x.iso"\n}\n' +
        'vm "db" {\n  boot $kern\n  disable\n}\n',
    );
    const out = join(dir, "defs");
    const imp = await vmmctl(rundir, ["import", "-o", out, conf]);
    assert.equal(imp.code, 0, imp.stderr);
    assert.equal(imp.stdout, `vmmctl: wrote ${out}/web.toml\nvmmctl: wrote ${out}/db.toml\n`);
    assert.match(imp.stderr, /^vmmctl: warning: .*vm\.conf:2: vm "web": enabled \(vmd starts it/m);
    for (const name of ["web", "db"]) {
      const check = await vmmctl(rundir, ["check", join(out, `${name}.toml`)]);
      assert.equal(check.code, 0, check.stderr);
    }
    assert.match(Deno.readTextFileSync(join(out, "web.toml")), new RegExp(`path = "${disk}"`));
    assert.match(
      Deno.readTextFileSync(join(out, "web.toml")),
      new RegExp(`\\[cdrom\\]\npath = "${iso}"`),
    );
    const again = await vmmctl(rundir, ["import", "-o", out, conf]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /web\.toml" exists; use --force to overwrite it/);
    assert.equal((await vmmctl(rundir, ["load", out])).code, 0);
    const rows = JSON.parse((await vmmctl(rundir, ["status", "--json"])).stdout);
    assert.deepEqual(rows.map((r: { name: string }) => r.name), ["db", "web"]);
  } finally {
    await cleanup();
  }
});

const CORPUS = new URL("./vmconf/", import.meta.url).pathname;

/** The import of one corpus file as text: warnings, errors, then each NAME.toml. */
function importTranscript(confPath: string): string {
  const result = importVmConf(Deno.readTextFileSync(confPath), { path: confPath });
  const out = ["=== warnings", ...result.warnings, "=== errors", ...result.errors];
  for (const vm of result.vms) {
    // Every converted file passes `vmmctl check`'s validation (files need not exist).
    const { config, errors } = parseConfig(vm.toml, { baseDir: CORPUS, checkFiles: false });
    assert.deepEqual(errors, [], `${vm.name}.toml`);
    assert.equal(config!.vm.name, vm.name);
    out.push(`=== ${vm.name}.toml`, vm.toml.trimEnd());
  }
  return out.join("\n").replaceAll(CORPUS, "<corpus>/") + "\n";
}

for (const entry of [...Deno.readDirSync(CORPUS)].filter((e) => e.name.endsWith(".conf"))) {
  Deno.test(`vmctl: import of tests/vmconf/${entry.name}`, () => {
    const transcript = importTranscript(join(CORPUS, entry.name));
    const expectedPath = join(CORPUS, entry.name.replace(/\.conf$/, ".expected"));
    if (Deno.env.get("VMCONF_UPDATE") === "1") Deno.writeTextFileSync(expectedPath, transcript);
    assert.equal(transcript, Deno.readTextFileSync(expectedPath));
  });
}
