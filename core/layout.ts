/**
 * The guest-physical memory map: where RAM lives, the PCI hole, the e820
 * table handed to the guest, and the fixed low-memory areas the kernel
 * loaders use.
 *
 * Low memory plan (all below 1 MiB; none overlap, see layout_test.ts):
 *
 * | gpa range            | what                                                  |
 * | -------------------- | ----------------------------------------------------- |
 * | 0x00000 - 0x004FF    | real-mode IVT and BIOS data area (left alone)         |
 * | 0x00500 - 0x005FF    | boot GDT ({@link BOOT_GDT_GPA}); no IDT is set up     |
 * | 0x00600 - 0x0067F    | boot TSS, 104 bytes ({@link BOOT_TSS_GPA})            |
 * | 0x05000 - 0x05FFF    | PVH hvm_start_info + memmap + module list             |
 * | 0x06000 - 0x06FFF    | Multiboot info, then its mmap, modules, strings       |
 * | 0x07000 - 0x07FFF    | Linux zero page (boot_params)                         |
 * | 0x08000 - 0x08FFF    | boot stack, top at {@link BOOT_STACK_TOP} (0x8FF0)    |
 * | 0x09000 - 0x09FFF    | PML4                                                  |
 * | 0x0A000 - 0x0AFFF    | PDPT                                                  |
 * | 0x0B000 - 0x0EFFF    | 4 page directories: identity map of 4 GiB, 2 MiB pages |
 * | 0x20000 - 0x2FFFF    | kernel command line (at most 64 KiB with its NUL)     |
 * | 0x9FC00 - 0x9FFFF    | EBDA (reserved in e820)                               |
 * | 0xF0000 - 0xFFFFF    | BIOS area (reserved in e820)                          |
 * | 0x100000 -           | kernels (Linux protected-mode code at 1 MiB)          |
 *
 * Above low RAM: the hole {@link PCI_HOLE_BASE}..4 GiB holds PCI MMIO, the
 * IOAPIC, the LAPIC and the BIOS flash; RAM beyond 3 GiB continues at 4 GiB.
 *
 * @module
 */

/** One kibibyte in bytes. */
export const KiB = 1024;
/** One mebibyte in bytes. */
export const MiB = 1024 * KiB;
/** One gibibyte in bytes. */
export const GiB = 1024 * MiB;
/** Guest page size. */
export const PAGE_SIZE = 4096;

/** e820 type: usable RAM. */
export const E820_RAM = 1;
/** e820 type: reserved. */
export const E820_RESERVED = 2;

/** One entry of the BIOS e820 memory map (also used for Multiboot mmap and PVH memmap). */
export interface E820Entry {
  /** Guest-physical start. */
  gpa: number;
  /** Length in bytes. */
  size: number;
  /** {@link E820_RAM} or {@link E820_RESERVED}. */
  type: number;
}

/** A guest RAM region, as {@link GuestMemory.anonymous} and the back-ends take it. */
export interface RamRange {
  gpa: number;
  size: number;
}

/** The machine's memory map. */
export interface MemoryLayout {
  /** RAM regions, ascending; the first starts at 0. */
  ram: RamRange[];
  /** The e820 table for the guest, ascending and non-overlapping. */
  e820: E820Entry[];
}

// ---- Low memory plan (see the table in the module doc) ----

