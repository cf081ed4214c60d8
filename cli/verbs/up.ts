/**
 * `vmmctl up [FILE]`: boot a VM in the foreground with its serial console on
 * the terminal, and exit with the guest's exit status.
 *
 * @module
 */

import type { AccelChoice } from "../../accel/select.ts";
import { formatConfigError, loadConfigFile } from "../../config/parse.ts";
import type { VmConfig } from "../../config/schema.ts";
import { demoConfig } from "../../config/demo.ts";
import { VmHost } from "../../machine/host.ts";
import { describeOutcome, exitStatus, type Outcome } from "../../machine/machine.ts";
import type { SerialTarget } from "../../machine/serial_sink.ts";
import { EscapeReader } from "../console/escape.ts";
import { PtyConsole } from "../console/pty.ts";
import { type Command, EXIT_FAILURE, UsageError } from "../command.ts";
import { reportErrors } from "../errors.ts";
import { startManaged } from "../vm_process/spawn.ts";
import { resolveRunDir, RUNDIR_FLAG } from "../control/rundir.ts";
import { machineWorker } from "../../solo5/select.ts";
import {
  describeLockdown,
  type LockdownPlan,
  narrowHostPermissions,
  planLockdown,
} from "../../machine/lockdown.ts";

const ACCELS = ["auto", "kvm", "openbsd", "openbsd-on-kvm"];

export const upCommand: Command = {
  name: "up",
  summary: "boot a VM in the foreground with its serial console on this terminal",
  args: "[FILE]",
  description: [
    "Without FILE, boots the built-in demo guest.",
    "The console escape ~. (at the start of a line) stops the VM.",
    "Exit status: the guest's (power-off 0, debug exit port (v << 1) | 1),",
    "3 when the VMM failed, 4 on a triple fault, 1 for an invalid config.",
  ].join("\n"),
  flags: {
    accel: {
      type: "string",
      value: "ACCEL",
      description: `accelerator: ${ACCELS.join(" | ")} (openbsd-on-kvm is a testing aid: ` +
        `the OpenBSD vmm(4) back-end over an emulation of vmm(4) on Linux KVM)`,
    },
    serial: {
      type: "string",
      value: "MODE",
      description: "override console.serial: stdio | pty | none | file:PATH",
    },
    verbose: { type: "boolean", short: "v", description: "say what was loaded and how it ended" },
    detach: {
      type: "boolean",
      short: "d",
      description: "run the VM in the background like `start` (console on a pty)",
    },
    rundir: RUNDIR_FLAG,
    "no-lockdown": {
      type: "boolean",
      description: "keep the VM process privileged (no user switch, no seccomp): for debugging",
    },
  },
  async run(positionals, flags) {
    if (positionals.length > 1) throw new UsageError("up takes at most one FILE");
    const accel = flags.accel as string | undefined;
    if (accel !== undefined && !ACCELS.includes(accel)) {
      throw new UsageError(`unknown accelerator "${accel}"; use one of ${ACCELS.join(", ")}`);
    }
    let config: VmConfig;
    let kernelImage: Uint8Array | undefined;
    if (positionals.length === 0) {
      config = demoConfig();
      // Loaded only when needed: decoding the embedded image costs start-up time.
      kernelImage = (await import("../../guests/images.ts")).DEMO_GUEST;
    } else {
      const loaded = loadConfigFile(positionals[0]);
      if (!loaded.config) {
        for (const e of loaded.errors) console.error(`${positionals[0]}: ${formatConfigError(e)}`);
        return EXIT_FAILURE;
      }
      config = loaded.config;
    }
    if (flags.detach) {
      const rundir = resolveRunDir(flags.rundir as string | undefined);
      const demo = kernelImage !== undefined;
      const vm: VmConfig = accel === undefined
        ? config
        : { ...config, vm: { ...config.vm, accel: accel as AccelChoice } };
      return await reportErrors(async () => (await startManaged(vm, { rundir, demo }), 0));
    }
    const serial = serialTarget(config, flags.serial as string | undefined);
    const lockdown = planLockdown({
      user: config.vm.user,
      enabled: flags["no-lockdown"] !== true && config.debug.lockdown !== false,
    });
    const outcome = await boot(config, serial, {
      accel: accel as AccelChoice | undefined,
      kernelImage,
      verbose: flags.verbose === true,
      lockdown,
    });
    const status = exitStatus(outcome);
    if (flags.verbose || status === 3 || status === 4 || outcome.kind === "halted") {
      console.error(`vmmctl: ${config.vm.name}: ${describeOutcome(outcome)}`);
    }
    return status;
  },
};

