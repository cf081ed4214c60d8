/**
 * `vmmctl start` as vmctl's: ad-hoc VMs from flags alone, instances of a
 * defined VM with `-t`, and vmctl's checks of every flag with its messages.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseStartRequest, startConfig } from "../cli/verbs/start.ts";
import { guestPath } from "../guests/images.ts";
import { kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { NOBODY_UID, setUp, vmmctl } from "./vmctl_helpers.ts";

const KVM = kvmAvailable();
const TICKER = guestPath("ticker");
const BOOTSECTOR = fileURLToPath(new URL("../guests/bin/disk/bootsector.img", import.meta.url));

/** [arguments after `start`, the exact stderr]: every one exits 1 before any VM starts. */
const REFUSED: [string[], string][] = [
  [["-b", "/nonexistent/bsd", "x"], "vmmctl: invalid boot image path: No such file or directory\n"],
  [["-b", TICKER, "-b", TICKER, "x"], "vmmctl: boot image specified multiple times\n"],
  [["-B", "floppy", "x"], "vmmctl: unknown boot device floppy\n"],
  [["-B", "disk", "-B", "net", "x"], "vmmctl: boot device specified multiple times\n"],
  [
    ["-m", "1", "-b", TICKER, "x"],
    "vmmctl: size must be at least one megabyte\nvmmctl: invalid memory size: 1\n",
  ],
  [
    ["-m", "512K", "-b", TICKER, "x"],
    "vmmctl: size must be at least one megabyte\nvmmctl: invalid memory size: 512K\n",
  ],
  [
    ["-m", "1Q", "-b", TICKER, "x"],
    "vmmctl: invalid size: 1Q: Invalid argument\nvmmctl: invalid memory size: 1Q\n",
  ],
  [["-m", "1G", "-m", "2G", "x"], "vmmctl: memory specified multiple times\n"],
  [
    ["-i", "two", "-b", TICKER, "x"],
    'vmmctl: invalid count "two": invalid\nvmmctl: invalid interface count: two\n',
  ],
  [["-i", "1", "-i", "2", "x"], "vmmctl: interfaces specified multiple times\n"],
  [
    ["-d", "qcow2:/nonexistent.qcow2", "x"],
    "vmmctl: invalid disk path: No such file or directory\n",
  ],
  [["-r", "/nonexistent.iso", "x"], "vmmctl: invalid iso image path: No such file or directory\n"],
  [["-m", "64M", "adhoc-nothing"], "vmmctl: no kernel or disk/cdrom specified\n"],
  [["-b", TICKER, "bad name!"], "vmmctl: invalid VM name\n"],
  [["-b", TICKER, "-i", "17", "x"], "vmmctl: too many network interfaces\n"],
  [
    ["-B", "cdrom", "-b", TICKER, "x"],
    "vmmctl: -B cdrom: no CD-ROM image to boot: give one with -r\n",
  ],
  [
    ["-B", "cdrom", "-d", BOOTSECTOR, "x"],
    "vmmctl: -B cdrom: no CD-ROM image to boot: give one with -r\n",
  ],
  [
    ["-B", "net", "-d", BOOTSECTOR, "x"],
    "vmmctl: -B net: network boot is not supported (no PXE ROM); use disk or cdrom\n",
  ],
  [["-B", "bogus", "-d", BOOTSECTOR, "x"], "vmmctl: unknown boot device bogus\n"],
  [
    ["-r", "/nonexistent.iso", "-B", "cdrom", "x"],
    "vmmctl: invalid iso image path: No such file or directory\n",
  ],
  [["-r", BOOTSECTOR, "-r", BOOTSECTOR, "x"], "vmmctl: iso image specified multiple times\n"],
  [
    ["-n", "uplink", "-b", TICKER, "x"],
    "vmmctl: -n uplink: virtual switches are not supported yet; use -i with taps\n",
  ],
  [
    ["-t", "nosuch", "-b", TICKER, "x"],
    'vmmctl: start vm command failed: no vm "nosuch" to make an instance of\n',
  ],
];

Deno.test("start: vmctl's checks of the flags, with its messages", async () => {
  const { rundir, cleanup } = await setUp();
  try {
    for (const [args, stderr] of REFUSED) {
      const r = await vmmctl(rundir, ["start", ...args]);
      assert.equal(r.stderr, stderr, args.join(" "));
      assert.equal(r.code, 1, args.join(" "));
      assert.equal(r.stdout, "", args.join(" "));
    }
    const nothing = await vmmctl(rundir, ["start", "nosuchvm"]);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /^vmmctl: no VM named "nosuchvm"/);
  } finally {
    await cleanup();
  }
});

/** [flags, the config's boot.kernel, boot.device and cdrom.path]: accepted, no VM started. */
const BIOS_ROWS: [string[], string | undefined, string | undefined, string | undefined][] = [
  [["-d", BOOTSECTOR], undefined, undefined, undefined],
  [["-d", BOOTSECTOR, "-B", "disk"], undefined, "disk", undefined],
  [["-r", BOOTSECTOR], undefined, undefined, BOOTSECTOR],
  [["-r", BOOTSECTOR, "-B", "cdrom"], undefined, "cdrom", BOOTSECTOR],
  [["-d", BOOTSECTOR, "-r", BOOTSECTOR, "-B", "cdrom"], undefined, "cdrom", BOOTSECTOR],
  [["-b", TICKER, "-r", BOOTSECTOR], TICKER, undefined, BOOTSECTOR],
];

