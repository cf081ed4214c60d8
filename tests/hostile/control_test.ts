/**
 * The control socket of a managed VM, attacked from the client side, and
 * the `reset` then `stop -f -w` sequence that used to leave the VM running.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { guestPath } from "../../guests/images.ts";
import { openProcessLibc } from "../../ffi/libc.ts";
import { kvmAvailable } from "../boot.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const KVM = kvmAvailable();

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function vmmctl(rundir: string, args: string[], timeoutMs = 30_000) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", MAIN, ...args],
    env: { VMMCTL_RUNDIR: rundir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Sends raw `line` bytes on VM `id`'s socket; returns the reply line. */
async function raw(rundir: string, id: number, line: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: join(rundir, `${id}.sock`) });
  try {
    await conn.write(new TextEncoder().encode(line));
    let text = "";
    const buf = new Uint8Array(4096);
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text.trimEnd();
  } finally {
    conn.close();
  }
}

async function withTicker(
  f: (rundir: string, pid: number, cfg: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "guest-control-" });
  const rundir = join(dir, "run");
  const cfg = join(dir, "t.toml");
  await Deno.writeTextFile(
    cfg,
    `[vm]\nname = "t"\nmemory = "16M"\naccel = "kvm"\n[boot]\nkernel = "${guestPath("ticker")}"\n`,
  );
  try {
    const up = await vmmctl(rundir, ["up", "-d", cfg]);
    assert.equal(up.code, 0, up.stderr);
    const pid = JSON.parse(Deno.readTextFileSync(join(rundir, "1.json"))).pid as number;
    await f(rundir, pid, cfg);
  } finally {
    await vmmctl(rundir, ["stop", "-f", "-w", "-a"]).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "control socket: malformed requests get a clear error and change nothing",
  ignore: !KVM,
  async fn() {
    await withTicker(async (rundir, pid) => {
      const cases: [string, RegExp][] = [
        ['{"op":"stop","force":"yes","timeoutMs":"x"}\n', /"force" must be a boolean/],
        ['{"op":"stop","force":false,"timeoutMs":-5}\n', /"timeoutMs" must be a finite number/],
        ['{"op":"stop","force":false,"timeoutMs":1e999}\n', /"timeoutMs" must be a finite number/],
        ['{"op":"explode"}\n', /unknown request op/],
        ['{"op":"pause","now":true}\n', /unknown field "now"/],
        ["not json\n", /^malformed request: /],
        ["[1,2]\n", /must be a JSON object/],
      ];
      for (const [line, re] of cases) {
        const reply = JSON.parse(await raw(rundir, 1, line));
        assert.equal(reply.ok, false, line);
        assert.match(reply.error, re, line);
      }
      const status = await vmmctl(rundir, ["status", "--json", "t"]);
      assert.equal(JSON.parse(status.stdout)[0].state, "running");
      assert.equal(openProcessLibc().processExists(pid), true);
    });
  },
});

Deno.test({
  name: "control socket: stop -f -w right after reboot (reset) stops the VM (3 of 3)",
  ignore: !KVM,
  async fn() {
    await withTicker(async (rundir, pid, cfg) => {
      for (let round = 1; round <= 3; round++) {
        let id = 1;
        let vmPid = pid;
        if (round > 1) {
          const up = await vmmctl(rundir, ["up", "-d", cfg]);
          assert.equal(up.code, 0, up.stderr);
          id = Number(/started vm (\d+)/i.exec(up.stdout + up.stderr)?.[1]);
          vmPid = JSON.parse(Deno.readTextFileSync(join(rundir, `${id}.json`))).pid;
        }
        // `reboot` is vmmctl's per-VM reset (vmctl's own `reset` resets the daemon's state).
        const reboot = await vmmctl(rundir, ["reboot", "t"]);
        assert.equal(reboot.code, 0, reboot.stderr);
        const stop = await vmmctl(rundir, ["stop", "-f", "-w", "t"], 20_000);
        assert.equal(stop.code, 0, `round ${round}: ${stop.stderr}${stop.stdout}`);
        assert.match(stop.stdout + stop.stderr, new RegExp(`terminated vm ${id}\\b`, "i"));
        assert.equal(exists(join(rundir, `${id}.sock`)), false, `round ${round}: socket left`);
        assert.equal(
          openProcessLibc().processExists(vmPid),
          false,
          `round ${round}: VM still runs`,
        );
      }
    });
  },
});
