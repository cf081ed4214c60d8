/**
 * Guest page-table walker: linear address -> guest-physical address.
 *
 * The OpenBSD back-end needs it to fetch the instruction at RIP when vmm(4)
 * reports an MMIO access without the instruction bytes. It covers every
 * paging form a guest can be in: paging off (identity), 32-bit two-level
 * paging (4 KiB pages, 4 MiB pages with CR4.PSE, PSE-36 high bits), PAE
 * three-level (4 KiB and 2 MiB pages) and 4-level long-mode paging (4 KiB,
 * 2 MiB and 1 GiB pages).
 *
 * Every page-table read goes through the {@link GuestMemory} gateway; a table
 * outside RAM is reported as a fault, never thrown. Checked: present bits,
 * R/W (for supervisor writes only when CR0.WP is set), U/S and NX (with
 * EFER.NXE). Not checked: reserved bits, SMEP/SMAP, protection keys. The
 * walk never sets accessed/dirty bits (it is a read-only look, like a
 * debugger's), and PAE PDPTEs are read from memory rather than from a cache
 * loaded at the last CR3 write.
 *
 * @example
 * ```ts
 * import { GuestMemory } from "../../core/guest_memory.ts";
 * import { translate } from "./page_walk.ts";
 * const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x10000 }]);
 * // Paging off: identity.
 * console.log(translate(mem, { cr0: 1n, cr3: 0n, cr4: 0n, efer: 0n }, 0x1234n, {})); // { gpa: 0x1234 }
 * ```
 * @module
 */

import { type GuestMemory, GuestMemoryError } from "../../core/guest_memory.ts";
import { X86_MAX_INSN_BYTES } from "./x86_decode.ts";

/** CR0.PG: paging enabled. */
export const X86_CR0_PG = 1n << 31n;
/** CR0.WP: supervisor writes honour read-only pages. */
export const X86_CR0_WP = 1n << 16n;
/** CR4.PSE: 4 MiB pages in 32-bit paging. */
export const X86_CR4_PSE = 1n << 4n;
/** CR4.PAE: 64-bit page-table entries (PAE and long mode). */
export const X86_CR4_PAE = 1n << 5n;
/** CR4.LA57: 5-level paging. */
export const X86_CR4_LA57 = 1n << 12n;
/** EFER.LMA: long mode active. */
export const X86_EFER_LMA = 1n << 10n;
/** EFER.NXE: the NX bit (63) of 64-bit entries is honoured. */
export const X86_EFER_NXE = 1n << 11n;

const PTE_P = 1 << 0;
const PTE_RW = 1 << 1;
const PTE_US = 1 << 2;
const PTE_PS = 1 << 7;
/** NX is bit 63: bit 31 of an entry's high word. */
const PTE_HI_NX = 0x80000000;
/** Physical-address bits 32..51 of a 64-bit entry, in its high word. */
const PTE_HI_ADDR = 0x000fffff;

const PAGE_4K = 0x1000;

