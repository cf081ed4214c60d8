import assert from "node:assert/strict";
import { vmmctl } from "./cli.ts";
import { kvmAvailable } from "./boot.ts";
import { guestPath } from "../guests/images.ts";

const tmp = await Deno.makeTempDir({ prefix: "vmmctl-cli-" });
const kernel = `${tmp}/kernel.bin`;
await Deno.writeFile(kernel, new Uint8Array(64));
await Deno.writeTextFile(
  `${tmp}/good.toml`,
  `[vm]\nname = "good"\nmemory = "64M"\n\n[boot]\nkernel = "kernel.bin"\n`,
);
await Deno.writeTextFile(
  `${tmp}/bad.toml`,
  `[vm]\nname = "bad"\nmemroy = "64M"\nvcpus = 65\n\n[boot]\nkernel = "missing.bin"\n`,
);

Deno.test("cli: --help lists every command with its flags; no command is a usage error", async () => {
  const help = await vmmctl(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^ {2}up /m);
  assert.match(help.stdout, /^ {2}check /m);
  assert.match(help.stdout, /--accel ACCEL/);
  const none = await vmmctl([]);
  assert.equal(none.code, 1);
  const upHelp = await vmmctl(["up", "--help"]);
  assert.equal(upHelp.code, 0);
  assert.match(upHelp.stdout, /usage: vmmctl up \[FILE\]/);
  assert.match(upHelp.stdout, /--serial MODE/);
});

Deno.test("cli: unknown commands and flags are usage errors (exit 1, as vmctl) with a clear message", async () => {
  const r = await vmmctl(["frobnicate"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown command "frobnicate"/);
  const f = await vmmctl(["check", "--bogus", `${tmp}/good.toml`]);
  assert.equal(f.code, 1);
  assert.match(f.stderr, /unknown option "--bogus" for "check"/);
  assert.match(f.stderr, /^usage: vmmctl \[-v\] check \[--json\] FILE$/m);
  const a = await vmmctl(["up", "--accel", "xen"]);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /unknown accelerator "xen"/);
});

Deno.test("cli: check prints the normalized config (0) or every error (1)", async () => {
  const good = await vmmctl(["check", `${tmp}/good.toml`]);
  assert.equal(good.code, 0, good.stderr);
  assert.match(good.stdout, /name = "good"/);
  const json = await vmmctl(["check", "--json", `${tmp}/good.toml`]);
  assert.equal(json.code, 0);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.vm.memoryBytes, 64 * 1024 * 1024);
  assert.equal(parsed.boot.kernel, kernel);
  const bad = await vmmctl(["check", `${tmp}/bad.toml`]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /vm\.memroy \(line 3\): unknown key; did you mean "memory"\?/);
  assert.match(bad.stderr, /vm\.vcpus \(line 4\): must be between 1 and 64, got 65/);
  assert.match(bad.stderr, /boot\.kernel \(line 7\): file ".*missing\.bin" does not exist/);
});

Deno.test("cli: up with a kernel that is no known format fails with a clear message", async () => {
  const r = await vmmctl(["up", `${tmp}/good.toml`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /not a bzImage, ELF or Multiboot v1 image/);
});

Deno.test({
  name:
    "cli: up --serial pty puts the console on a new pty: output reads there, input reaches COM1",
  ignore: !kvmAvailable(),
  async fn() {
    const cfg = `${tmp}/ticker.toml`;
    await Deno.writeTextFile(
      cfg,
      `[vm]\nname = "ticker"\nmemory = "32M"\n\n[boot]\nkernel = "${guestPath("ticker")}"\n`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        new URL("../main.ts", import.meta.url).pathname,
        "up",
        "--serial",
        "pty",
        cfg,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = child.stderr.getReader();
    let err = "";
    while (!/console on (\S+)/.test(err)) {
      const { value, done } = await stderr.read();
      if (done) break;
      err += new TextDecoder().decode(value);
    }
    const path = /console on (\S+)/.exec(err)?.[1];
    assert.ok(path?.startsWith("/dev/pts/"), err);
    const tty = await Deno.open(path!, { read: true, write: true });
    let seen = "";
    const buf = new Uint8Array(256);
    while (!/tick 3/.test(seen)) {
      const n = await tty.read(buf);
      if (n === null) break;
      seen += new TextDecoder().decode(buf.subarray(0, n));
    }
    assert.match(seen, /tick 1\b[\s\S]*tick 2\b/);
    await tty.write(new TextEncoder().encode("q"));
    const status = await child.status;
    tty.close();
    stderr.releaseLock();
    await child.stderr.cancel();
    await child.stdout.cancel();
    assert.equal(status.code, 0, "the guest powered off on 'q' typed on the pty");
  },
});

Deno.test("cli: commands by unique prefix (stat, sh, che), ambiguous ones refused; global -v", async () => {
  const env = { VMMCTL_RUNDIR: `${tmp}/run` };
  const stat = await vmmctl(["stat"], { env });
  assert.equal(stat.stdout, (await vmmctl(["status"], { env })).stdout);
  assert.match(stat.stdout, /^ {3}ID {3}PID VCPUS/);
  assert.equal(stat.code, 1, "an empty table");
  assert.match((await vmmctl(["sh"], { env })).stdout, /^ {3}ID/);
  assert.equal((await vmmctl(["che", `${tmp}/good.toml`])).code, 0);
  const st = await vmmctl(["st"], { env });
  assert.equal(st.code, 1);
  assert.match(st.stderr, /^vmmctl: ambiguous argument: st \(start, stop, status\)/);
  const verbose = await vmmctl(["-v", "stat"], { env });
  assert.equal(verbose.stdout, stat.stdout);
});
