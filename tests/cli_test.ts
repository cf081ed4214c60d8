import assert from "node:assert/strict";
import { vmmctl } from "./cli.ts";

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
  assert.equal(none.code, 2);
  const upHelp = await vmmctl(["up", "--help"]);
  assert.equal(upHelp.code, 0);
  assert.match(upHelp.stdout, /usage: vmmctl up \[FILE\]/);
  assert.match(upHelp.stdout, /--serial MODE/);
});

Deno.test("cli: unknown commands and flags are usage errors (exit 2) with a clear message", async () => {
  const r = await vmmctl(["frobnicate"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
  const f = await vmmctl(["check", "--bogus", `${tmp}/good.toml`]);
  assert.equal(f.code, 2);
  assert.match(f.stderr, /unknown option "--bogus" for "check"/);
  const a = await vmmctl(["up", "--accel", "xen"]);
  assert.equal(a.code, 2);
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
