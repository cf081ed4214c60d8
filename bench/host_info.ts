/**
 * What the benchmark records about where it ran: git revision, CPU, kernel,
 * a nested-virtualization guess, Deno, QEMU and cc versions, load average.
 *
 * @module
 */

import { type HostDescription, parseCpuinfo } from "./report.ts";

/** Runs a program and returns its stdout's first line, or null when it cannot run. */
export async function firstLineOf(program: string, args: string[]): Promise<string | null> {
  try {
    const r = await new Deno.Command(program, { args, stdout: "piped", stderr: "null" }).output();
    if (!r.success) return null;
    return new TextDecoder().decode(r.stdout).split("\n")[0].trim() || null;
  } catch {
    return null;
  }
}

/** `git describe --always --dirty` of the repository holding this file. */
export async function gitRevision(): Promise<string> {
  const dir = new URL("..", import.meta.url).pathname;
  return await firstLineOf("git", ["-C", dir, "describe", "--always", "--dirty"]) ?? "unknown";
}

/** CPU model, cores, kernel and the nested guess from /proc and Deno. */
export function describeHost(): HostDescription {
  let cpu = { model: "unknown", cpus: navigator.hardwareConcurrency, hypervisor: false };
  try {
    cpu = parseCpuinfo(Deno.readTextFileSync("/proc/cpuinfo"));
  } catch {
    // not Linux: keep the defaults
  }
  return {
    cpuModel: cpu.model,
    cores: cpu.cpus || navigator.hardwareConcurrency,
    kernel: `${Deno.build.os} ${Deno.osRelease()}`,
    nestedVirtualization: cpu.hypervisor ? "yes" : "no",
    memoryBytes: Deno.systemMemoryInfo().total,
  };
}

/** The 1-minute load average (NaN when unknown). */
export function loadAverage(): number {
  try {
    return Deno.loadavg()[0];
  } catch {
    return NaN;
  }
}