/** Start of the real-mode interrupt vector table (we never write it). */
export const REAL_MODE_IVT_GPA = 0x0;
/** End (exclusive) of the IVT + BIOS data area. */
export const BIOS_DATA_AREA_END = 0x500;
/** Boot GDT: null, null, code 0x10, data 0x18, TSS 0x20 (16 bytes in long mode). */
export const BOOT_GDT_GPA = 0x500;
/** Bytes reserved for the boot GDT. */
export const BOOT_GDT_MAX_BYTES = 0x100;
/** Boot TSS (TR must point at a valid TSS for VMX). */
export const BOOT_TSS_GPA = 0x600;
/** Bytes reserved for the boot TSS (a 32/64-bit TSS is 104 bytes). */
export const BOOT_TSS_MAX_BYTES = 0x80;
/** PVH `hvm_start_info`, followed by its memmap, module list and strings. */
export const PVH_INFO_GPA = 0x5000;
/** Bytes reserved for the PVH area. */
export const PVH_INFO_MAX_BYTES = 0x1000;
/** Multiboot v1 information structure, followed by its mmap, module list and strings. */
export const MULTIBOOT_INFO_GPA = 0x6000;
/** Bytes reserved for the Multiboot area. */
export const MULTIBOOT_INFO_MAX_BYTES = 0x1000;
/** Linux zero page (struct boot_params, 4 KiB). */
export const ZERO_PAGE_GPA = 0x7000;
/** Size of the zero page. */
export const ZERO_PAGE_BYTES = 0x1000;
/** Bottom of the boot stack area. */
export const BOOT_STACK_GPA = 0x8000;
/** Bytes reserved for the boot stack. */
export const BOOT_STACK_BYTES = 0x1000;
/** Initial stack pointer for loaders that provide a stack (16-byte aligned). */
export const BOOT_STACK_TOP = 0x8ff0;
/** Page-map level 4 of the boot identity map. */
export const PML4_GPA = 0x9000;
/** Page-directory-pointer table of the boot identity map. */
export const PDPT_GPA = 0xa000;
/** First of the page directories (one per GiB) of the boot identity map. */
export const PD_GPA = 0xb000;
/** Number of page directories: 4 x 1 GiB = 4 GiB identity-mapped with 2 MiB pages. */
export const PD_COUNT = 4;
/** End (exclusive) of the boot page tables. */
export const PAGE_TABLES_END = PD_GPA + PD_COUNT * PAGE_SIZE;
/** Kernel command line. */
export const CMDLINE_GPA = 0x20000;
/** Bytes reserved for the command line, including its terminating NUL. */
export const CMDLINE_MAX_BYTES = 0x10000;
/** Extended BIOS data area (reserved in e820). */
export const EBDA_GPA = 0x9fc00;
/** End (exclusive) of conventional memory (the legacy VGA window starts here). */
export const LOW_MEMORY_END = 0xa0000;
/** The VGA's legacy memory window (a hole in RAM when the machine has a VGA). */
export const VGA_WINDOW_GPA = 0xa0000;
/** End of the VGA window. */
export const VGA_WINDOW_END = 0xc0000;
/** The legacy BIOS area (reserved in e820). */
export const BIOS_AREA_GPA = 0xf0000;
/** The 1 MiB line: extended memory and kernels start here. */
export const HIGH_MEMORY_GPA = 0x100000;

// ---- The 32-bit hole and beyond ----

/** RAM below 4 GiB ends here at most; the hole up to 4 GiB follows. */
export const PCI_HOLE_BASE = 0xc0000000;
/** Start of the PCI MMIO window (BARs). */
export const PCI_MMIO_BASE = 0xc0000000;
/** End (exclusive) of the PCI MMIO window. */
export const PCI_MMIO_END = 0xfec00000;
/** IOAPIC registers. */
export const IOAPIC_GPA = 0xfec00000;
/** Size of the IOAPIC window. */
export const IOAPIC_BYTES = 0x1000;
/** Local APIC registers. */
export const LAPIC_GPA = 0xfee00000;
/** Size of the LAPIC window. */
export const LAPIC_BYTES = 0x1000;
/** BIOS flash area: a firmware image is mapped to end at 4 GiB (at most 4 MiB). */
export const BIOS_FLASH_GPA = 0xffc00000;
/** Size of the BIOS flash area. */
export const BIOS_FLASH_BYTES = 0x400000;
/** 4 GiB: RAM above the hole continues here. */
export const HIGH_RAM_GPA = 0x100000000;

/** Smallest guest we lay out: low memory plus a little above 1 MiB. */
export const MIN_MEMORY_BYTES = 2 * MiB;

/**
 * Lays out `memoryBytes` of guest RAM: RAM from 0 up to min(memory, 3 GiB),
 * the rest from 4 GiB up, and the e820 table that describes it.
 *
 * @example
 * ```ts
 * import { memoryLayout } from "./layout.ts";
 * const { ram, e820 } = memoryLayout(256 * 1024 * 1024);
 * ram; // [{ gpa: 0, size: 0x10000000 }]
 * e820.length; // 4
 * ```
 */
