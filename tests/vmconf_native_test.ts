/**
 * vm.conf(5) read natively by `check`, `load`, `status` and `start`: the
 * manual's EXAMPLES and the shape of OpenBSD's etc/examples/vm.conf (macros
 * joined with strings, the old `kernel` keyword, `interfaces N`, `disable`),
 * and definitions with errors shown with them, never dropped.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readDefinitions } from "../config/definitions.ts";
import { guestPath } from "../guests/images.ts";
import { kvmAvailable } from "./boot.ts";
import { setUp, vmmctl } from "./vmctl_helpers.ts";

const MIB = 1024 * 1024;

/** vm.conf(5)'s EXAMPLES section: a VM owned by joe on switch "uplink", an instance, the switch. */
const MANUAL_EXAMPLES = `
vm "vm2.example.com" {
	memory 1G
	disk "/home/joe/vm2-disk.img"
	interface { switch "uplink" }
	owner joe
}

vm "vm2.example.com" instance "vm3.example.com" {
	disk "/home/joe/vm3-disk.img"
}

switch "uplink" {
	interface bridge0
}
`;

Deno.test("vm.conf: the manual's EXAMPLES read natively", async () => {
  const { dir, cleanup } = await setUp();
  try {
    const conf = join(dir, "vm.conf");
    await Deno.writeTextFile(conf, MANUAL_EXAMPLES);
    const set = readDefinitions([conf], { checkHost: false });
    assert.deepEqual(set.errors, []);
    assert.deepEqual(set.definitions.map((d) => [d.name, d.where, d.errors]), [
      ["vm2.example.com", `${conf}:2`, []],
      ["vm3.example.com", `${conf}:9`, []],
    ]);
    const [vm2, vm3] = set.definitions.map((d) => d.config!);
    assert.equal(vm2.vm.memoryBytes, 1024 * MIB);
    assert.deepEqual(vm2.vm.owner, { user: "joe" });
    assert.deepEqual(vm2.disks.map((d) => d.path), ["/home/joe/vm2-disk.img"]);
    assert.equal(vm2.interfaces.length, 1);
    // The instance: the parent's memory, owner and interface, its own disk.
    assert.equal(set.definitions[1].instanceOf, "vm2.example.com");
    assert.equal(vm3.vm.memoryBytes, 1024 * MIB);
    assert.deepEqual(vm3.disks.map((d) => d.path), ["/home/joe/vm3-disk.img"]);
    assert.deepEqual(
      set.switches.map((s) => [s.name, s.iface, s.enabled]),
      [["uplink", "bridge0", true]],
    );
    // Checked against this host: no joe, no disks: both VMs are kept, with their errors.
    const host = readDefinitions([conf]);
    assert.deepEqual(host.definitions.map((d) => d.name), ["vm2.example.com", "vm3.example.com"]);
    const errors = host.definitions[0].errors.join("\n");
    assert.match(errors, /vm\.owner: unknown user "joe"/);
    assert.match(errors, /disk\[0\]\.path: file "\/home\/joe\/vm2-disk\.img" does not exist/);
    assert.equal(host.definitions[0].config, undefined);
  } finally {
    await cleanup();
  }
});

/** etc/examples/vm.conf's shape, with files that exist: a macro joined with a string. */
function examplesConf(dir: string, memory: string): string {
  return [
    "# Macros",
    `sets="${dir}/"`,
    "",
    "# An install test: ramdisk kernel, a disk for the system, one with the sets",
    'vm "openbsd.vm" {',
    `\tmemory ${memory}`,
    '\tkernel $sets "bsd.rd"',
    '\tdisk "OpenBSD.img"',
    '\tdisk $sets "install.fs"',
    "\tinterfaces 1",
    "}",
    "",
    "# Not started at boot",
    'vm "vm1.example.com" {',
    "\tdisable",
    "\tmemory 1G",
    "\tinterfaces 2",
    '\tkernel "bsd.rd"',
    '\tdisk "vm1-disk.img"',
    "}",
    "",
  ].join("\n");
}

