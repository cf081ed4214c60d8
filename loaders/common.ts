/**
 * What every kernel loader shares: the options and result types, the error
 * class, and {@link Placement}, which checks that everything a loader puts in
 * guest memory fits in RAM and overlaps nothing else it put there.
 *
 * @module
 */

import type { CpuState } from "../core/cpu.ts";
import type { GuestMemory } from "../core/guest_memory.ts";
import {
  BOOT_GDT_GPA,
  BOOT_GDT_MAX_BYTES,
  BOOT_STACK_BYTES,
  BOOT_STACK_GPA,
  BOOT_TSS_GPA,
  BOOT_TSS_MAX_BYTES,
  E820_RAM,
  type E820Entry,
  PAGE_SIZE,
  PAGE_TABLES_END,
  PML4_GPA,
} from "../core/layout.ts";

/** The kernel formats the loaders recognise. */
export type KernelFormat =
  | "bzimage"
  | "multiboot"
  | "elf64"
  | "elf32"
  | "pvh"
  | "openbsd"
  /** A Solo5 hvt unikernel: runs on the tender machine (solo5/), not the PC machine. */
  | "solo5-hvt";

/** What a loader needs to place a kernel. */
export interface LoadOptions {
  /** Guest RAM; the loaders write only through it. */
  memory: GuestMemory;
  /** The machine's e820 table (from `memoryLayout`). */
  e820: E820Entry[];
  /** Kernel command line (without the NUL). */
  cmdline: string;
  /** Initial ramdisk (Linux) or boot module (Multiboot, PVH). */
  initrd?: Uint8Array;
  /** The kernel's file name, for messages. */
  name?: string;
  /** The initrd's name: the Multiboot module string (default "initrd"). */
  initrdName?: string;
  /**
   * Where the ACPI RSDP is, for boot protocols with a field for it (Linux
   * boot_params.acpi_rsdp_addr, PVH rsdp_paddr); others find it by the scan.
   */
  acpiRsdpGpa?: number;
}

/** A guest-physical range a loader wrote or reserved. */
export interface UsedRange {
  gpa: number;
  size: number;
  what: string;
}

/** What a loader produced. */
export interface LoadResult {
  format: KernelFormat;
  /** The boot vCPU's initial state. */
  state: CpuState;
  /** Guest-physical entry point (equals `state.regs.rip`). */
  entry: number;
  /** One line for the log, e.g. "bzImage protocol 2.15, 64-bit entry at 0x100200, ...". */
  summary: string;
  /** guest-physical ranges the loader used (for tests / debugging) */
  used: UsedRange[];
}

/** A kernel that cannot be loaded, with a message for the user. */
export class LoaderError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LoaderError";
  }
}

