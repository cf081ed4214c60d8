/**
 * Machine selection, the one place that picks the machine kind: a VM config
 * that boots a Solo5 hvt unikernel runs on the tender machine (in
 * {@link SOLO5_WORKER_URL}), anything else on the PC machine
 * ({@link PC_WORKER_URL}). The machine layer knows nothing of Solo5.
 *
 * @example
 * ```ts
 * import { machineWorker } from "./select.ts";
 * // new VmHost({ config, serial, worker: machineWorker(config) })
 * ```
 * @module
 */

import type { VmConfig } from "../config/schema.ts";
import { detectKernelFormat } from "../loaders/detect.ts";
import { ELF_MAGIC } from "../loaders/elf.ts";
import { readImageFile } from "../loaders/image_file.ts";
import { PC_WORKER_URL } from "../machine/host.ts";

/** The vCPU worker of the tender machine (same protocol as machine/vcpu_worker.ts). */
export const SOLO5_WORKER_URL: URL = new URL("./tender_worker.ts", import.meta.url);

function startsWithElfMagic(path: string): boolean {
  let f: Deno.FsFile | undefined;
  try {
    // Never open a FIFO or a device to look at it: that can block or have side effects.
    if (!Deno.statSync(path).isFile) return false;
    f = Deno.openSync(path, { read: true });
    const head = new Uint8Array(4);
    if (f.readSync(head) !== 4) return false;
    return new DataView(head.buffer).getUint32(0, true) === ELF_MAGIC;
  } catch {
    return false;
  } finally {
    f?.close();
  }
}

/**
 * True when the config's kernel (or `kernelImage`) is a Solo5 hvt unikernel.
 * Unreadable files answer false: the PC machine then reports the error.
 */
export function isUnikernelConfig(config: VmConfig, kernelImage?: Uint8Array): boolean {
  if (kernelImage) return detectKernelFormat(kernelImage) === "solo5-hvt";
  // Only ELF files can be unikernels: look at four bytes before reading a whole kernel.
  const kernel = config.boot.kernel;
  if (kernel === undefined || !startsWithElfMagic(kernel)) return false;
  try {
    const image = readImageFile(kernel, config.vm.memoryBytes, "kernel");
    return detectKernelFormat(image) === "solo5-hvt";
  } catch {
    return false;
  }
}

/** The vCPU worker that runs `config`: the tender machine's for a unikernel, else the PC's. */
export function machineWorker(config: VmConfig, kernelImage?: Uint8Array): URL {
  return isUnikernelConfig(config, kernelImage) ? SOLO5_WORKER_URL : PC_WORKER_URL;
}
