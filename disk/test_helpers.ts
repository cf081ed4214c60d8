/**
 * Helpers for the disk tests: QEMU's tools as the oracle (qemu-img, qemu-io),
 * temporary folders and a seeded random source.
 *
 * @module
 */

import type { DiskImage } from "./image.ts";

function hasTool(name: string): boolean {
  try {
    const out = new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return out.success;
  } catch {
    return false;
  }
}

/** Whether qemu-img and qemu-io (Debian qemu-utils) are installed. */
export const HAVE_QEMU_TOOLS: boolean = hasTool("qemu-img") && hasTool("qemu-io");
if (!HAVE_QEMU_TOOLS) {
  console.warn(
    "disk tests: qemu-img/qemu-io not found (install qemu-utils); skipping qcow2 oracle tests",
  );
}

/** Runs a command; returns stdout as text, throws with stderr when it fails. */
export function run(cmd: string, args: string[], okCodes: number[] = [0]): string {
  const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!okCodes.includes(out.code)) {
    const stderr = new TextDecoder().decode(out.stderr);
    throw new Error(`${cmd} ${args.join(" ")} exited with ${out.code}: ${stderr}${stdout}`);
  }
  return stdout;
}

/** `qemu-img check` result fields we assert on. */
export interface CheckResult {
  "check-errors": number;
  corruptions?: number;
  leaks?: number;
  "image-end-offset"?: number;
}

/** Runs `qemu-img check` (exit 0 clean, 2 corrupt, 3 leaks) and returns its JSON report. */
export function qemuCheck(path: string): CheckResult {
  const text = run("qemu-img", ["check", "--output=json", path], [0, 2, 3]);
  return JSON.parse(text) as CheckResult;
}

/** `qemu-img info` as JSON. */
export function qemuInfo(path: string): Record<string, unknown> {
  return JSON.parse(run("qemu-img", ["info", "--output=json", path])) as Record<string, unknown>;
}

/** What QEMU reads from an image: `qemu-img convert -O raw`, as bytes. */
export function qemuReadAll(path: string, extra: string[] = []): Uint8Array {
  const out = Deno.makeTempFileSync({ suffix: ".raw" });
  try {
    run("qemu-img", ["convert", ...extra, "-O", "raw", path, out]);
    return Deno.readFileSync(out);
  } finally {
    Deno.removeSync(out);
  }
}

/** Runs qemu-io commands on an image (format given so probing never guesses). */
export function qemuIo(path: string, format: string, commands: string[]): void {
  const args = ["-f", format];
  for (const c of commands) args.push("-c", c);
  run("qemu-io", [...args, path]);
}

/** Everything an image reads as, through our back-end. */
export function readAll(image: DiskImage): Uint8Array {
  const out = new Uint8Array(image.sizeBytes);
  image.read(0, out);
  return out;
}

/** Makes a temporary folder, runs `fn` in it, removes it. */
export function withTempDir(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "vmmctl-disk-" });
    try {
      await fn(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

/** A small deterministic PRNG (xorshift32), so a failing case can be replayed. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0 || 1;
  }
  /** A 32-bit unsigned value. */
  next(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.next() / 2 ** 32) * n);
  }
  /** `length` random bytes. */
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.next() & 0xff;
    return out;
  }
}

/** Index of the first differing byte, or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
