/**
 * Solo5 hvt unikernels end to end, on KVM and on the OpenBSD back-end over
 * its vmm(4) emulation: command line and boot info, output volume, aborts
 * after traps, triple faults, time and poll, block devices with 512- and
 * 4096-byte sectors (the image file checked afterwards), the network
 * through a tap in a network namespace (hypercalls and the shared ring),
 * ABI violations that must end the guest and leave the VMM working, and
 * the `vmmctl solo5` / `vmmctl up` command lines.
 */
import assert from "node:assert/strict";
import type { AccelChoice } from "../accel/select.ts";
import { createAccel } from "../accel/select.ts";
import type { InterfaceConfig, VmConfig } from "../config/schema.ts";
import { openLibc } from "../ffi/libc.ts";
import { VcpuControl } from "../machine/vcpu_channel.ts";
import { VmHost } from "../machine/host.ts";
import { machineWorker } from "../solo5/select.ts";
import { exitStatus, type Outcome } from "../machine/machine.ts";
import type { Solo5DiskConfig } from "../solo5/devices.ts";
import { Solo5Machine } from "../solo5/tender.ts";
import { preprocessSolo5Args } from "../cli/verbs/solo5.ts";
import { kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { vmmctl } from "./cli.ts";
import { ip, linkExists, netUnavailable } from "./netns.ts";

const ignore = !kvmAvailable();
if (ignore) console.warn(`solo5 unikernels: ${NO_KVM_MESSAGE}`);

const ACCELS: AccelChoice[] = ["kvm", "openbsd-on-kvm"];
const guest = (name: string) =>
  new URL(`../solo5/tests/guests/${name}.hvt`, import.meta.url).pathname;

function config(
  kernel: string,
  cmdline: string,
  accel: AccelChoice,
  extra: { disks?: Solo5DiskConfig[]; interfaces?: InterfaceConfig[]; memoryBytes?: number } = {},
): VmConfig {
  return {
    vm: {
      name: "solo5-test",
      memoryBytes: extra.memoryBytes ?? 16 << 20,
      vcpus: 1,
      accel,
      irqchip: "user",
    },
    boot: { kernel, cmdline },
    disks: extra.disks ?? [],
    interfaces: extra.interfaces ?? [],
    console: { serial: "none" },
    debug: {},
  };
}

/** Runs a unikernel the way `vmmctl up` does (VmHost picks the tender worker). */
async function run(
  vm: VmConfig,
  timeoutMs = 30_000,
): Promise<{ outcome: Outcome; status: number; output: string }> {
  const chunks: Uint8Array[] = [];
  const host = new VmHost({
    config: vm,
    serial: { serial: "none" },
    worker: machineWorker(vm),
    onSerialOutput: (b) => chunks.push(b.slice()),
  });
  const timer = setTimeout(() => host.stop(), timeoutMs);
  const outcome = await host.start();
  clearTimeout(timer);
  const output = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  return { outcome, status: exitStatus(outcome), output };
}

for (const accel of ACCELS) {
  Deno.test({
    name: `solo5 [${accel}]: hello sees its command line, memory size, TSC rate and manifest`,
    ignore,
    async fn() {
      const r = await run(config(guest("probe"), "hello Hello_Solo5 exit=42", accel));
      assert.equal(r.status, 42, JSON.stringify(r.outcome));
      const lines = r.output.split("\n");
      assert.equal(lines[0], "hello: cmdline=[hello Hello_Solo5 exit=42]");
      const m = /mem_size=0x1000000 kernel_end=0x(\w+) tsc_hz=(\d+) mft_entries=1 features=0/.exec(
        lines[1],
      );
      assert.ok(m, lines[1]);
      assert.ok(Number(m[2]) > 100e6, `TSC ${m[2]} Hz`);
    },
  });

  Deno.test({
    name: `solo5 [${accel}]: output volume arrives complete and in order`,
    ignore,
    async fn() {
      const r = await run(config(guest("probe"), "output", accel));
      assert.equal(r.status, 0);
      const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n";
      const block = line.repeat(64);
      let expected = "";
      for (let i = 0; i < 16; i++) expected += block.slice(0, 4096 - i);
      expected += "output: done\n";
      assert.equal(r.output.length, expected.length);
      assert.equal(r.output, expected);
    },
  });

  Deno.test({
    name:
      `solo5 [${accel}]: traps end in ABORT (255) with the trap frame; no IDT is a triple fault`,
    ignore,
    async fn() {
      const libc = openLibc();
      const trapOf = async (cmdline: string) => {
        const out: string[] = [];
        const m = new Solo5Machine({
          config: config(guest("probe"), cmdline, accel),
          accel: await createAccel(accel, libc),
          output: (b) => out.push(new TextDecoder().decode(b)),
          libc,
        });
        try {
          const outcome = m.run(new VcpuControl());
          return { outcome, trap: m.lastTrap, out: out.join("") };
        } finally {
          m.close();
        }
      };
      const ud = await trapOf("ud2");
      assert.deepEqual(ud.outcome, { kind: "exit-port", status: 255 });
      assert.ok(ud.trap, "the abort carried a trap frame");
      assert.equal(ud.out, `probe: trap at rip 0x${ud.trap.rip.toString(16)}\n`);
      assert.equal(ud.trap.cs, 8n);
      const pf = await trapOf("pagefault");
      assert.equal(pf.outcome.kind === "exit-port" && pf.outcome.status, 255);
      assert.equal(pf.trap?.cr2, 8n, "the write to page 0 faulted at its address");
      assert.equal(pf.trap!.ec & 3n, 2n, "not-present page, write access");
      const tf = await trapOf("tripfault");
      assert.equal(tf.outcome.kind, "triple-fault");
    },
  });

  Deno.test({
    name: `solo5 [${accel}]: walltime and poll (timeout 0 returns at once, 30 ms waits 30 ms)`,
    ignore,
    async fn() {
      const before = BigInt(Date.now()) * 1_000_000n;
      const timeRun = async () => {
        const r = await run(config(guest("probe"), "time", accel));
        assert.equal(r.status, 0, r.output);
        return Object.fromEntries(
          [...r.output.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], BigInt(m[2])]),
        );
      };
      const f = await timeRun();
      assert.ok(f.wall_ns >= before && f.wall_ns < before + 30_000_000_000n, `wall ${f.wall_ns}`);
      assert.equal(f.poll0_ret, 0n);
      // A loaded host can deschedule the vCPU thread during one poll(0); a poll(0) that waits
      // waits every time: the fastest of three runs must be quick.
      let poll0 = f.poll0_ns;
      for (let i = 0; i < 2 && poll0 >= 20_000_000n; i++) {
        const again = (await timeRun()).poll0_ns;
        if (again < poll0) poll0 = again;
      }
      assert.ok(poll0 < 20_000_000n, `poll(0) took ${poll0} ns`);
      assert.equal(f.poll30_ret, 0n);
      assert.ok(
        f.poll30_ns >= 30_000_000n && f.poll30_ns < 2_000_000_000n,
        `poll(30ms) ${f.poll30_ns}`,
      );
      assert.equal(f.ready, 0n);
      // The TSC rate from boot info turns guest ticks into time that matches the wall clock.
      assert.ok(f.tsc_ns >= 30_000_000n && f.tsc_ns < 5_000_000_000n, `tsc ${f.tsc_ns}`);
    },
  });

  for (const sectorBytes of [512, 4096]) {
    Deno.test({
      name:
        `solo5 [${accel}]: block device with ${sectorBytes}-byte sectors reads, writes, refuses bad requests`,
      ignore,
      async fn() {
        const path = await Deno.makeTempFile({ prefix: "vmmctl-solo5-", suffix: ".img" });
        try {
          const size = 64 * 1024;
          const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 7) & 0xff);
          bytes.set(new TextEncoder().encode("VMMCTL-SOLO5-BLK"));
          await Deno.writeFile(path, bytes);
          const r = await run(config(guest("blk"), "", accel, {
            disks: [{ path, format: "raw", readonly: false, name: "storage", sectorBytes }],
          }));
          assert.equal(r.status, 0, r.output);
          assert.equal(
            r.output,
            `blk: sector=${sectorBytes} capacity=${size} first=[VMMCTL-SOLO5-BLK]\n` +
              "blk: readback ok\nblk: errors ok\n",
          );
          const after = await Deno.readFile(path);
          const expected = bytes.slice(0, sectorBytes).map((b) => ~b & 0xff);
          assert.deepEqual(after.subarray(size - sectorBytes), expected);
          assert.deepEqual(
            after.subarray(0, size - sectorBytes),
            bytes.subarray(0, size - sectorBytes),
          );
        } finally {
          await Deno.remove(path);
        }
      },
    });
  }

  Deno.test({
    name: `solo5 [${accel}]: ABI violations end the guest with a clear error; the VMM goes on`,
    ignore,
    async fn() {
      const libc = openLibc();
      const cases: [string, RegExp][] = [
        [
          "badputs",
          /Invalid guest access in PUTS: string of 16777216 bytes at 0x\w+ is outside guest memory/,
        ],
        ["badarg", /Invalid guest access in PUTS: argument structure of 16 bytes at 0xfffffff0/],
        ["badcookie", /Invalid guest access in HALT: halt cookie of 512 bytes/],
        ["badport", /Invalid guest port access: OUT of 1 byte\(s\) x1 to port 0x3f8/],
        ["badcall", /Invalid guest hypercall 0/],
      ];
      for (const [cmdline, message] of cases) {
        const m = new Solo5Machine({
          config: config(guest("probe"), cmdline, accel),
          accel: await createAccel(accel, libc),
          output: () => {},
          libc,
        });
        try {
          const o = m.run(new VcpuControl());
          assert.equal(o.kind, "failed", cmdline);
          assert.match(o.kind === "failed" ? o.reason : "", message);
          assert.match(o.kind === "failed" ? o.reason : "", /RIP=/, "with the registers");
        } finally {
          m.close();
        }
      }
      // The same process runs the next unikernel normally.
      const out: string[] = [];
      const m = new Solo5Machine({
        config: config(guest("probe"), "hello again", accel),
        accel: await createAccel(accel, libc),
        output: (b) => out.push(new TextDecoder().decode(b)),
        libc,
      });
      try {
        assert.deepEqual(m.run(new VcpuControl()), { kind: "exit-port", status: 0 });
        assert.match(out.join(""), /cmdline=\[hello again\]/);
      } finally {
        m.close();
      }
    },
  });
}

