/**
 * The VM process of a managed (detached) VM, like vmd's per-VM process: in
 * its own session, with the console on a pty, a control socket, a state file
 * and a bounded log in the run directory. Started by `spawn.ts`, never by hand.
 *
 * @module
 */

import type { VmConfig } from "../../config/schema.ts";
import { openProcessLibc } from "../../ffi/libc.ts";
import { GuestRequest, VmHost } from "../../machine/host.ts";
import { describeOutcome, exitStatus, type Outcome } from "../../machine/machine.ts";
import { PtyConsole } from "../console/pty.ts";
import { ownerText } from "../control/client.ts";
import { machineWorker } from "../../solo5/select.ts";
import {
  type ControlReply,
  type ControlRequest,
  readLine,
  sendLine,
  writeAll,
} from "../control/protocol.ts";
import {
  claimId,
  ensureRunDir,
  errorText,
  logPath,
  removeVmFiles,
  socketPath,
  type VmState,
  writeState,
} from "../control/rundir.ts";
import { idForName, nameForId } from "../../config/users.ts";
import { VmLog } from "./log.ts";
import { validateControlRequest } from "../control/validate.ts";
import {
  describeLockdown,
  type LockdownPlan,
  narrowHostPermissions,
  planLockdown,
} from "../../machine/lockdown.ts";
import {
  type ReadyLine,
  refuseDuplicate,
  VM_PROCESS_COMMAND,
  type VmProcessPayload,
} from "./spawn.ts";

/**
 * Runs the VM process: `vmmctl __vm-process` with its payload (config, run
 * directory) as JSON on stdin, never in argv. Resolves with its exit status.
 */
export async function runVmProcess(args: string[]): Promise<number> {
  let payload: VmProcessPayload;
  try {
    if (args.length > 0 || Deno.stdin.isTerminal()) throw new Error("started by hand");
    payload = JSON.parse(await new Response(Deno.stdin.readable).text()) as VmProcessPayload;
  } catch {
    console.error(`vmmctl: ${VM_PROCESS_COMMAND} is started by \`vmmctl start\`, not by hand`);
    return 2;
  }
  const vm = new ManagedVm(payload);
  return await vm.run();
}

const CONSOLE_QUEUE_MAX_BYTES = 1024 * 1024;

/** One managed VM, inside its process. */
class ManagedVm {
  readonly #payload: VmProcessPayload;
  readonly #dir: string;
  readonly #config: VmConfig;
  #state!: VmState;
  #log?: VmLog;
  #pty?: PtyConsole;
  #listener?: Deno.Listener;
  #host?: VmHost;
  #running?: Promise<Outcome>;
  #resetPending = false;
  /** A stop was asked for: a reset (by the guest or a pending `reset`) then ends the VM instead. */
  #stopping = false;
  #stopTimer?: ReturnType<typeof setTimeout>;
  #console?: Deno.Conn;
  #consoleQueue: Promise<void> = Promise.resolve();
  #consoleQueued = 0;
  #inputQueue: Promise<void> = Promise.resolve();
  readonly #waiters: Deno.Conn[] = [];
  #lockdown?: LockdownPlan | null;

  constructor(payload: VmProcessPayload) {
    this.#payload = payload;
    this.#dir = payload.rundir;
    this.#config = payload.config;
  }

