/**
 * Starting a managed VM: the client side of `start` / `up -d`, which spawns
 * the VM process and waits until the VM runs (or reports why it could not
 * start).
 *
 * @module
 */

import { resolve } from "node:path";
import type { VmConfig } from "../../config/schema.ts";
import { ManagedError } from "../errors.ts";
import {
  checkLiveness,
  defaultLogLevel,
  ensureRunDir,
  listStates,
  type LogLevel,
  removeVmFiles,
  type VmState,
} from "../control/rundir.ts";

/** The hidden subcommand that runs one managed VM (started by `start`, never by hand). */
export const VM_PROCESS_COMMAND = "__vm-process";

/** How long `start` waits for the VM process to report that the VM runs. */
export const START_TIMEOUT_MS = 60_000;

/** What the client hands the VM process (as one JSON argument). */
export interface VmProcessPayload {
  config: VmConfig;
  /** Absolute run directory. */
  rundir: string;
  logLevel?: LogLevel;
  /** Boot the built-in demo guest (no kernel file). */
  demo?: boolean;
}

/** The VM process's first line on stdout: started, or why not. */
export type ReadyLine = { ok: true; id: number; tty: string; pid: number } | {
  ok: false;
  error: string;
};

/** How to run the VM process: this executable, under `deno run` when we are a script. */
export function vmProcessCommand(): { command: string; args: string[] } {
  const exec = Deno.execPath();
  if (isDenoRuntime(exec)) {
    const main = new URL("../../main.ts", import.meta.url);
    const config = new URL("../../deno.json", import.meta.url);
    return {
      command: exec,
      args: ["run", "--allow-all", "--quiet", "--config", config.pathname, main.pathname],
    };
  }
  return { command: exec, args: [] }; // a `deno compile`d vmmctl
}

let denoRuntime: boolean | undefined;

/**
 * Whether `exec` is the deno runtime (we run as a script) rather than a
 * compiled vmmctl, whatever the binary is called: asked with `--version`,
 * which deno answers "deno X.Y.Z" and vmmctl "vmmctl X.Y.Z".
 */
function isDenoRuntime(exec: string): boolean {
  if (denoRuntime === undefined) {
    try {
      const out = new Deno.Command(exec, { args: ["--version"], stdin: "null", stderr: "null" })
        .outputSync();
      denoRuntime = /^deno \d/.test(new TextDecoder().decode(out.stdout));
    } catch {
      denoRuntime = !/vmmctl[^/]*$/.test(exec);
    }
  }
  return denoRuntime;
}

/** Options for {@link startManaged}. */
export interface StartOptions {
  rundir: string;
  demo?: boolean;
  /** Print nothing on success. */
  quiet?: boolean;
}

/**
 * Starts `config` as a managed VM in a background process; resolves once it
 * runs, with its state (id, tty, pid). Throws {@link ManagedError} with the
 * VM process's reason when it could not start.
 */
export async function startManaged(config: VmConfig, opts: StartOptions): Promise<VmState> {
  const rundir = resolve(opts.rundir);
  ensureRunDir(rundir);
  await refuseDuplicate(rundir, config.vm.name);
  const payload: VmProcessPayload = {
    config,
    rundir,
    demo: opts.demo,
    logLevel: defaultLogLevel(rundir),
  };
  const { command, args } = vmProcessCommand();
  // The config goes over a pipe, never in argv (which every user sees in ps).
  const child = new Deno.Command(command, {
    args: [...args, VM_PROCESS_COMMAND],
    cwd: "/",
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const sent = (async () => {
    const w = child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(JSON.stringify(payload)));
      await w.close();
    } catch {
      // the VM process ended before reading it: its stderr says why
    }
  })();
  const stderrText = collectText(child.stderr);
  const reader = child.stdout.getReader();
  let text = "";
  let ready: ReadyLine | undefined;
  const timer = setTimeout(() => {
    ready = {
      ok: false,
      error: `VM "${config.vm.name}" did not start within ${START_TIMEOUT_MS / 1000} s`,
    };
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, START_TIMEOUT_MS);
  try {
    while (!ready) {
      const { value, done } = await reader.read();
      if (done || ready) break;
      text += new TextDecoder().decode(value);
      const nl = text.indexOf("\n");
      if (nl >= 0) ready = JSON.parse(text.slice(0, nl)) as ReadyLine;
    }
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
    await sent;
  }
  // (The timer may have set `ready` too: TypeScript cannot see that.)
  const got = ready as ReadyLine | undefined;
  if (!got || !got.ok) {
    const status = await child.status;
    const err = (await stderrText).trim();
    const why = got && !got.ok ? got.error : err || `exit status ${status.code}`;
    throw new ManagedError(why);
  }
  child.unref();
  const state = listStates(rundir).find((s) => s.id === got.id);
  if (!state) throw new ManagedError(`VM "${config.vm.name}" started but left no state file`);
  if (!opts.quiet) {
    console.error(`vmmctl: started vm ${got.id} successfully, tty ${got.tty}`);
  }
  return state;
}

async function collectText(stream: ReadableStream<Uint8Array>): Promise<string> {
  let out = "";
  const dec = new TextDecoder();
  try {
    for await (const chunk of stream) out += dec.decode(chunk, { stream: true });
  } catch {
    // the pipe went away with the client
  }
  return out;
}

/**
 * Throws when a live VM of that name exists (with `below`: one with a lower
 * id, so of two starts at once the first claimed id wins); removes dead
 * records of the name.
 */
export async function refuseDuplicate(rundir: string, name: string, below?: number): Promise<void> {
  for (const s of listStates(rundir)) {
    if (s.name !== name || (below !== undefined && s.id >= below)) continue;
    if (await checkLiveness(rundir, s) === "alive") {
      throw new ManagedError(`VM "${name}" is already running (id ${s.id}, pid ${s.pid})`);
    }
    removeVmFiles(rundir, s.id); // a killed or died VM of the same name: superseded
  }
}
