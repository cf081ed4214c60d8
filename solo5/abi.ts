/**
 * The Solo5 "hvt" tender ABI, version 2 (Solo5 v0.12), in numbers: the ELF
 * notes a unikernel carries, the application manifest, the boot-info
 * structure the tender writes, the hypercall argument structures and the
 * x86-64 memory map of the tender's low pages.
 *
 * Summary in our words: a unikernel is a static x86-64 ELF executable linked
 * at or above 1 MiB. It carries two notes named "Solo5": "ABI1" (target 1 =
 * hvt, version 2) and "MFT1" (its manifest: the block and network devices it
 * wants, by name). The tender loads it, builds identity page tables and a
 * GDT in the first pages, writes `hvt_boot_info` (memory size, end of the
 * kernel, TSC frequency, command line, manifest) at 64 KiB and enters the
 * kernel in 64-bit mode at CPL 0 with RDI pointing at the boot info. The
 * guest calls the tender with `outl` of a 32-bit guest-physical address of an
 * argument structure to port 0x500 + call number. v0.12 adds an optional
 * shared ring for network I/O, offered through `host_features`.
 *
 * All structures are little-endian x86-64 C layouts. The offsets were
 * compared with Solo5 v0.12.1's headers compiled by gcc, and
 * solo5/abi_test.ts keeps them equal to the layouts of the test
 * unikernels' own header (solo5/tests/guests/hvt_guest.h).
 *
 * @module
 */

/** ABI version this tender implements. */
export const HVT_ABI_VERSION = 2;
/** `abi_target` value of the hvt target. */
export const HVT_ABI_TARGET = 1;
/** Lowest address a unikernel segment may occupy. */
export const HVT_GUEST_MIN_BASE = 0x100000;
/** Hypercall n is an `outl` to this port + n. */
export const HVT_HYPERCALL_PIO_BASE = 0x500;
/** The guest's "please look at the ring" doorbell (an `outl` of the ring id). */
export const HVT_RING_KICK_PIO_BASE = 0x600;
/** Most bytes of command line, terminator included. */
export const HVT_CMDLINE_SIZE = 8192;
/** Bytes a non-null halt cookie must make readable. */
export const HVT_HALT_COOKIE_MAX = 512;
/** `host_features` bit: the shared network ring is offered. */
export const HVT_FEATURE_RING_IO = 1;

/** Hypercall numbers (port offsets). */
export const HVT_HYPERCALL = {
  WALLTIME: 1,
  PUTS: 2,
  POLL: 3,
  BLOCK_WRITE: 4,
  BLOCK_READ: 5,
  NET_WRITE: 6,
  NET_READ: 7,
  HALT: 8,
} as const;
/** One above the highest hypercall number. */
export const HVT_HYPERCALL_MAX = 9;

/** Names by number, for messages. */
export const HYPERCALL_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(HVT_HYPERCALL).map(([k, v]) => [v, k]),
);

/** Results a hypercall returns in its `ret` field (`solo5_result_t`). */
export const SOLO5_R_OK = 0;
/** Nothing available now (network read). */
export const SOLO5_R_AGAIN = 1;
/** Bad handle, offset or length. */
export const SOLO5_R_EINVAL = 2;
/** Host-side failure. */
export const SOLO5_R_EUNSPEC = 3;
/** The status `solo5_abort()` exits with. */
export const SOLO5_EXIT_ABORT = 255;

/** ELF note name of Solo5-owned notes. */
export { SOLO5_NOTE_NAME } from "../loaders/detect.ts";
/** Note type "ABI1" (little-endian ASCII). */
export const ABI1_NOTE_TYPE = 0x31494241;
/** Note type "MFT1". */
export const MFT1_NOTE_TYPE = 0x3154464d;
/** Internal alignment of the ABI1 descriptor (struct abi1_info: 4 u32). */
export const ABI1_NOTE_ALIGN = 4;
/** Internal alignment of the MFT1 descriptor (struct mft holds 8-byte members). */
export const MFT1_NOTE_ALIGN = 8;
/** Bytes of a Solo5 note header: namesz, descsz, type, "Solo5\0" padded to 8. */
export const SOLO5_NHDR_BYTES = 20;
/** Bytes of struct abi1_info. */
export const ABI1_INFO_BYTES = 16;