/** `0x` + lower-case hex. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** A byte count the way users write memory sizes: "256M", "1G", "640K", "1536M", "100 bytes". */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)}M`;
  return `${bytes} bytes`;
}

/** Rounds `value` up to a multiple of `align` (a power of two or any positive integer). */
export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

/** Rounds `value` down to a multiple of `align`. */
export function alignDown(value: number, align: number): number {
  return Math.floor(value / align) * align;
}

/**
 * The ranges a loader has claimed. Every claim must lie in guest RAM and
 * must not overlap an earlier one, so a kernel segment can never silently
 * overwrite the zero page, the page tables or an initrd.
 */
export class Placement {
  readonly memory: GuestMemory;
  readonly used: UsedRange[] = [];

  constructor(memory: GuestMemory) {
    this.memory = memory;
  }

  /** Claims `[gpa, gpa+size)` for `what`; throws a LoaderError when it does not fit. */
  claim(gpa: number, size: number, what: string): void {
    if (
      !Number.isSafeInteger(gpa) || !Number.isSafeInteger(size) || gpa < 0 || size < 0 ||
      !this.memory.contains(gpa, size)
    ) {
      throw new LoaderError(
        `${what} at ${hex(gpa)} of ${hex(size)} bytes does not fit in guest RAM ` +
          `(${formatBytes(this.memory.size)})`,
      );
    }
    if (size === 0) return;
    for (const u of this.used) {
      if (gpa < u.gpa + u.size && u.gpa < gpa + size) {
        throw new LoaderError(
          `${what} at ${hex(gpa)} of ${hex(size)} bytes overlaps the ${u.what} at ${hex(u.gpa)}`,
        );
      }
    }
    this.used.push({ gpa, size, what });
  }

  /** Claims the range and writes `data` at its start (the rest of `size` is zeroed). */
  put(gpa: number, data: Uint8Array, what: string, size = data.length): void {
    this.claim(gpa, size, what);
    this.memory.write(gpa, data);
    if (size > data.length) this.memory.fill(gpa + data.length, size - data.length, 0);
  }

  /** The claimed ranges, ascending. */
  sorted(): UsedRange[] {
    return [...this.used].sort((a, b) => a.gpa - b.gpa);
  }

  /** The end of the highest claimed range. */
  highestEnd(): number {
    return this.used.reduce((m, u) => Math.max(m, u.gpa + u.size), 0);
  }
}

/**
 * Encodes the command line with its NUL; throws when it (with the NUL)
 * exceeds `maxBytes`.
 */
export function encodeCmdline(cmdline: string, maxBytes: number, limitName: string): Uint8Array {
  const text = new TextEncoder().encode(cmdline);
  if (text.includes(0)) throw new LoaderError("command line contains a NUL byte");
  if (text.length + 1 > maxBytes) {
    throw new LoaderError(
      `command line of ${text.length} bytes is longer than ${limitName} (${maxBytes - 1} bytes)`,
    );
  }
  const out = new Uint8Array(text.length + 1);
  out.set(text);
  return out;
}

/** The end of the highest e820 RAM range that starts below `below`, clipped to `below`. */
export function ramEndBelow(e820: readonly E820Entry[], below: number): number {
  let end = 0;
  for (const e of e820) {
    if (e.type === E820_RAM && e.gpa < below) end = Math.max(end, Math.min(e.gpa + e.size, below));
  }
  return end;
}

/**
 * Places `size` bytes page aligned as high as possible below `limit`
 * (exclusive), within one e820 RAM range, not below `floor`, overlapping
 * nothing claimed. Returns the address or undefined.
 */
export function placeHigh(
  placement: Placement,
  e820: readonly E820Entry[],
  size: number,
  floor: number,
  limit: number,
): number | undefined {
  const ram = e820.filter((e) => e.type === E820_RAM).sort((a, b) => b.gpa - a.gpa);
  for (const r of ram) {
    let top = Math.min(limit, r.gpa + r.size);
    // Walk down past claimed ranges that collide.
    for (let tries = 0; tries <= placement.used.length; tries++) {
      const gpa = alignDown(top - size, PAGE_SIZE);
      if (gpa < Math.max(floor, r.gpa)) break;
      const hit = placement.used.find((u) => gpa < u.gpa + u.size && u.gpa < gpa + size);
      if (!hit) return placement.memory.contains(gpa, size) ? gpa : undefined;
      top = hit.gpa;
    }
  }
  return undefined;
}

/** Claims the low-memory areas every protected/long-mode loader writes. */
export function claimBootAreas(placement: Placement, withPageTables: boolean): void {
  placement.claim(BOOT_GDT_GPA, BOOT_GDT_MAX_BYTES, "boot GDT");
  placement.claim(BOOT_TSS_GPA, BOOT_TSS_MAX_BYTES, "boot TSS");
  placement.claim(BOOT_STACK_GPA, BOOT_STACK_BYTES, "boot stack");
  if (withPageTables) placement.claim(PML4_GPA, PAGE_TABLES_END - PML4_GPA, "page tables");
}
