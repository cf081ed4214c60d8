/**
 * Machine selection: whether a VM config boots a Solo5 hvt unikernel (then
 * the tender machine runs it, in {@link SOLO5_WORKER_URL}) or anything else
 * (the PC machine).
 *
 * @example
 * ```ts
 * import { isUnikernelConfig } from "./select.ts";
 * // isUnikernelConfig(config) === true when config.boot.kernel is an hvt unikernel
 * ```
 * @module
 */

import type { VmConfig } from "../config/schema.ts";
import { detectKernelFormat } from "../loaders/detect.ts";
import { ELF_MAGIC } from "../loaders/elf.ts";

/** The vCPU worker of the tender machine (same protocol as machine/vcpu_worker.ts). */
export const SOLO5_WORKER_URL: URL = new URL("./tender_worker.ts", import.meta.url);

function startsWithElfMagic(path: string): boolean {
  let f: Deno.FsFile | undefined;
  try {
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
  if (!startsWithElfMagic(config.boot.kernel)) return false;
  try {
    return detectKernelFormat(Deno.readFileSync(config.boot.kernel)) === "solo5-hvt";
  } catch {
    return false;
  }
}