function serialTarget(config: VmConfig, override: string | undefined): SerialTarget {
  if (override === undefined) return { serial: config.console.serial, path: config.console.path };
  if (override === "stdio" || override === "none" || override === "pty") {
    return { serial: override };
  }
  if (override.startsWith("file:") && override.length > 5) {
    return { serial: "file", path: override.slice(5) };
  }
  throw new UsageError(`unknown serial mode "${override}"; use stdio, pty, none or file:PATH`);
}

/**
 * Boots `config` and attaches the terminal when the console is stdio; with
 * "pty" the console is a new pseudo-terminal (its path is printed) that
 * `cu -l` or `screen` can open while the VM runs.
 */
async function boot(
  config: VmConfig,
  serial: SerialTarget,
  opts: {
    accel?: AccelChoice;
    kernelImage?: Uint8Array;
    verbose: boolean;
    lockdown?: LockdownPlan;
  },
): Promise<Outcome> {
  const interactive = serial.serial === "stdio" && Deno.stdin.isTerminal();
  const pty = serial.serial === "pty" ? PtyConsole.open() : undefined;
  if (pty) console.error(`vmmctl: ${config.vm.name}: console on ${pty.path}`);
  const host = new VmHost({
    config,
    serial: pty ? { serial: "none" } : { ...serial, crlf: interactive },
    onSerialOutput: pty ? (bytes) => pty.write(bytes) : undefined,
    accel: opts.accel,
    kernelImage: opts.kernelImage,
    worker: machineWorker(config, opts.kernelImage),
    lockdown: opts.lockdown,
    onStarted: (boot) => {
      if (opts.lockdown) narrowHostPermissions();
      if (opts.verbose) console.error(`vmmctl: ${config.vm.name}: ${boot}`);
      const d = host.display?.endpoints;
      if (d?.vnc) console.error(`vmmctl: ${config.vm.name}: VNC on ${d.vnc}`);
      if (d?.web) console.error(`vmmctl: ${config.vm.name}: web console on ${d.web}`);
      const report = host.lockdown;
      if (report && (opts.verbose || report.probes)) {
        console.error(`vmmctl: ${config.vm.name}: ${describeLockdown(report)}`);
      }
    },
  });
  const onTerm = () => host.stop();
  Deno.addSignalListener("SIGTERM", onTerm);
  if (!interactive) Deno.addSignalListener("SIGINT", onTerm);
  if (interactive) Deno.stdin.setRaw(true);
  const running = host.start();
  let stopInput = () => {};
  if (serial.serial === "stdio") stopInput = pumpInput(host, running);
  pty?.startPolling((bytes) => host.input(bytes));
  try {
    return await running;
  } finally {
    stopInput();
    pty?.close();
    if (interactive) Deno.stdin.setRaw(false);
    Deno.removeSignalListener("SIGTERM", onTerm);
    if (!interactive) Deno.removeSignalListener("SIGINT", onTerm);
  }
}

/** Forwards stdin to the guest's COM1 until the VM ends; `~.` stops the VM. */
function pumpInput(host: VmHost, running: Promise<Outcome>): () => void {
  const escape = new EscapeReader();
  let over = false;
  running.finally(() => (over = true));
  const reader = Deno.stdin.readable.getReader();
  (async () => {
    try {
      while (!over) {
        const { value, done } = await reader.read();
        if (done || !value) return;
        const { forward, detach } = escape.feed(value);
        let rest = forward;
        while (rest.length && !over) {
          const n = host.input(rest);
          rest = rest.subarray(n);
          if (rest.length) await new Promise((r) => setTimeout(r, 5));
        }
        if (detach) {
          host.stop();
          return;
        }
      }
    } catch {
      // stdin closed or not readable: the VM runs on without input.
    }
  })();
  return () => {
    over = true;
    reader.cancel().catch(() => {});
  };
}