const noNet = ignore ? NO_KVM_MESSAGE : netUnavailable();
if (noNet && !ignore) console.warn(`solo5 network tests skipped: ${noNet}`);

for (const accel of ACCELS) {
  for (const mode of ["hypercalls", "ring"]) {
    Deno.test({
      name: `solo5 [${accel}]: ARP with a network namespace through a tap (${mode})`,
      ignore: noNet !== undefined,
      async fn() {
        const ns = `vmmctl-s5-${Deno.pid}`;
        const tap = `s5${mode[0]}${Deno.pid % 100000}`;
        ip("netns", "add", ns);
        try {
          const running = run(
            config(guest("net"), mode === "ring" ? "ring" : "", accel, {
              interfaces: [{ tap, name: "service", lladdr: "fe:e1:ba:d0:00:05" }],
            }),
            60_000,
          );
          // The VMM creates the tap here; move it into the namespace, which answers ARP.
          const deadline = Date.now() + 20_000;
          while (!linkExists(tap) && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 20));
          }
          ip("link", "set", "dev", tap, "netns", ns);
          ip("-n", ns, "addr", "add", "10.77.0.1/24", "dev", tap);
          ip("-n", ns, "link", "set", "dev", tap, "up");
          const r = await running;
          assert.equal(r.status, 0, `${JSON.stringify(r.outcome)}\n${r.output}`);
          const nsMac = /link\/ether ([0-9a-f:]+)/.exec(ip("-n", ns, "link", "show"))?.[1];
          assert.match(r.output, mode === "ring" ? /^net: using the ring\n/ : /^net: arp reply/);
          // The reply came from the namespace's side of the tap (its MAC, in the guest's hex).
          const shown = /arp reply from (\S+)/.exec(r.output)?.[1].split(":").map((h) =>
            parseInt(h, 16)
          );
          if (nsMac) assert.deepEqual(shown, nsMac.split(":").map((h) => parseInt(h, 16)));
        } finally {
          ip("netns", "del", ns);
        }
        assert.equal(linkExists(tap), false, "the tap went away with the VMM");
      },
    });
  }
}

