/**
 * Runs a VMM as a child process and times it: spawn to its first stdout byte
 * (the guest's first serial byte, with the console on stdout), spawn to
 * exit, and its CPU time (getrusage(RUSAGE_CHILDREN) before and after: the
 * kernel's own accounting of the reaped child, no /usr/bin/time needed).
 * Optionally samples its memory while it runs.
 *
 * @module
 */

import { findLibcPath } from "../ffi/libc.ts";

/** What one child run measured. */
export interface ChildRun {
  /** ms from spawn to the first byte on stdout (undefined: none came). */
  firstByteMs?: number;
  /** ms from spawn to exit. */
  exitMs: number;
  /** User + system CPU ms of the child (and its reaped descendants). */
  cpuMs: number;
  status: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Options of {@link timeChild}. */
export interface ChildOptions {
  /** SIGKILL after this long. */
  timeoutMs: number;
  /** Called once with the pid when the first stdout byte arrives; may stop the child. */
  onFirstByte?: (pid: number, kill: (signal?: Deno.Signal) => void) => void | Promise<void>;
}

const RUSAGE_CHILDREN = -1;
const RUSAGE_THREAD = 1;
let rusageLib: { symbols: { getrusage: (who: number, buf: Uint8Array) => number } } | undefined;

function rusage(who: number): { userMs: number; sysMs: number } {
  rusageLib ??= Deno.dlopen(findLibcPath(), {
    getrusage: { parameters: ["i32", "buffer"], result: "i32" },
  });
  // struct rusage starts with ru_utime and ru_stime, two struct timevals (LP64: 16 bytes each).
  const buf = new Uint8Array(144);
  if (rusageLib.symbols.getrusage(who, buf) !== 0) throw new Error(`getrusage(${who}) failed`);
  return { userMs: timevalMs(buf, 0), sysMs: timevalMs(buf, 16) };
}

/** CPU ms (user + system) of all reaped children so far, from getrusage(RUSAGE_CHILDREN). */
export function childrenCpuMs(): number {
  const r = rusage(RUSAGE_CHILDREN);
  return r.userMs + r.sysMs;
}

/** User and system CPU ms of the calling thread so far (getrusage(RUSAGE_THREAD), Linux). */
export function threadCpuMs(): { userMs: number; sysMs: number } {
  return rusage(RUSAGE_THREAD);
}

/** A struct timeval (two 64-bit fields) at `offset`, in ms. */
export function timevalMs(buf: Uint8Array, offset: number): number {
  const v = new DataView(buf.buffer, buf.byteOffset);
  return Number(v.getBigInt64(offset, true)) * 1e3 + Number(v.getBigInt64(offset + 8, true)) / 1e3;
}

/** Runs `program args` with stdin from /dev/null; children must run one at a time. */
export async function timeChild(
  program: string,
  args: string[],
  o: ChildOptions,
): Promise<ChildRun> {
  const cpuBefore = childrenCpuMs();
  const t0 = performance.now();
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const kill = (signal: Deno.Signal = "SIGKILL") => {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, o.timeoutMs);
  let firstByteMs: number | undefined;
  let firstByteWork: Promise<void> | undefined;
  const chunks: Uint8Array[] = [];
  const readOut = (async () => {
    for await (const chunk of child.stdout) {
      if (firstByteMs === undefined && chunk.length) {
        firstByteMs = performance.now() - t0;
        if (o.onFirstByte) firstByteWork = Promise.resolve(o.onFirstByte(child.pid, kill));
      }
      chunks.push(chunk);
    }
  })();
  const readErr = new Response(child.stderr).text();
  const status = await child.status;
  const exitMs = performance.now() - t0;
  clearTimeout(timer);
  await readOut;
  await firstByteWork;
  const stderr = await readErr;
  return {
    firstByteMs,
    exitMs,
    cpuMs: childrenCpuMs() - cpuBefore,
    status: status.code,
    stdout: new TextDecoder().decode(concat(chunks)),
    stderr,
    timedOut,
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The command that runs `vmmctl` from this checkout (as `deno task vmmctl` does). */
export function vmmctlCommand(): { program: string; args: string[] } {
  const main = new URL("../main.ts", import.meta.url).pathname;
  return { program: Deno.execPath(), args: ["run", "--allow-all", "--quiet", main] };
}

/** A TOML config for vmmctl: kernel, cmdline, memory, exit port 0xF4, console on stdio. */
export function vmmctlToml(o: { kernel: string; cmdline?: string; memoryMiB: number }): string {
  return [
    "[vm]",
    'name = "bench"',
    `memory = "${o.memoryMiB}M"`,
    'accel = "kvm"',
    "",
    "[boot]",
    `kernel = ${JSON.stringify(o.kernel)}`,
    `cmdline = ${JSON.stringify(o.cmdline ?? "")}`,
    "",
    "[console]",
    'serial = "stdio"',
    "",
    "[debug]",
    "exit_port = 0xf4",
    "",
  ].join("\n");
}