  #ready(line: ReadyLine): void {
    const bytes = new TextEncoder().encode(JSON.stringify(line) + "\n");
    try {
      let off = 0;
      while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
    } catch {
      // the client is gone; the VM runs on regardless
    }
  }

  #verbose(text: string): void {
    if (this.#state?.logLevel === "verbose") this.#log?.message(text);
  }

  #setState(state: VmState["state"]): void {
    this.#state.state = state;
    writeState(this.#dir, this.#state);
  }

  async run(): Promise<number> {
    const libc = openProcessLibc();
    try {
      libc.setsid();
    } catch {
      // already a session leader (spawned detached): nothing to do
    }
    const name = this.#config.vm.name;
    try {
      ensureRunDir(this.#dir);
      await refuseDuplicate(this.#dir, name);
      const uid = Deno.uid() ?? 0;
      this.#state = claimId(this.#dir, {
        name,
        pid: Deno.pid,
        configPath: this.#config.source,
        vcpus: this.#config.vm.vcpus,
        memoryBytes: this.#config.vm.memoryBytes,
        tty: "",
        owner: this.#config.vm.owner ?? { user: nameForId("/etc/passwd", uid) },
        uid,
        startedAt: new Date().toISOString(),
        state: "starting",
        logLevel: this.#payload.logLevel ?? "brief",
      });
    } catch (e) {
      this.#ready({ ok: false, error: errorText(e) });
      return 1;
    }
    try {
      // Two starts of one name at once: the lower id wins.
      await refuseDuplicate(this.#dir, name, this.#state.id);
      await this.#setUp();
    } catch (e) {
      this.#log?.message(`VM "${name}" failed to start: ${errorText(e)}`);
      this.#ready({ ok: false, error: errorText(e) });
      this.#tearDown();
      removeVmFiles(this.#dir, this.#state.id);
      return 1;
    }
    return await this.#serve();
  }

  async #setUp(): Promise<void> {
    const id = this.#state.id;
    this.#log = new VmLog(logPath(this.#dir, this.#config.vm.name));
    const pty = PtyConsole.open();
    this.#pty = pty;
    this.#state.tty = pty.path;
    const sock = socketPath(this.#dir, id);
    try {
      Deno.removeSync(sock);
    } catch {
      // no stale socket
    }
    this.#listener = Deno.listen({ transport: "unix", path: sock });
    this.#grantAccess([sock, this.#log.path, pty.path]);
    writeState(this.#dir, this.#state);
    this.#log.message(
      `starting VM "${this.#config.vm.name}" (id ${id}, pid ${Deno.pid}, tty ${pty.path})`,
    );
    const started = await this.#boot();
    if (!started.ok) throw new Error(started.error);
    this.#setState("running");
  }

  /** Socket 0600 (0660 with an owner group), chowned to the config's owner. */
  #grantAccess(paths: string[]): void {
    const owner = this.#config.vm.owner;
    for (const p of paths) Deno.chmodSync(p, owner?.group ? 0o660 : 0o600);
    if (!owner) return;
    const uid = idForName("/etc/passwd", owner.user);
    if (uid === undefined) throw new Error(`owner "${owner.user}": no such user`);
    let gid: number | null = null;
    if (owner.group !== undefined) {
      gid = idForName("/etc/group", owner.group) ?? null;
      if (gid === null) throw new Error(`owner group "${owner.group}": no such group`);
    }
    if (uid === Deno.uid() && gid === null) return;
    for (const p of paths) {
      try {
        Deno.chownSync(p, uid, gid);
      } catch (e) {
        throw new Error(
          `cannot give VM "${this.#config.vm.name}" to owner "${ownerText(this.#state)}"` +
            ` (only root can): ${errorText(e)}`,
        );
      }
    }
  }

  /** Creates and starts a VmHost; resolves once the guest runs or the start failed. */
  async #boot(): Promise<{ ok: true } | { ok: false; error: string }> {
    // Loaded only when needed: decoding the embedded image costs start-up time.
    const kernelImage = this.#payload.demo
      ? (await import("../../guests/images.ts")).DEMO_GUEST
      : undefined;
    // Decided once: seccomp and no_new_privs, but the user stays (a reset rebuilds the machine
    // in this process, which re-opens /dev/kvm, images and taps; the run directory is root's).
    if (this.#lockdown === undefined) {
      this.#lockdown = planLockdown({
        enabled: this.#config.debug.lockdown !== false,
        keepUser: "a detached VM rebuilds its machine on reset",
      }) ?? null;
      if (this.#lockdown && this.#config.vm.user !== undefined) {
        this.#log?.message(
          `[vm] user = "${this.#config.vm.user}" applies to \`vmmctl up\` only: a detached VM ` +
            "keeps its user (see docs/THREAT_MODEL.md)",
        );
      }
    }
    const lockdown = this.#lockdown ?? undefined;
    return new Promise((resolveStart) => {
      const host = new VmHost({
        config: this.#config,
        serial: { serial: "none" },
        kernelImage,
        worker: machineWorker(this.#config, kernelImage),
        lockdown,
        onStarted: (boot) => {
          if (lockdown) narrowHostPermissions(["run directory"]);
          // Said once: after a reset the process is already locked.
          const report = host.lockdown;
          if (report && !report.again) this.#log?.message(describeLockdown(report));
          this.#verbose(`booted: ${boot}`);
          const endpoints = host.display?.endpoints;
          if (endpoints) {
            this.#state.display = { ...endpoints };
            writeState(this.#dir, this.#state);
            this.#log?.message(`display: ${JSON.stringify(endpoints)}`);
          }
          resolveStart({ ok: true });
        },
        onSerialOutput: (bytes) => this.#output(bytes),
      });
      this.#host = host;
      this.#running = host.start();
      this.#running.then((o) => {
        if (o.kind === "failed") resolveStart({ ok: false, error: describeOutcome(o) });
        else resolveStart({ ok: true });
      });
    });
  }

  #output(bytes: Uint8Array): void {
    this.#log?.console(bytes);
    this.#pty?.write(bytes);
    const conn = this.#console;
    if (conn && this.#consoleQueued + bytes.length <= CONSOLE_QUEUE_MAX_BYTES) {
      this.#consoleQueued += bytes.length;
      this.#consoleQueue = this.#consoleQueue
        .then(() => writeAll(conn, bytes))
        .catch(() => {})
        .finally(() => (this.#consoleQueued -= bytes.length));
    }
  }

  /** Queues console input for the guest, retrying what the input ring cannot take yet. */
  #input(bytes: Uint8Array): void {
    this.#inputQueue = this.#inputQueue.then(async () => {
      let rest = bytes;
      while (rest.length && this.#host) {
        rest = rest.subarray(this.#host.input(rest));
        if (rest.length) await new Promise((r) => setTimeout(r, 5));
      }
    });
  }

  async #serve(): Promise<number> {
    const name = this.#config.vm.name;
    const id = this.#state.id;
    this.#ready({ ok: true, id, tty: this.#state.tty, pid: Deno.pid });
    try {
      openProcessLibc().redirectOutput(this.#log!.path);
    } catch (e) {
      this.#log?.message(`cannot send stderr to the log: ${errorText(e)}`);
    }
    this.#log!.message(`VM "${name}" (id ${id}) is running`);
    const onSignal = () => {
      this.#log?.message("terminated by a signal: stopping the VM");
      this.#host?.stop();
    };
    for (const sig of ["SIGTERM", "SIGHUP", "SIGINT"] as const) {
      Deno.addSignalListener(sig, onSignal);
    }
    this.#pty?.startPolling((bytes) => this.#input(bytes));
    const accepting = this.#accept();
    const outcome = await this.#lifetime();
    const status = exitStatus(outcome);
    const clean = outcome.kind === "poweroff" || outcome.kind === "stopped";
    // A stop asked for is not a crash: where the guest was goes to the verbose log only.
    const ended = outcome.kind === "stopped" ? { kind: "stopped" as const } : outcome;
    this.#log!.message(`VM "${name}" (id ${id}) ended: ${describeOutcome(ended)}`);
    if (ended !== outcome) this.#verbose(describeOutcome(outcome));
    if (clean) {
      removeVmFiles(this.#dir, id);
    } else {
      this.#state.state = "died";
      this.#state.exitStatus = status;
      this.#state.outcome = describeOutcome(outcome);
      writeState(this.#dir, this.#state);
      try {
        Deno.removeSync(socketPath(this.#dir, id));
      } catch {
        // already gone
      }
    }
    const reply: ControlReply = { ok: true, exitStatus: status, outcome: describeOutcome(ended) };
    await Promise.all(this.#waiters.map((c) => sendLine(c, reply).catch(() => {})));
    for (const c of this.#waiters) closeQuietly(c);
    await this.#consoleQueue;
    this.#tearDown();
    await accepting.catch(() => {});
    return status;
  }

  /** Runs the VM until it ends for good: a reset (guest or `vmmctl reset`) boots it again. */
  async #lifetime(): Promise<Outcome> {
    for (;;) {
      const outcome = await this.#running!;
      const reset = !this.#stopping &&
        (outcome.kind === "reset" || (outcome.kind === "stopped" && this.#resetPending));
      if (!reset) return outcome;
      this.#resetPending = false;
      this.#log?.message(`VM "${this.#config.vm.name}" resets: booting it again`);
      const started = await this.#boot();
      if (!started.ok) return await this.#running!;
      // A stop that came while the new machine was being built reached no machine: apply it now.
      if (this.#stopping) this.#host?.stop();
      else this.#setState("running");
    }
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener!) this.#handle(conn).catch(() => closeQuietly(conn));
    } catch {
      // the listener was closed at the end
    }
  }

  async #handle(conn: Deno.Conn): Promise<void> {
    let line: Awaited<ReturnType<typeof readLine>>;
    try {
      line = await readLine(conn);
    } catch (e) {
      // Not JSON, or too long: say so rather than drop the connection unanswered.
      const reply: ControlReply = { ok: false, error: `malformed request: ${errorText(e)}` };
      await sendLine(conn, reply).catch(() => {});
      return closeQuietly(conn);
    }
    if (!line) return closeQuietly(conn);
    const checked = validateControlRequest(line.value);
    if (!checked.ok) {
      this.#log?.message(`control request refused: ${checked.error}`);
      await sendLine(conn, { ok: false, error: checked.error } satisfies ControlReply)
        .catch(() => {});
      return closeQuietly(conn);
    }
    const req = checked.request;
    this.#verbose(`control request: ${JSON.stringify(req)}`);
    const reply = await this.#dispatch(req, conn, line.rest);
    if (reply === "keep") return;
    await sendLine(conn, reply).catch(() => {});
    closeQuietly(conn);
  }

  async #dispatch(
    req: ControlRequest,
    conn: Deno.Conn,
    rest: Uint8Array,
  ): Promise<ControlReply | "keep"> {
    const name = this.#config.vm.name;
    const id = this.#state.id;
    const host = this.#host!;
    switch (req.op) {
      case "info":
        return { ok: true, message: JSON.stringify(this.#state) };
      case "pause":
        if (this.#state.state === "paused") {
          return { ok: true, message: `vm ${id} is already paused` };
        }
        await host.pause();
        this.#setState("paused");
        this.#log?.message(`VM "${name}" paused`);
        return { ok: true, message: `paused vm ${id} successfully` };
      case "unpause":
        if (this.#state.state !== "paused") {
          return { ok: false, error: `vm ${id} is not paused` };
        }
        host.resume();
        this.#setState("running");
        this.#log?.message(`VM "${name}" unpaused`);
        return { ok: true, message: `unpaused vm ${id} successfully` };
      case "reset":
        this.#resetPending = true;
        host.stop();
        return { ok: true, message: `rebooting vm ${id}` };
      case "stop":
        return this.#stop(req.force, req.timeoutMs, req.keys);
      case "wait":
        this.#waiters.push(conn);
        return "keep";
      case "console":
        return await this.#attach(conn, rest);
      case "screendump":
        return await this.#screendump(req.format, conn);
      case "log-level":
        this.#state.logLevel = req.level === "verbose" ? "verbose" : "brief";
        writeState(this.#dir, this.#state);
        this.#log?.message(`log level ${this.#state.logLevel}`);
        return { ok: true, message: `VM ${id}: log level ${this.#state.logLevel}` };
      default:
        return {
          ok: false,
          error: `unknown request ${JSON.stringify((req as { op: unknown }).op)}`,
        };
    }
  }

  /** Sends the screen after the reply line, then closes the connection. */
  async #screendump(format: "png" | "text", conn: Deno.Conn): Promise<ControlReply | "keep"> {
    const display = this.#host?.display;
    const name = this.#config.vm.name;
    if (!display) {
      return { ok: false, error: `vm "${name}" has no display ([display] type = "vga")` };
    }
    let bytes: Uint8Array;
    if (format === "text") {
      const text = display.screendumpText();
      if (text === undefined) {
        return { ok: false, error: `vm "${name}" shows graphics, not text: dump it as PNG` };
      }
      bytes = new TextEncoder().encode(text);
    } else {
      bytes = display.screendumpPng();
    }
    await sendLine(conn, { ok: true, length: bytes.length }).catch(() => {});
    await writeAll(conn, bytes).catch(() => {});
    closeQuietly(conn);
    return "keep";
  }

  #stop(force: boolean, timeoutMs: number, keys: string | undefined): ControlReply {
    const id = this.#state.id;
    const name = this.#config.vm.name;
    const host = this.#host!;
    // From now on a reset ends the VM: a stop right after `reset` must not be lost in the reboot.
    this.#stopping = true;
    this.#resetPending = false;
    if (force) {
      this.#log?.message(`vm "${name}" forced off`);
      host.stop();
      return { ok: true, message: `forced to terminate vm ${id}` };
    }
    if (this.#state.state === "paused") host.resume(); // a paused guest cannot power off
    this.#setState("stopping");
    // The request: vmmci when the guest runs a driver for it (OpenBSD does,
    // Linux does not), and the keys typed on the console when given. With
    // neither, the guest could never hear it: power off at once, as vmd does.
    const asked: string[] = [];
    if (host.requestGuest(GuestRequest.SHUTDOWN)) {
      asked.push("sent a vmmci shutdown request and pressed the ACPI power button");
    }
    if (keys) {
      this.#input(new TextEncoder().encode(keys));
      asked.push(`typed ${JSON.stringify(keys)} on its console`);
    }
    if (asked.length === 0) {
      this.#log?.message(
        `stop requested for vm "${name}": no vmmci driver in the guest: powered off`,
      );
      host.stop();
      return { ok: true, message: `requested to shutdown vm ${id}` };
    }
    clearTimeout(this.#stopTimer);
    this.#stopTimer = setTimeout(() => {
      this.#log?.message(`vm "${name}" did not power off within ${timeoutMs} ms: forcing it off`);
      this.#host?.stop(); // the machine running now, not the one of the request
    }, timeoutMs);
    this.#log?.message(
      `stop requested for vm "${name}": ${asked.join(" and ")}; forcing after ${timeoutMs} ms`,
    );
    return { ok: true, message: `requested to shutdown vm ${id}` };
  }

  async #attach(conn: Deno.Conn, rest: Uint8Array): Promise<ControlReply | "keep"> {
    const name = this.#config.vm.name;
    if (this.#console) {
      return {
        ok: false,
        error: `the console of VM "${name}" is already attached elsewhere; ` +
          "detach that session (~.) first",
      };
    }
    this.#console = conn;
    this.#verbose("console attached");
    await sendLine(conn, { ok: true, message: `attached to VM "${name}"` } satisfies ControlReply);
    if (rest.length) this.#input(rest);
    (async () => {
      const buf = new Uint8Array(4096);
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          this.#input(buf.slice(0, n));
        }
      } catch {
        // the client went away
      }
      if (this.#console === conn) this.#console = undefined;
      this.#verbose("console detached");
      closeQuietly(conn);
    })();
    return "keep";
  }

  #tearDown(): void {
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    if (this.#console) closeQuietly(this.#console);
    this.#pty?.close();
    this.#pty = undefined;
    this.#log?.close();
    this.#log = undefined;
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
