/**
 * Boots a guest the way `vmmctl up` does (vCPU in a Worker, host kicker) and
 * captures its serial output: the helper integration tests use.
 *
 * @module
 */

import type { AccelChoice } from "../accel/select.ts";
import type { DiskConfig, InterfaceConfig, VmConfig } from "../config/schema.ts";
import { VmHost } from "../machine/host.ts";
import type { DisplaySettings } from "../display/listen.ts";
import { exitStatus, type Outcome } from "../machine/machine.ts";

/** Whether /dev/kvm can be opened read-write here (else KVM tests are skipped). */
export function kvmAvailable(): boolean {
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
}

/** Why KVM tests are skipped, for the log. */
export const NO_KVM_MESSAGE = "skipped: /dev/kvm cannot be opened here";

/** What a boot produced. */
export interface BootResult {
  outcome: Outcome;
  status: number;
  serial: string;
  postCodes: { code: number; atNs: number }[];
  wallMs: number;
}

/** Options for {@link bootGuest}. */
export interface BootOptions {
  /** Path of the kernel image; without one the VM boots through the BIOS. */
  kernel?: string;
  /** BIOS firmware (boot.bios) for a VM without a kernel. */
  bios?: string;
  /** A CD-ROM image ([cdrom] path). */
  cdrom?: string;
  /** What a BIOS boots first (boot.device). */
  bootDevice?: "disk" | "cdrom";
  /** boot.on_fail. */
  onFail?: "wait" | "end";
  cmdline?: string;
  accel?: AccelChoice;
  irqchip?: "user" | "kernel";
  /** Processors (default 1). */
  vcpus?: number;
  memoryBytes?: number;
  exitPort?: number | null;
  /** The VM is stopped after this long (the result then has outcome "stopped"). */
  timeoutMs?: number;
  /** Called once the vCPU is running, with the host (pause/resume/input tests). */
  onStarted?: (host: VmHost) => void;
  /** Virtio disks (default none). */
  disks?: DiskConfig[];
  /** Virtio network interfaces (default none). */
  interfaces?: InterfaceConfig[];
  /** A graphical console (default none). */
  display?: DisplaySettings;
}

/** A VmConfig for a test guest. */
export function guestConfig(o: BootOptions): VmConfig {
  return {
    vm: {
      name: "test",
      memoryBytes: o.memoryBytes ?? 64 * 1024 * 1024,
      vcpus: o.vcpus ?? 1,
      accel: o.accel ?? "kvm",
      irqchip: o.irqchip ?? "user",
    },
    boot: {
      ...(o.kernel !== undefined ? { kernel: o.kernel } : {}),
      ...(o.bios !== undefined ? { bios: o.bios } : {}),
      ...(o.bootDevice !== undefined ? { device: o.bootDevice } : {}),
      ...(o.onFail !== undefined ? { onFail: o.onFail } : {}),
      cmdline: o.cmdline ?? "",
    },
    ...(o.cdrom !== undefined ? { cdrom: { path: o.cdrom } } : {}),
    disks: o.disks ?? [],
    interfaces: o.interfaces ?? [],
    console: { serial: "none" },
    debug: { exitPort: o.exitPort === null ? undefined : o.exitPort ?? 0xf4 },
    ...(o.display ? { display: o.display } : {}),
  };
}

/** Boots a guest and waits for it to end (or the timeout). */
export async function bootGuest(o: BootOptions): Promise<BootResult> {
  const serialPath = await Deno.makeTempFile({ prefix: "vmmctl-serial-" });
  const t0 = performance.now();
  let host: VmHost | undefined;
  try {
    host = new VmHost({
      config: guestConfig(o),
      serial: { serial: "file", path: serialPath },
      onStarted: () => o.onStarted?.(host!),
    });
    const timer = setTimeout(() => host!.stop(), o.timeoutMs ?? 20_000);
    const outcome = await host.start();
    clearTimeout(timer);
    return {
      outcome,
      status: exitStatus(outcome),
      serial: await Deno.readTextFile(serialPath),
      postCodes: host.postCodes,
      wallMs: performance.now() - t0,
    };
  } finally {
    await Deno.remove(serialPath).catch(() => {});
  }
}