/** The control registers that decide how a linear address is translated. */
export interface PagingMode {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

/** What kind of access is being translated (defaults: supervisor data read). */
export interface TranslateAccess {
  write?: boolean;
  user?: boolean;
  fetch?: boolean;
}

/** A successful translation, or a guest fault described in one line. */
export type TranslateResult = { gpa: number } | { fault: string };

/**
 * Bytes fetched at a linear address. When the fetch stopped early (the next
 * page is not present or not in RAM), `fault` says why and `bytes` holds what
 * came before it (so `bytes.length` is the fault position); the decoder then
 * decides whether those bytes were enough. With no bytes at all the result
 * is `{ fault }` alone.
 */
export type FetchResult = { bytes: Uint8Array; fault?: string } | { fault: string };

function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

/** The walk's own failure, carried out of the helpers. */
class WalkFault {
  constructor(readonly message: string) {}
}

/** Reads a 32-bit entry through the gateway; outside RAM becomes a fault. */
function readEntry32(mem: GuestMemory, gpa: number, what: string): number {
  try {
    return mem.readU32(gpa);
  } catch (e) {
    if (e instanceof GuestMemoryError) {
      throw new WalkFault(`${what} at ${hex(gpa)} is outside guest RAM`);
    }
    throw e;
  }
}

/** A 64-bit entry as two 32-bit halves (no bigint on the hot path). */
function readEntry64(mem: GuestMemory, gpa: number, what: string): [number, number] {
  if (!mem.contains(gpa, 8)) throw new WalkFault(`${what} at ${hex(gpa)} is outside guest RAM`);
  return [readEntry32(mem, gpa, what), readEntry32(mem, gpa + 4, what)];
}

/** Bits 12..51 of a 64-bit entry as a number. */
function entryFrame(lo: number, hi: number): number {
  return (hi & PTE_HI_ADDR) * 2 ** 32 + ((lo & ~0xfff) >>> 0);
}

/** Accumulated permissions along a walk: every level must allow the access. */
interface Rights {
  writable: boolean;
  user: boolean;
  noExecute: boolean;
}

function checkRights(
  rights: Rights,
  mode: PagingMode,
  access: TranslateAccess,
  linear: bigint,
): void {
  if (access.user && !rights.user) {
    throw new WalkFault(`user access to supervisor page at linear ${hex(linear)}`);
  }
  if (access.write && !rights.writable && (access.user || (mode.cr0 & X86_CR0_WP) !== 0n)) {
    throw new WalkFault(`write to read-only page at linear ${hex(linear)}`);
  }
  if (access.fetch && rights.noExecute) {
    throw new WalkFault(`instruction fetch from no-execute page at linear ${hex(linear)}`);
  }
}

function walk32(
  mem: GuestMemory,
  mode: PagingMode,
  linear: bigint,
  access: TranslateAccess,
): number {
  const la = Number(linear & 0xffffffffn);
  const pdBase = Number(mode.cr3 & 0xfffff000n);
  const pdeAt = pdBase + (la >>> 22) * 4;
  const pde = readEntry32(mem, pdeAt, "page directory entry");
  if ((pde & PTE_P) === 0) {
    throw new WalkFault(`page directory entry ${hex(pde >>> 0)} at ${hex(pdeAt)} is not present`);
  }
  const rights: Rights = {
    writable: (pde & PTE_RW) !== 0,
    user: (pde & PTE_US) !== 0,
    noExecute: false,
  };
  if ((pde & PTE_PS) !== 0 && (mode.cr4 & X86_CR4_PSE) !== 0n) {
    checkRights(rights, mode, access, linear);
    // 4 MiB page; PSE-36 puts physical bits 32..39 in PDE bits 13..20.
    const base = ((pde & 0xffc00000) >>> 0) + ((pde >>> 13) & 0xff) * 2 ** 32;
    return base + (la & 0x3fffff);
  }
  const pteAt = ((pde & 0xfffff000) >>> 0) + ((la >>> 12) & 0x3ff) * 4;
  const pte = readEntry32(mem, pteAt, "page table entry");
  if ((pte & PTE_P) === 0) {
    throw new WalkFault(`page table entry ${hex(pte >>> 0)} at ${hex(pteAt)} is not present`);
  }
  rights.writable &&= (pte & PTE_RW) !== 0;
  rights.user &&= (pte & PTE_US) !== 0;
  checkRights(rights, mode, access, linear);
  return ((pte & 0xfffff000) >>> 0) + (la & 0xfff);
}

/** Names of the 64-bit levels, top first, with the linear-address bit each indexes from. */
const LEVELS_4 = [
  { name: "PML4 entry", shift: 39 },
  { name: "page directory pointer entry", shift: 30 },
  { name: "page directory entry", shift: 21 },
  { name: "page table entry", shift: 12 },
] as const;

/** PAE and 4-level paging: 64-bit entries, 512 per table (4 in the PAE PDPT). */
function walk64(
  mem: GuestMemory,
  mode: PagingMode,
  linear: bigint,
  access: TranslateAccess,
  longMode: boolean,
): number {
  const nxe = (mode.efer & X86_EFER_NXE) !== 0n;
  const rights: Rights = { writable: true, user: true, noExecute: false };
  let levels: readonly { name: string; shift: number }[];
  let table: number;
  if (longMode) {
    // Bits 63..47 must all equal bit 47.
    const top = linear >> 47n;
    if (top !== 0n && top !== 0x1ffffn) {
      throw new WalkFault(`linear address ${hex(linear)} is not canonical`);
    }
    levels = LEVELS_4;
    table = Number(mode.cr3 & 0x000ffffffffff000n);
  } else {
    linear &= 0xffffffffn;
    levels = LEVELS_4.slice(1);
    table = Number(mode.cr3 & 0xffffffe0n);
  }
  for (let i = 0; i < levels.length; i++) {
    const { name, shift } = levels[i];
    const index = Number((linear >> BigInt(shift)) & 0x1ffn);
    const at = table + index * 8;
    const [lo, hi] = readEntry64(mem, at, name);
    if ((lo & PTE_P) === 0) {
      throw new WalkFault(`${name} at ${hex(at)} is not present`);
    }
    // The PAE PDPTE carries no R/W, U/S or NX bits.
    const paePdpte = !longMode && i === 0;
    if (!paePdpte) {
      rights.writable &&= (lo & PTE_RW) !== 0;
      rights.user &&= (lo & PTE_US) !== 0;
      if (nxe && (hi & PTE_HI_NX) !== 0) rights.noExecute = true;
    }
    const frame = entryFrame(lo, hi);
    const last = i === levels.length - 1;
    // Large pages: 1 GiB at the PDPTE (long mode only), 2 MiB at the PDE.
    const large = !last && !paePdpte && (lo & PTE_PS) !== 0 && (shift === 21 || shift === 30);
    if (last || large) {
      checkRights(rights, mode, access, linear);
      const pageBytes = 2 ** shift;
      const base = frame - (frame % pageBytes);
      return base + Number(linear & BigInt(pageBytes - 1));
    }
    table = frame;
  }
  throw new Error("unreachable: page walk ran past the last level");
}

/**
 * Translates `linear` to a guest-physical address under `mode`.
 *
 * Paging off (CR0.PG clear, including real mode): identity, truncated to 32
 * bits. Returns `{ fault }` with a one-line reason for a non-present entry, a
 * table outside RAM, a permission failure, a non-canonical address or an
 * unsupported paging mode (5-level); never throws for anything the guest
 * controls.
 */
export function translate(
  mem: GuestMemory,
  mode: PagingMode,
  linear: bigint,
  access: TranslateAccess = {},
): TranslateResult {
  linear = BigInt.asUintN(64, linear);
  try {
    if ((mode.cr0 & X86_CR0_PG) === 0n) return { gpa: Number(linear & 0xffffffffn) };
    if ((mode.cr4 & X86_CR4_PAE) === 0n) return { gpa: walk32(mem, mode, linear, access) };
    const longMode = (mode.efer & X86_EFER_LMA) !== 0n;
    if (longMode && (mode.cr4 & X86_CR4_LA57) !== 0n) {
      return { fault: "5-level paging (CR4.LA57) is not supported" };
    }
    return { gpa: walk64(mem, mode, linear, access, longMode) };
  } catch (e) {
    if (e instanceof WalkFault) return { fault: e.message };
    throw e;
  }
}

/**
 * Fetches up to `maxBytes` instruction bytes at linear `csBase + rip`
 * (wrapping at 32 bits unless EFER.LMA is set; in 64-bit mode pass
 * `csBase = 0n`), translating each page separately so an instruction that
 * crosses a page boundary is read from both frames.
 *
 * Stops early at the first byte that cannot be fetched (page fault, or a
 * frame outside RAM): the result then carries the bytes before it plus
 * `fault`. With no byte fetchable the result is `{ fault }`.
 */
export function fetchInstruction(
  mem: GuestMemory,
  mode: PagingMode,
  csBase: bigint,
  rip: bigint,
  maxBytes = X86_MAX_INSN_BYTES,
): FetchResult {
  const addressBits = (mode.efer & X86_EFER_LMA) !== 0n ? 64 : 32;
  const start = BigInt.asUintN(addressBits, csBase + rip);
  const out = new Uint8Array(maxBytes);
  let count = 0;
  let fault: string | undefined;
  while (count < maxBytes) {
    const linear = BigInt.asUintN(addressBits, start + BigInt(count));
    const t = translate(mem, mode, linear, { fetch: true });
    if ("fault" in t) {
      fault = `instruction fetch at linear ${hex(linear)}: ${t.fault}`;
      break;
    }
    // Bytes up to the end of this 4 KiB page share the translation.
    const inPage = Math.min(maxBytes - count, PAGE_4K - (t.gpa % PAGE_4K));
    let got = 0;
    while (got < inPage && mem.contains(t.gpa + got, 1)) {
      out[count + got] = mem.readU8(t.gpa + got);
      got++;
    }
    count += got;
    if (got < inPage) {
      fault = `instruction fetch at guest-physical ${hex(t.gpa + got)} is outside guest RAM`;
      break;
    }
  }
  if (count === 0 && fault !== undefined) return { fault };
  const bytes = out.slice(0, count);
  return fault === undefined ? { bytes } : { bytes, fault };
}