/** Manifest format version. */
export const MFT_VERSION = 1;
/** Manifest entry types. */
export const MFT_DEV_BLOCK_BASIC = 1;
/** A basic network device. */
export const MFT_DEV_NET_BASIC = 2;
/** The mandatory first entry's type (1 << 30), with an empty name. */
export const MFT_RESERVED_FIRST = 0x40000000;
/** Most manifest entries (one bit each in a 64-bit handle set). */
export const MFT_MAX_ENTRIES = 64;
/** Bytes of an entry name, terminator included. */
export const MFT_NAME_SIZE = 68;
/** Bytes of struct mft's header (version, entries). */
export const MFT_HEADER_BYTES = 8;
/** Bytes of struct mft_entry. */
export const MFT_ENTRY_BYTES = 104;
/** Offsets inside struct mft_entry. */
export const MFT_ENTRY = {
  NAME: 0,
  TYPE: 68,
  /** block_basic.capacity (u64). */
  BLOCK_CAPACITY: 72,
  /** block_basic.block_size (u16). */
  BLOCK_SIZE: 80,
  /** net_basic.mac[6]. */
  NET_MAC: 72,
  /** net_basic.mtu (u16). */
  NET_MTU: 78,
  /** The tender-private backing (host fd or pointer); zeroed for the guest. */
  BACKING: 88,
  /** bool attached. */
  ATTACHED: 96,
} as const;

/** struct hvt_boot_info offsets (56 bytes). */
export const BOOT_INFO = {
  MEM_SIZE: 0,
  KERNEL_END: 8,
  CPU_CYCLE_FREQ: 16,
  CMDLINE: 24,
  MFT: 32,
  HOST_FEATURES: 40,
  GUEST_FEATURES: 44,
  NET_RING: 48,
  BYTES: 56,
} as const;

/** Argument structures: field offsets and total sizes. */
export const HC = {
  walltime: { NSECS: 0, BYTES: 8 },
  puts: { DATA: 0, LEN: 8, BYTES: 16 },
  /** Block read and write share a layout. */
  block: { HANDLE: 0, OFFSET: 8, DATA: 16, LEN: 24, RET: 32, BYTES: 40 },
  /** Network read and write share a layout. */
  net: { HANDLE: 0, DATA: 8, LEN: 16, RET: 24, BYTES: 32 },
  poll: { TIMEOUT_NSECS: 0, READY_SET: 8, RET: 16, BYTES: 24 },
  halt: { COOKIE: 0, EXIT_STATUS: 8, BYTES: 16 },
} as const;

/** The shared network ring (hvt_ring.h). */
export const HVT_RING = {
  /** Slots in each array (a power of two). */
  SIZE: 1024,
  /** Guest-written: entries produced. */
  ENT_TAIL: 0,
  /** Guest-written: commits consumed. */
  COM_HEAD: 4,
  /** Host-written: entries consumed. */
  ENT_HEAD: 64,
  /** Host-written: commits produced. */
  COM_TAIL: 68,
  /** Host-written: 1 when the guest must ring the doorbell after submitting. */
  NEEDS_KICK: 72,
  ENTRIES: 128,
  ENTRY_BYTES: 32,
  /** Entry fields. */
  E_OPERATION: 0,
  E_HANDLE: 4,
  E_DATA: 8,
  E_LEN: 16,
  E_ID: 20,
  COMMIT_BYTES: 16,
  /** Commit fields. */
  C_ID: 0,
  C_RET: 4,
  C_LEN: 8,
  /** Ring operations. */
  OP_NET_WRITE: 1,
  OP_NET_READ: 2,
} as const;
/** Offset of the commit array. */
export const HVT_RING_COMMITS = HVT_RING.ENTRIES + HVT_RING.SIZE * HVT_RING.ENTRY_BYTES;
/** Bytes of struct hvt_ring. */
export const HVT_RING_BYTES = HVT_RING_COMMITS + HVT_RING.SIZE * HVT_RING.COMMIT_BYTES;

/** The tender's low pages (x86-64). Page 0 stays unmapped to catch NULL. */
export const X86_GDT_BASE = 0x1000;
/** PML4 (CR3). */
export const X86_PML4_BASE = 0x2000;
/** The one PDPT. */
export const X86_PDPTE_BASE = 0x3000;
/** Four page directories (up to 4 GiB). */
export const X86_PDE_BASE = 0x4000;
/** The page table of the first 2 MiB (4 KiB pages). */
export const X86_PT0E_BASE = 0x8000;
/** Where hvt_boot_info goes; pages from here to 1 MiB are mapped read-only. */
export const X86_BOOT_INFO_BASE = 0x10000;
/** Guest memory comes in 2 MiB pages. */
export const X86_GUEST_PAGE_SIZE = 0x200000;
/** Code selector (GDT slot 1) and data selector (slot 2). */
export const X86_GDT_CODE_SELECTOR = 0x08;
/** Data selector. */
export const X86_GDT_DATA_SELECTOR = 0x10;
/** GDTR limit: three 8-byte descriptors. */
export const X86_GDTR_LIMIT = 3 * 8 - 1;

/** CR0 the ABI promises: PE, NE, WP, PG. */
export const X86_CR0_INIT = 0x80010021n;
/** CR4: PAE, OSFXSR, OSXMMEXCPT. */
export const X86_CR4_INIT = 0x620n;
/** EFER: LME, LMA. */
export const X86_EFER_INIT = 0x500n;

/** Trap frame the bindings pass as the abort cookie (struct x86_trap_regs). */
export const X86_TRAP_REGS = ["cr2", "ec", "rip", "cs", "rflags", "rsp", "ss"] as const;
