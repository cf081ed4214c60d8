/**
 * Kernel format detection and the one entry point machine code calls:
 * {@link loadKernel}.
 *
 * Order (as QEMU's `-kernel`): a bzImage ("HdrS" setup header) first, then an
 * OpenBSD kernel (ELF, gzipped or not, with the "OpenBSD" note: loaded as
 * vmd does), then a Multiboot v1 header (which wins over plain ELF, like GRUB
 * and QEMU), then ELF with the PVH note, then plain ELF64 / ELF32.
 *
 * @example
 * ```ts
 * import { GuestMemory } from "../core/guest_memory.ts";
 * import { memoryLayout } from "../core/layout.ts";
 * import { loadKernel } from "./detect.ts";
 * const { ram, e820 } = memoryLayout(256 * 1024 * 1024);
 * const memory = GuestMemory.anonymous(ram);
 * const data = Deno.readFileSync("vmlinuz");
 * const result = loadKernel(data, { memory, e820, cmdline: "console=ttyS0", name: "vmlinuz" });
 * result.summary; // "bzImage protocol 2.15, 64-bit entry at 0x100200, ..."
 * ```
 * @module
 */

import { GuestMemoryError } from "../core/guest_memory.ts";
import { type KernelFormat, LoaderError, type LoadOptions, type LoadResult } from "./common.ts";
import { isBzImage, loadBzImage } from "./bzimage.ts";
import { elfClass, elfNotes, loadElf, parseElf, pvhEntry } from "./elf.ts";
import { findMultibootHeader, loadMultiboot } from "./multiboot.ts";
import { isOpenbsdKernel, loadOpenbsd } from "./openbsd.ts";

export { type KernelFormat, LoaderError, type LoadOptions, type LoadResult } from "./common.ts";
export type { UsedRange } from "./common.ts";

/** The ELF note name of Solo5 unikernels (their machine kind, `solo5/`, reads the notes). */
export const SOLO5_NOTE_NAME = "Solo5";

/** Whether `data` is an ELF64 file with a Solo5 note (a unikernel, not a PC kernel). */
function hasSolo5Note(data: Uint8Array): boolean {
  try {
    return elfClass(data) === 64 && elfNotes(data).some((n) => n.name === SOLO5_NOTE_NAME);
  } catch {
    return false;
  }
}

/** The format of a kernel image, or undefined when it is none we load. */
export function detectKernelFormat(data: Uint8Array): KernelFormat | undefined {
  if (isBzImage(data)) return "bzimage";
  // Before OpenBSD: Solo5 unikernels carry an OpenBSD note too (so OpenBSD will not exec them).
  if (hasSolo5Note(data)) return "solo5-hvt";
  if (isOpenbsdKernel(data)) return "openbsd";
  if (findMultibootHeader(data)) return "multiboot";
  const cls = elfClass(data);
  if (cls === undefined) return undefined;
  try {
    if (pvhEntry(data, parseElf(data)) !== undefined) return "pvh";
  } catch {
    // A malformed ELF is still ELF: loading reports what is wrong with it.
  }
  return cls === 64 ? "elf64" : "elf32";
}

/**
 * Detects the format of `data` and loads it into `options.memory`. Every
 * failure is a {@link LoaderError} whose message starts with the kernel name.
 */
export function loadKernel(data: Uint8Array, options: LoadOptions): LoadResult {
  const prefix = options.name === undefined ? "kernel: " : `kernel "${options.name}": `;
  const format = detectKernelFormat(data);
  try {
    switch (format) {
      case "bzimage":
        return loadBzImage(data, options);
      case "multiboot":
        return loadMultiboot(data, options);
      case "openbsd":
        return loadOpenbsd(data, options);
      case "solo5-hvt":
        throw new LoaderError(
          "a Solo5 hvt unikernel runs on the tender machine (vmmctl solo5, or vmmctl up with " +
            "boot.kernel set to it), not on the PC machine",
        );
      case "pvh":
      case "elf64":
      case "elf32":
        return loadElf(data, options);
      case undefined: {
        const first = [...data.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0"));
        const shown = data.length === 0 ? "empty file" : `first bytes: ${first.join(" ")}` +
          (data.length > 8 ? " ..." : "");
        throw new LoaderError(`not a bzImage, ELF or Multiboot v1 image (${shown})`);
      }
    }
  } catch (e) {
    if (e instanceof LoaderError || e instanceof GuestMemoryError) {
      throw new LoaderError(prefix + e.message, { cause: e });
    }
    throw e;
  }
}
