/**
 * `vmmctl solo5 [--mem=MiB] [--block:NAME=PATH] [--net:NAME=TAP]
 * [--block-sector-size:NAME=N] [--net-mac:NAME=MAC] [--accel ACCEL]
 * APP.hvt [ARGS...]`: run a Solo5 hvt unikernel in the foreground, in the
 * style of Solo5's own `solo5-hvt` tender. The guest's output goes to
 * stdout; vmmctl exits with the guest's exit status.
 *
 * @module
 */

import { basename, resolve } from "node:path";
import type { AccelChoice } from "../../accel/select.ts";
import type { InterfaceConfig, VmConfig } from "../../config/schema.ts";
import { readImageFile } from "../../loaders/image_file.ts";
import { VmHost } from "../../machine/host.ts";
import { describeOutcome, exitStatus } from "../../machine/machine.ts";
import { checkBindings, type Solo5DiskConfig } from "../../solo5/devices.ts";
import { inspectUnikernel, SOLO5_DEFAULT_MEMORY_BYTES } from "../../solo5/loader.ts";
import { type Command, type FlagValues, UsageError } from "../command.ts";
import { machineWorker } from "../../solo5/select.ts";

const ACCELS = ["auto", "kvm", "openbsd", "openbsd-on-kvm"];
/** solo5-hvt's per-device options, `--PREFIX:NAME=VALUE`. */
const DEVICE_OPTIONS = ["block", "block-sector-size", "net", "net-mac"];
/** Options that take their value as the next argument. */
const VALUE_OPTIONS = ["--accel", "--mem"];
/** Device names, as solo5-hvt accepts them. */
const DEVICE_NAME = /^[A-Za-z0-9]{1,67}$/;

/**
 * Rewrites solo5-hvt style arguments for the shared parser:
 * `--block:NAME=PATH` becomes `--block NAME=PATH` (likewise `--net:`,
 * `--net-mac:`, `--block-sector-size:`), and a `--` goes before APP so its
 * ARGS are never taken for vmmctl options.
 */
export function preprocessSolo5Args(argv: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-")) break;
    const m = /^--([a-z-]+):(.*)$/.exec(a);
    if (m && DEVICE_OPTIONS.includes(m[1])) {
      out.push(`--${m[1]}`, m[2]);
      continue;
    }
    out.push(a);
    if (VALUE_OPTIONS.includes(a) && i + 1 < argv.length) out.push(argv[++i]);
  }
  return [...out, "--", ...argv.slice(i)];
}

/** Splits "NAME=VALUE" from a device option; throws UsageError. */
function nameValue(option: string, text: string): [string, string] {
  const eq = text.indexOf("=");
  const name = eq < 0 ? "" : text.slice(0, eq);
  const value = eq < 0 ? "" : text.slice(eq + 1);
  if (!DEVICE_NAME.test(name) || value === "") {
    throw new UsageError(
      `--${option}:${text} is not --${option}:NAME=VALUE with a NAME of letters and digits`,
    );
  }
  return [name, value];
}

