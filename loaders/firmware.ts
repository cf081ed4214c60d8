/**
 * BIOS firmware (SeaBIOS) images: finding one, checking it, and placing it
 * in guest memory the way vmd and QEMU do.
 *
 * The whole image ends at 4 GiB (the flash the reset vector at 0xFFFFFFF0
 * fetches from); its top 128 KiB is also copied to 0xE0000-0xFFFFF, the
 * legacy BIOS window real-mode code runs in once it jumps to F000:E05B.
 * The low window is plain RAM from the start, so SeaBIOS finds its code
 * there already when it turns on "shadowing" through the i440FX PAM
 * registers (vmd does the same: its BIOS area is RAM too).
 *
 * @module
 */

import type { GuestMemory } from "../core/guest_memory.ts";
import type { CpuState } from "../core/cpu.ts";
import { realModeSegment, resetState } from "./cpu_state.ts";

/** Where the default firmware is looked for, in order (Debian's seabios package, then vmd's). */
export const FIRMWARE_SEARCH_PATHS: readonly string[] = [
  "/usr/share/seabios/bios.bin",
  "/usr/share/seabios/bios-256k.bin",
  "/usr/share/qemu/bios.bin",
  "/etc/firmware/vmm-bios",
];
/** Largest firmware image accepted (the flash window below 4 GiB). */
export const MAX_FIRMWARE_BYTES = 16 * 1024 * 1024;
/** Firmware images are whole 64 KiB flash blocks. */
export const FIRMWARE_BLOCK_BYTES = 64 * 1024;
/** The legacy BIOS window below 1 MiB that mirrors the image's top. */
export const LEGACY_BIOS_GPA = 0xe0000;
/** Bytes of the legacy BIOS window (0xE0000-0xFFFFF). */
export const LEGACY_BIOS_BYTES = 128 * 1024;
/** 4 GiB: the image ends here. */
const FOUR_GIB = 2 ** 32;

/** A checked firmware image and where it goes. */
export interface Firmware {
  /** Where it came from, for messages. */
  path: string;
  bytes: Uint8Array;
  /** Guest-physical start of the flash copy: 4 GiB minus its size. */
  flashGpa: number;
}

/** Says what to install when no firmware is found. */
export function missingFirmwareMessage(tried: readonly string[]): string {
  return `No BIOS firmware found (tried ${tried.map((p) => `"${p}"`).join(", ")}): ` +
    `install SeaBIOS (Debian/Ubuntu: apt-get install seabios; OpenBSD: fw_update vmm) ` +
    `or set boot.bios to a firmware image`;
}

/**
 * The firmware to use: `explicit` (boot.bios) when set, else the first of
 * {@link FIRMWARE_SEARCH_PATHS} that exists. Throws with what to install.
 */
export function findFirmware(
  explicit?: string,
  exists: (path: string) => boolean = isFile,
  search: readonly string[] = FIRMWARE_SEARCH_PATHS,
): string {
  if (explicit !== undefined) {
    if (!exists(explicit)) throw new Error(missingFirmwareMessage([explicit]));
    return explicit;
  }
  const found = search.find(exists);
  if (found === undefined) throw new Error(missingFirmwareMessage(search));
  return found;
}

/** Whether {@link findFirmware} would find the default firmware (for tests' `ignore`). */
export function firmwareAvailable(): boolean {
  return FIRMWARE_SEARCH_PATHS.some(isFile);
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Checks `bytes` as a firmware image: whole 64 KiB blocks, at most 16 MiB,
 * and a reset vector (an instruction at 16 bytes from the end, not erased
 * flash). Throws with a message naming `path`.
 */
export function checkFirmware(bytes: Uint8Array, path: string): Firmware {
  const size = bytes.length;
  const what = `BIOS firmware "${path}"`;
  const hint = "(reinstall the seabios package, or point boot.bios at a whole image)";
  if (size === 0) throw new Error(`${what} is empty ${hint}`);
  if (size > MAX_FIRMWARE_BYTES) {
    throw new Error(`${what} is ${size} bytes, more than the 16 MiB flash window below 4 GiB`);
  }
  if (size % FIRMWARE_BLOCK_BYTES !== 0) {
    throw new Error(
      `${what} is ${size} bytes, not a whole number of 64 KiB blocks: truncated? ${hint}`,
    );
  }
  const reset = bytes[size - 16];
  if (reset === 0x00 || reset === 0xff) {
    throw new Error(`${what} has no reset vector at 16 bytes before its end ${hint}`);
  }
  return { path, bytes, flashGpa: FOUR_GIB - size };
}

/** Reads and checks the firmware at `path`. */
export function readFirmware(path: string): Firmware {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (e) {
    throw new Error(
      `Cannot read BIOS firmware "${path}": ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
  return checkFirmware(bytes, path);
}

/** The guest RAM range the flash copy needs (page aligned: sizes are 64 KiB blocks). */
export function flashRange(fw: Firmware): { gpa: number; size: number } {
  return { gpa: fw.flashGpa, size: fw.bytes.length };
}

/**
 * Copies the image to its flash range (which must be in `mem`) and its top
 * 128 KiB (all of it, if smaller) to the window ending at 1 MiB.
 */
export function placeFirmware(mem: GuestMemory, fw: Firmware): void {
  mem.write(fw.flashGpa, fw.bytes);
  const low = fw.bytes.subarray(Math.max(0, fw.bytes.length - LEGACY_BIOS_BYTES));
  mem.write(LEGACY_BIOS_GPA + LEGACY_BIOS_BYTES - low.length, low);
}

/**
 * The vCPU's first state for a BIOS boot. `architectural`: the x86 reset
 * state (CS base 0xFFFF0000, so the first fetch is the flash's reset vector
 * at 0xFFFFFFF0); otherwise vmd's flat 16-bit state, CS base 0xF0000 (the
 * same IP lands in the low copy), which is what vmm(4) is given by vmd.
 */
export function firmwareEntryState(architectural: boolean): CpuState {
  const state = resetState();
  if (!architectural) {
    state.sregs.cs = realModeSegment(0xf000, true);
    state.regs.rdx = 0n;
  }
  return state;
}