Deno.test("start: -d without -b boots through the BIOS; -r and -B set [cdrom] and boot.device", async () => {
  const { rundir, cleanup } = await setUp();
  try {
    for (const [args, kernel, device, cdrom] of BIOS_ROWS) {
      const flags: Record<string, string[]> = {};
      const key: Record<string, string> = {
        "-d": "disk",
        "-B": "boot-device",
        "-r": "cdrom",
        "-b": "kernel",
      };
      for (let i = 0; i < args.length; i += 2) (flags[key[args[i]]] ??= []).push(args[i + 1]);
      const config = startConfig(rundir, parseStartRequest("biosvm", flags));
      const what = args.join(" ");
      assert.equal(
        config.boot.kernel,
        kernel === undefined ? undefined : Deno.realPathSync(kernel),
        what,
      );
      assert.equal(config.boot.device, device, what);
      assert.equal(config.cdrom?.path, cdrom, what);
      assert.equal(config.vm.name, "biosvm", what);
    }
  } finally {
    await cleanup();
  }
});

Deno.test({
  name: "start: an ad-hoc VM from flags alone, and an instance of a defined VM with -t",
  ignore: !KVM,
  async fn() {
    const { rundir, dir, cleanup } = await setUp();
    try {
      const adhoc = await vmmctl(rundir, ["start", "-m", "16.5M", "-b", TICKER, "adhoc"]);
      assert.equal(adhoc.code, 0, adhoc.stderr);
      assert.equal(adhoc.stdout, "");
      assert.match(
        adhoc.stderr,
        /^vmmctl: size rounded to 16 megabytes\nvmmctl: starting without disks\nvmmctl: starting without network interfaces\nvmmctl: started vm 1 successfully, tty \/dev\/pts\/\d+\n$/,
      );
      const st = await vmmctl(rundir, ["status", "adhoc"]);
      assert.match(st.stdout, /^ {4}1 +\d+ +1 +16\.0M .* running adhoc$/m);

      // A template that allows instances to change memory, for nobody only.
      const conf = join(dir, "vm.conf");
      await Deno.writeTextFile(
        conf,
        `vm "base" {\n  memory 16M\n  boot "${TICKER}"\n  allow instance { memory, owner nobody }\n}\n` +
          `vm "sealed" {\n  memory 16M\n  boot "${TICKER}"\n}\n`,
      );
      assert.equal((await vmmctl(rundir, ["load", conf])).code, 0);
      const child = await vmmctl(rundir, ["start", "-t", "base", "-m", "24M", "child"]);
      assert.equal(child.code, 0, child.stderr);
      const rows = JSON.parse((await vmmctl(rundir, ["status", "--json"])).stdout);
      const row = rows.find((r: { name: string }) => r.name === "child");
      assert.equal(row.maxmemBytes, 24 * 1024 * 1024);
      assert.equal(row.state, "running");
      const twice = await vmmctl(rundir, ["start", "-t", "base", "base"]);
      assert.match(twice.stderr, /vm "base" is already defined/);
      // An unprivileged user: only what allow instance grants.
      const sealed = await vmmctl(rundir, ["start", "-t", "sealed", "mine"], NOBODY_UID);
      assert.equal(sealed.code, 1);
      assert.match(
        sealed.stderr,
        /Operation not permitted \(vm "sealed" does not allow instances by nobody\)/,
      );
      const kernel = await vmmctl(
        rundir,
        ["start", "-t", "base", "-b", TICKER, "mine"],
        NOBODY_UID,
      );
      assert.equal(kernel.code, 1);
      assert.match(
        kernel.stderr,
        /Operation not permitted \(instances of "base" may not change boot\)/,
      );
    } finally {
      await cleanup();
    }
  },
});

if (!KVM) console.log(NO_KVM_MESSAGE);

Deno.test({
  name: "start: the VM process starts whatever the deno binary is called",
  ignore: !KVM,
  async fn() {
    const { rundir, dir, cleanup } = await setUp();
    try {
      const renamed = join(dir, "my-runtime");
      await Deno.copyFile(Deno.execPath(), renamed);
      await Deno.chmod(renamed, 0o755);
      const main = new URL("../main.ts", import.meta.url).pathname;
      const out = await new Deno.Command(renamed, {
        args: [
          "run",
          "--allow-all",
          "--quiet",
          main,
          "start",
          "-m",
          "16M",
          "-b",
          TICKER,
          "renamed",
        ],
        env: { VMMCTL_RUNDIR: rundir, NO_COLOR: "1" },
        stdin: "null",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      assert.match(stderr, /started vm 1 successfully/);
    } finally {
      await cleanup();
    }
  },
});