Deno.test("vm.conf: etc/examples/vm.conf checks, loads, shows in status and starts by name", async () => {
  const { rundir, dir, cleanup } = await setUp();
  try {
    await Deno.copyFile(guestPath("ticker"), join(dir, "bsd.rd"));
    for (const disk of ["OpenBSD.img", "install.fs", "vm1-disk.img"]) {
      await Deno.writeFile(join(dir, disk), new Uint8Array(MIB));
    }
    const conf = join(dir, "vm.conf");
    await Deno.writeTextFile(conf, examplesConf(dir, "16M"));

    const check = await vmmctl(rundir, ["check", conf]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(
      check.stdout,
      /^# vm "openbsd\.vm" \(.*vm\.conf:5\)\n\[vm\]\nname = "openbsd\.vm"/m,
    );
    assert.match(check.stdout, /^# vm "vm1\.example\.com" \(.*vm\.conf:14\), disabled$/m);
    assert.match(check.stdout, new RegExp(`path = "${dir}/install\\.fs"`));
    assert.match(check.stderr, /vm\.conf:7: vm "openbsd\.vm": "kernel" is the old name of "boot"/);
    assert.match(check.stderr, /checked .*: 2 VM definitions\n$/);
    const json = JSON.parse((await vmmctl(rundir, ["check", "--json", conf])).stdout);
    assert.deepEqual(json.map((d: { name: string; enabled: boolean }) => [d.name, d.enabled]), [
      ["openbsd.vm", true],
      ["vm1.example.com", false],
    ]);
    assert.equal(json[1].config.interfaces.length, 2);

    const load = await vmmctl(rundir, ["load", conf]);
    assert.equal(load.code, 0, load.stderr);
    assert.equal(load.stdout, "");
    const rows = JSON.parse((await vmmctl(rundir, ["status", "--json"])).stdout);
    assert.deepEqual(rows.map((r: { name: string; state: string }) => [r.name, r.state]), [
      ["openbsd.vm", "stopped"],
      ["vm1.example.com", "stopped"],
    ]);
    if (kvmAvailable()) {
      // Interfaces need taps (root and /dev/net/tun): start the one without them.
      await Deno.writeTextFile(conf, examplesConf(dir, "16M").replace("\tinterfaces 1\n", ""));
      const start = await vmmctl(rundir, ["start", "openbsd.vm"]);
      assert.equal(start.code, 0, start.stderr);
      const after = JSON.parse((await vmmctl(rundir, ["status", "--json"])).stdout);
      assert.deepEqual(after.map((r: { name: string; state: string }) => [r.name, r.state]), [
        ["openbsd.vm", "running"],
        ["vm1.example.com", "stopped"],
      ]);
    }
  } finally {
    await cleanup();
  }
});

Deno.test("vm.conf: definitions with errors are loaded and shown with them, never dropped", async () => {
  const { rundir, dir, cleanup } = await setUp();
  try {
    const conf = join(dir, "vm.conf");
    await Deno.writeTextFile(
      conf,
      `vm "good" {\n  boot "${guestPath("ticker")}"\n  memory 16M\n}\n` +
        'vm "nodisk" {\n  boot "/bsd"\n  disk "/nonexistent/disk.img"\n}\n' +
        'vm "typo" {\n  memroy 1G\n}\n' +
        'vm "stranger" {\n  boot "/bsd"\n  owner nosuchuser-vmctl\n}\n',
    );
    const load = await vmmctl(rundir, ["load", conf]);
    assert.equal(load.code, 1);
    assert.match(load.stderr, /vm\.conf:5: vm "nodisk": disk\[0\]\.path: file .* does not exist/);
    assert.match(load.stderr, /vm\.conf:10: unknown vm option "memroy"/);
    assert.match(load.stderr, /vm "stranger": vm\.owner: unknown user "nosuchuser-vmctl"/);
    assert.match(load.stderr, /4 VM definitions, 3 with errors\n$/);
    const st = await vmmctl(rundir, ["status"]);
    assert.match(st.stdout, /^ {4}2 {5}- {5}- {7}- {7}- {7}- {12}- {2}invalid nodisk$/m);
    assert.match(st.stdout, / stopped good$/m);
    assert.match(st.stdout, / invalid stranger$/m);
    assert.match(st.stdout, / invalid typo$/m);
    assert.match(st.stderr, /vmmctl: .*vm\.conf:10: unknown vm option "memroy"/);
    const start = await vmmctl(rundir, ["start", "nodisk"]);
    assert.equal(start.code, 1);
    assert.match(start.stderr, /disk\[0\]\.path: file "\/nonexistent\/disk\.img" does not exist/);
    // The TOML check catches a missing owner too.
    const toml = join(dir, "t.toml");
    await Deno.writeTextFile(
      toml,
      `[vm]\nname = "t"\nowner = "nosuchuser-vmctl"\n[boot]\nkernel = "${guestPath("ticker")}"\n`,
    );
    const check = await vmmctl(rundir, ["check", toml]);
    assert.equal(check.code, 1);
    assert.match(check.stderr, /vm\.owner \(line 3\): unknown user "nosuchuser-vmctl"/);
  } finally {
    await cleanup();
  }
});