function list(flags: FlagValues, name: string): string[] {
  const v = flags[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [String(v)];
}

/** The VmConfig `vmmctl solo5` runs, from its parsed flags. */
export function solo5Config(positionals: string[], flags: FlagValues): VmConfig {
  const [app, ...args] = positionals;
  if (app === undefined) throw new UsageError("missing APP.hvt");
  let memoryBytes = SOLO5_DEFAULT_MEMORY_BYTES;
  if (flags.mem !== undefined) {
    const mib = Number(flags.mem);
    if (!Number.isInteger(mib) || mib < 2 || mib > 3072) {
      throw new UsageError(`--mem="${flags.mem}" is not a whole number of MiB from 2 to 3072`);
    }
    memoryBytes = mib * 1024 * 1024;
  }
  const accel = (flags.accel as string | undefined) ?? "auto";
  if (!ACCELS.includes(accel)) {
    throw new UsageError(`unknown accelerator "${accel}"; use one of ${ACCELS.join(", ")}`);
  }
  const disks: Solo5DiskConfig[] = [];
  for (const b of list(flags, "block")) {
    const [name, path] = nameValue("block", b);
    if (disks.some((d) => d.name === name)) throw new UsageError(`--block:${name} given twice`);
    disks.push({ path: resolve(path), format: "auto", readonly: false, name });
  }
  for (const s of list(flags, "block-sector-size")) {
    const [name, value] = nameValue("block-sector-size", s);
    const disk = disks.find((d) => d.name === name);
    if (!disk) throw new UsageError(`--block-sector-size:${name} has no --block:${name}=PATH`);
    const n = Number(value);
    if (!Number.isInteger(n) || n < 512 || n > 32768 || (n & (n - 1)) !== 0) {
      throw new UsageError(`block sector size "${value}" is not a power of two from 512 to 32768`);
    }
    disk.sectorBytes = n;
  }
  const interfaces: InterfaceConfig[] = [];
  for (const n of list(flags, "net")) {
    const [name, tap] = nameValue("net", n);
    if (interfaces.some((i) => i.name === name)) throw new UsageError(`--net:${name} given twice`);
    if (tap.length > 15) throw new UsageError(`tap name "${tap}" is longer than 15 bytes`);
    interfaces.push({ tap, name });
  }
  for (const n of list(flags, "net-mac")) {
    const [name, mac] = nameValue("net-mac", n);
    const itf = interfaces.find((i) => i.name === name);
    if (!itf) throw new UsageError(`--net-mac:${name} has no --net:${name}=TAP`);
    if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac) || (parseInt(mac, 16) & 1) === 1) {
      throw new UsageError(`"${mac}" is not a unicast MAC address (xx:xx:xx:xx:xx:xx)`);
    }
    itf.lladdr = mac.toLowerCase();
  }
  const name = ("solo5-" + basename(app).replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_.-]/g, "_"))
    .slice(0, 64);
  return {
    vm: { name, memoryBytes, vcpus: 1, accel: accel as AccelChoice, irqchip: "user" },
    boot: { kernel: resolve(app), cmdline: args.join(" ") },
    disks,
    interfaces,
    console: { serial: "stdio" },
    debug: {},
  };
}

/** `vmmctl solo5`. */
export const solo5Command: Command = {
  name: "solo5",
  summary: "run a Solo5 hvt unikernel in the foreground (like solo5-hvt)",
  args: "APP.hvt [ARGS...]",
  description: [
    "Device options name the unikernel's manifest devices, solo5-hvt style:",
    "  --block:NAME=PATH             attach disk image PATH (raw or qcow2) as block device NAME",
    "  --block-sector-size:NAME=N    sector size of NAME (512 by default; a power of two)",
    '  --net:NAME=TAP                attach tap TAP ("auto" creates one) as network device NAME',
    "  --net-mac:NAME=MAC            MAC address of NAME",
    "ARGS become the unikernel's command line. Its output goes to stdout.",
    "Exit status: the unikernel's (255 after an abort), 3 when the VMM failed or the",
    "unikernel broke the hvt ABI, 4 on a triple fault, 1 when it could not start.",
  ].join("\n"),
  flags: {
    mem: { type: "string", value: "MiB", description: "guest memory in MiB (default 512)" },
    accel: {
      type: "string",
      value: "ACCEL",
      description: `accelerator: ${ACCELS.join(" | ")}`,
    },
    block: { type: "string", multiple: true, value: "NAME=PATH", description: "see above" },
    "block-sector-size": {
      type: "string",
      multiple: true,
      value: "NAME=N",
      description: "see above",
    },
    net: { type: "string", multiple: true, value: "NAME=TAP", description: "see above" },
    "net-mac": { type: "string", multiple: true, value: "NAME=MAC", description: "see above" },
    verbose: { type: "boolean", short: "v", description: "say what was loaded and how it ended" },
  },
  preprocess: preprocessSolo5Args,
  async run(positionals, flags) {
    const config = solo5Config(positionals, flags);
    const data = readImageFile(config.boot.kernel!, config.vm.memoryBytes, "kernel");
    const image = inspectUnikernel(data, positionals[0]);
    checkBindings(image.manifest, config.disks, config.interfaces);
    const verbose = flags.verbose === true;
    const host = new VmHost({
      config,
      serial: { serial: "stdio" },
      worker: machineWorker(config),
      onStarted: (boot) => {
        if (verbose) console.error(`vmmctl: ${config.vm.name}: ${boot}`);
      },
    });
    const onSignal = () => host.stop();
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    try {
      const outcome = await host.start();
      const status = exitStatus(outcome);
      if (verbose || outcome.kind !== "exit-port") {
        const what = outcome.kind === "exit-port"
          ? `unikernel exited with status ${outcome.status}`
          : describeOutcome(outcome);
        console.error(`vmmctl: ${config.vm.name}: ${what}`);
      }
      return status;
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
      Deno.removeSignalListener("SIGTERM", onSignal);
    }
  },
};