export function memoryLayout(
  memoryBytes: number,
  options: { vgaHole?: boolean } = {},
): MemoryLayout {
  if (!Number.isSafeInteger(memoryBytes) || memoryBytes % PAGE_SIZE !== 0) {
    throw new RangeError(`Memory size "${memoryBytes}" is not a whole number of 4 KiB pages`);
  }
  if (memoryBytes < MIN_MEMORY_BYTES) {
    throw new RangeError(`Memory size "${memoryBytes}" is below the minimum of 2 MiB`);
  }
  if (HIGH_RAM_GPA + memoryBytes > 2 ** 52) {
    throw new RangeError(`Memory size "${memoryBytes}" exceeds the physical address space`);
  }
  const lowEnd = Math.min(memoryBytes, PCI_HOLE_BASE);
  const highBytes = memoryBytes - lowEnd;
  // With a VGA, 0xA0000-0xBFFFF is its memory window, not RAM (the RAM that
  // would be there is left out, as on a PC).
  const ram: RamRange[] = options.vgaHole
    ? [{ gpa: 0, size: VGA_WINDOW_GPA }, { gpa: VGA_WINDOW_END, size: lowEnd - VGA_WINDOW_END }]
    : [{ gpa: 0, size: lowEnd }];
  if (highBytes > 0) ram.push({ gpa: HIGH_RAM_GPA, size: highBytes });
  const e820: E820Entry[] = [
    { gpa: 0, size: EBDA_GPA, type: E820_RAM },
    { gpa: EBDA_GPA, size: LOW_MEMORY_END - EBDA_GPA, type: E820_RESERVED },
    { gpa: BIOS_AREA_GPA, size: HIGH_MEMORY_GPA - BIOS_AREA_GPA, type: E820_RESERVED },
    { gpa: HIGH_MEMORY_GPA, size: lowEnd - HIGH_MEMORY_GPA, type: E820_RAM },
  ];
  if (highBytes > 0) e820.push({ gpa: HIGH_RAM_GPA, size: highBytes, type: E820_RAM });
  return { ram, e820 };
}

/** A named area of the fixed memory plan, for overlap checks and documentation. */
export interface LayoutArea {
  name: string;
  gpa: number;
  size: number;
}

/** Every fixed area of the plan above (the test checks that none overlap). */
export const LAYOUT_AREAS: readonly LayoutArea[] = [
  { name: "IVT and BIOS data area", gpa: REAL_MODE_IVT_GPA, size: BIOS_DATA_AREA_END },
  { name: "boot GDT", gpa: BOOT_GDT_GPA, size: BOOT_GDT_MAX_BYTES },
  { name: "boot TSS", gpa: BOOT_TSS_GPA, size: BOOT_TSS_MAX_BYTES },
  { name: "PVH start info", gpa: PVH_INFO_GPA, size: PVH_INFO_MAX_BYTES },
  { name: "Multiboot info", gpa: MULTIBOOT_INFO_GPA, size: MULTIBOOT_INFO_MAX_BYTES },
  { name: "zero page", gpa: ZERO_PAGE_GPA, size: ZERO_PAGE_BYTES },
  { name: "boot stack", gpa: BOOT_STACK_GPA, size: BOOT_STACK_BYTES },
  { name: "PML4", gpa: PML4_GPA, size: PAGE_SIZE },
  { name: "PDPT", gpa: PDPT_GPA, size: PAGE_SIZE },
  { name: "page directories", gpa: PD_GPA, size: PD_COUNT * PAGE_SIZE },
  { name: "command line", gpa: CMDLINE_GPA, size: CMDLINE_MAX_BYTES },
  { name: "EBDA", gpa: EBDA_GPA, size: LOW_MEMORY_END - EBDA_GPA },
  { name: "BIOS area", gpa: BIOS_AREA_GPA, size: HIGH_MEMORY_GPA - BIOS_AREA_GPA },
  { name: "PCI MMIO", gpa: PCI_MMIO_BASE, size: PCI_MMIO_END - PCI_MMIO_BASE },
  { name: "IOAPIC", gpa: IOAPIC_GPA, size: IOAPIC_BYTES },
  { name: "LAPIC", gpa: LAPIC_GPA, size: LAPIC_BYTES },
  { name: "BIOS flash", gpa: BIOS_FLASH_GPA, size: BIOS_FLASH_BYTES },
];