Deno.test("vmmctl solo5: solo5-hvt style arguments are rewritten for the parser", () => {
  assert.deepEqual(
    preprocessSolo5Args([
      "--mem=64",
      "--block:storage=/tmp/a.img",
      "--block-sector-size:storage=4096",
      "--accel",
      "kvm",
      "--net:service=tap0",
      "app.hvt",
      "--not-ours",
      "x",
    ]),
    [
      "--mem=64",
      "--block",
      "storage=/tmp/a.img",
      "--block-sector-size",
      "storage=4096",
      "--accel",
      "kvm",
      "--net",
      "service=tap0",
      "--",
      "app.hvt",
      "--not-ours",
      "x",
    ],
  );
  assert.deepEqual(preprocessSolo5Args(["-v", "--", "-weird.hvt"]), ["-v", "--", "-weird.hvt"]);
});

Deno.test({
  name: "vmmctl solo5 / vmmctl up: output on stdout, the guest's exit status, device errors",
  ignore,
  async fn() {
    const hello = await vmmctl(["solo5", "--mem=8", guest("probe"), "hello", "--x", "exit=9"]);
    assert.equal(hello.code, 9, hello.stderr);
    assert.match(hello.stdout, /^hello: cmdline=\[hello --x exit=9\]\n/);
    const abort = await vmmctl([
      "solo5",
      "--accel",
      "openbsd-on-kvm",
      "--mem=8",
      guest("probe"),
      "ud2",
    ]);
    assert.equal(abort.code, 255);
    assert.match(abort.stderr, /guest aborted after a trap: cr2=0x0 ec=0x0 rip=0x\w+ cs=0x8/);
    const missing = await vmmctl(["solo5", guest("blk")]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /declares "storage" \(BLOCK_BASIC\) but nothing is attached.*--block:storage=PATH/,
    );
    const unknown = await vmmctl(["solo5", "--block:disk0=/nonexistent", guest("blk")]);
    assert.equal(unknown.code, 1);
    assert.match(
      unknown.stderr,
      /Disk "disk0" is not a BLOCK_BASIC device.*declares "storage" \(BLOCK_BASIC\)/,
    );
    const usage = await vmmctl(["solo5", "--block:bad-name=/x", guest("blk")]);
    assert.equal(usage.code, 1);
    // vmmctl up: the config's [[disk]] name binds the manifest device.
    const dir = await Deno.makeTempDir({ prefix: "vmmctl-solo5-up-" });
    try {
      const img = `${dir}/disk.img`;
      const data = new Uint8Array(8192);
      data.set(new TextEncoder().encode("VMMCTL-SOLO5-BLK"));
      await Deno.writeFile(img, data);
      await Deno.writeTextFile(
        `${dir}/vm.toml`,
        `[vm]\nname = "uk"\nmemory = "8M"\n[boot]\nkernel = "${guest("blk")}"\n` +
          `[[disk]]\npath = "${img}"\nname = "storage"\n[console]\nserial = "stdio"\n`,
      );
      const up = await vmmctl(["up", `${dir}/vm.toml`]);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, /blk: sector=512 capacity=8192 first=\[VMMCTL-SOLO5-BLK\]/);
      assert.match(up.stdout, /blk: errors ok/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
