/**
 * Runs a Multiboot guest under QEMU, the oracle vmmctl's tests compare with:
 * a `-machine pc` (or q35) with no default devices, COM1 on stdout and the
 * isa-debug-exit device at port 0xF4 (a write of v ends QEMU with status
 * `(v << 1) | 1`).
 *
 * @example
 * ```ts
 * import { runQemu } from "./qemu.ts";
 * const result = await runQemu({ kernel: "guests/bin/hello.bin", accel: "tcg", timeoutMs: 10_000 });
 * if (result === undefined) console.log("qemu-system-x86_64 is not installed");
 * else console.log(result.status, result.serial);
 * ```
 *
 * @module
 */

/** The QEMU binary looked up on PATH. */
export const QEMU_BINARY = "qemu-system-x86_64";

/**
 * The CPU model QEMU is given. QEMU's default qemu64 model says AuthenticAMD,
 * and TCG (like AMD hardware) raises #UD for SYSEXIT in 64-bit mode, which
 * the long-mode guests need to reach ring 3.
 */
export const QEMU_CPU = "qemu64,vendor=GenuineIntel";

/** The machine QEMU builds: the one argument list of the tests and the benchmarks. */
export interface QemuMachineOptions {
  /** Path of the Multiboot kernel image (`-kernel`). */
  kernel?: string;
  /**
   * A raw disk image on virtio-blk instead of a kernel: SeaBIOS boots it,
   * with `-nographic` so it mirrors its screen to COM1 (sercon).
   */
  disk?: string;
  /** An ISO image on a virtio-scsi CD-ROM (boots first when `disk` is absent). */
  cdrom?: string;
  /** Multiboot command line (`-append`); QEMU prefixes the kernel's path. */
  cmdline?: string;
  /** "tcg" (software, fast to start) or "kvm". */
  accel: "tcg" | "kvm";
  /** QEMU machine type with its properties (`-machine`); "pc" unless given. */
  machine?: string;
  /** Guest RAM in MiB (`-m`); QEMU's default unless given. */
  memoryMiB?: number;
  /** Processors (`-smp`); 1 unless given. */
  smp?: number;
}

/** What `runQemu` runs. */
export interface QemuOptions extends QemuMachineOptions {
  /** QEMU is killed (SIGKILL) if it is still running after this long. */
  timeoutMs: number;
}

/** How a QEMU run ended. */
export interface QemuResult {
  /** QEMU's exit status (128 + signal number when it was killed). */
  status: number;
  /** Everything the guest wrote to COM1. */
  serial: string;
  /** QEMU's own messages (warnings, KVM internal errors). */
  stderr: string;
  /** True when the timeout killed QEMU. */
  timedOut: boolean;
  /** Wall time from spawn to exit. */
  elapsedMs: number;
}

/** The full QEMU argument list for `options`. */
export function qemuArgs(options: QemuMachineOptions): string[] {
  const args = [
    "-machine",
    options.machine ?? "pc",
    "-accel",
    options.accel,
    "-cpu",
    QEMU_CPU,
    ...(options.memoryMiB === undefined ? [] : ["-m", String(options.memoryMiB)]),
    ...(options.kernel !== undefined ? ["-kernel", options.kernel] : []),
    ...(options.disk !== undefined ? ["-drive", `file=${options.disk},format=raw,if=virtio`] : []),
    ...(options.cdrom !== undefined
      ? [
        "-drive",
        `file=${options.cdrom},format=raw,if=none,id=cd0,media=cdrom,readonly=on`,
        "-device",
        "virtio-scsi-pci",
        "-device",
        "scsi-cd,drive=cd0",
      ]
      : []),
    ...(options.disk !== undefined || options.cdrom !== undefined
      ? ["-nographic", "-monitor", "none"]
      : ["-display", "none"]),
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=4",
    "-serial",
    "stdio",
    "-no-reboot",
    "-nodefaults",
  ];
  if (options.cmdline !== undefined) args.push("-append", options.cmdline);
  if (options.smp !== undefined) args.push("-smp", String(options.smp));
  return args;
}

/**
 * Runs QEMU once with `options`. Resolves to undefined when
 * qemu-system-x86_64 is not installed.
 */
export async function runQemu(options: QemuOptions): Promise<QemuResult | undefined> {
  const started = performance.now();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(QEMU_BINARY, {
      args: qemuArgs(options),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // It exited between the timeout firing and the kill.
    }
  }, options.timeoutMs);
  try {
    const output = await child.output();
    return {
      status: output.code,
      serial: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
      timedOut,
      elapsedMs: performance.now() - started,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Whether qemu-system-x86_64 can be started (for `Deno.test`'s `ignore`). */
export function isQemuInstalled(): boolean {
  try {
    return new Deno.Command(QEMU_BINARY, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
