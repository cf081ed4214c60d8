/**
 * String port I/O (INS/OUTS, with or without REP) for the OpenBSD back-end.
 *
 * vmm(4) reports `rep outsb` and friends as an ordinary IO exit with
 * `vei_string`/`vei_rep` set and does nothing else: the memory side (DS:rSI
 * for OUTS, ES:rDI for INS), the index and count registers and RIP are left
 * to userspace (vmd refuses such exits). This module decodes the prefixes
 * that matter (operand size, address size, segment override, REP) and plans
 * one batch of elements: their guest-physical addresses, found through the
 * guest page tables one element at a time, so a string that crosses a page
 * boundary is read from both frames.
 *
 * @example
 * ```ts
 * import { decodeStringIo } from "./string_io.ts";
 * decodeStringIo(new Uint8Array([0xf3, 0x6e]), "protected32");
 * // { length: 2, op: "outs", width: 1, addressSize: 4, segment: "ds", rep: true }
 * ```
 * @module
 */

import type { GuestMemory } from "../../core/guest_memory.ts";
import type { Registers, SpecialRegisters } from "../types.ts";
import { type PagingMode, translate } from "./page_walk.ts";
import {
  type AddressSize,
  type CpuMode,
  hexBytes,
  type SegmentOverride,
  X86_MAX_INSN_BYTES,
} from "./x86_decode.ts";

/** A decoded INS/OUTS instruction. */
export interface StringIoInstruction {
  /** Bytes the instruction occupies, prefixes included. */
  length: number;
  op: "ins" | "outs";
  /** Element size in bytes. */
  width: 1 | 2 | 4;
  addressSize: AddressSize;
  /** The memory segment: ES for INS (fixed), DS or the override for OUTS. */
  segment: SegmentOverride;
  /** A REP (F3) or REPNE (F2) prefix: rCX counts the elements. */
  rep: boolean;
}

const SEGMENT_PREFIXES: Readonly<Record<number, SegmentOverride>> = {
  0x26: "es",
  0x2e: "cs",
  0x36: "ss",
  0x3e: "ds",
  0x64: "fs",
  0x65: "gs",
};

/** Most elements one exit moves (a page of bytes, as KVM batches string I/O). */
export const STRING_IO_MAX_BYTES = 4096;

/**
 * Decodes the INS/OUTS instruction at the start of `bytes`, or returns
 * `{ error }` naming the bytes when they are something else.
 */
export function decodeStringIo(
  bytes: Uint8Array,
  cpuMode: CpuMode,
): StringIoInstruction | { error: string } {
  const long = cpuMode === "long64";
  const default16 = cpuMode === "real" || cpuMode === "protected16";
  let opsize16 = false;
  let addrsize = false;
  let rep = false;
  let segment: SegmentOverride | undefined;
  for (let i = 0; i < Math.min(bytes.length, X86_MAX_INSN_BYTES); i++) {
    const b = bytes[i];
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addrsize = true;
    else if (b === 0xf2 || b === 0xf3) rep = true;
    else if (b in SEGMENT_PREFIXES) segment = SEGMENT_PREFIXES[b];
    else if (long && b >= 0x40 && b <= 0x4f) continue; // REX: no effect on INS/OUTS
    else if (b >= 0x6c && b <= 0x6f) {
      const width = (b & 1) === 0 ? 1 : default16 !== opsize16 ? 2 : 4;
      const addressSize: AddressSize = long ? (addrsize ? 4 : 8) : default16 !== addrsize ? 2 : 4;
      const op = b <= 0x6d ? "ins" : "outs";
      return {
        length: i + 1,
        op,
        width,
        addressSize,
        segment: op === "ins" ? "es" : segment ?? "ds",
        rep,
      };
    } else break;
  }
  return {
    error: `Expected an INS/OUTS instruction for a string I/O exit, found "${
      hexBytes(bytes.subarray(0, X86_MAX_INSN_BYTES))
    }"`,
  };
}

/** The elements of one batch: guest-physical address of every byte, in order. */
export interface StringIoBatch {
  /** Elements in this batch (at least 1). */
  count: number;
  /** Guest-physical address of each byte of the batch (`count * width` entries). */
  gpas: number[];
}

/** RFLAGS.DF: string instructions move down. */
const RFLAGS_DF = 1n << 10n;
const EFER_LMA = 1n << 10n;

/** The index register (rSI for OUTS, rDI for INS) at the address size. */
function indexRegister(insn: StringIoInstruction, regs: Registers): bigint {
  const value = insn.op === "ins" ? regs.rdi : regs.rsi;
  return BigInt.asUintN(insn.addressSize * 8, value);
}

/** rCX at the address size: the elements left (REP only). */
export function stringIoRemaining(insn: StringIoInstruction, regs: Registers): bigint {
  return insn.rep ? BigInt.asUintN(insn.addressSize * 8, regs.rcx) : 1n;
}

/**
 * Plans the next batch: up to `maxElements` elements (and at most
 * {@link STRING_IO_MAX_BYTES} bytes), each byte translated through the guest
 * page tables and checked to be RAM. Stops early at the first element that
 * cannot be reached; returns `{ error }` when not even the first can.
 */
export function planStringIo(
  memory: GuestMemory,
  insn: StringIoInstruction,
  regs: Registers,
  sregs: SpecialRegisters,
  maxElements: bigint,
  user: boolean,
): StringIoBatch | { error: string } {
  const long = (sregs.efer & EFER_LMA) !== 0n && sregs.cs.l;
  const segBase = long && insn.segment !== "fs" && insn.segment !== "gs"
    ? 0n
    : sregs[insn.segment].base;
  const mode: PagingMode = { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer };
  const step = (regs.rflags & RFLAGS_DF) !== 0n ? -BigInt(insn.width) : BigInt(insn.width);
  const limit = Math.min(Number(maxElements), Math.floor(STRING_IO_MAX_BYTES / insn.width));
  const start = indexRegister(insn, regs);
  const gpas: number[] = [];
  let count = 0;
  let error: string | undefined;
  outer: for (; count < limit; count++) {
    const offset = BigInt.asUintN(insn.addressSize * 8, start + BigInt(count) * step);
    const element: number[] = [];
    for (let b = 0; b < insn.width; b++) {
      // Bytes of one element are consecutive offsets (wrapping at the address size).
      const byteOffset = BigInt.asUintN(insn.addressSize * 8, offset + BigInt(b));
      const linear = BigInt.asUintN(long ? 64 : 32, segBase + byteOffset);
      const t = translate(memory, mode, linear, { write: insn.op === "ins", user });
      if ("fault" in t) {
        error = `string I/O at linear 0x${linear.toString(16)}: ${t.fault}`;
        break outer;
      }
      if (!memory.contains(t.gpa, 1)) {
        error = `string I/O at guest-physical 0x${t.gpa.toString(16)} is outside guest RAM`;
        break outer;
      }
      element.push(t.gpa);
    }
    gpas.push(...element);
  }
  if (count === 0) return { error: error ?? "string I/O with no elements" };
  return { count, gpas };
}

/**
 * The registers after `count` elements: rSI or rDI moved by `count * width`
 * (down when DF is set), rCX reduced by `count` for REP, both written at the
 * address size (a 16-bit write keeps the upper bits, a 32-bit write clears
 * them), and RIP past the instruction once the string is done.
 */
export function advanceStringIo(
  insn: StringIoInstruction,
  regs: Registers,
  count: number,
  ipMask: bigint,
): Registers {
  const out = { ...regs };
  const bits = insn.addressSize * 8;
  const write = (old: bigint, value: bigint): bigint => {
    const v = BigInt.asUintN(bits, value);
    return insn.addressSize === 2 ? (old & ~0xffffn & 0xffffffffffffffffn) | v : v;
  };
  const delta = BigInt(count * insn.width) *
    ((regs.rflags & RFLAGS_DF) !== 0n ? -1n : 1n);
  if (insn.op === "ins") out.rdi = write(regs.rdi, regs.rdi + delta);
  else out.rsi = write(regs.rsi, regs.rsi + delta);
  let done = true;
  if (insn.rep) {
    out.rcx = write(regs.rcx, regs.rcx - BigInt(count));
    done = BigInt.asUintN(bits, out.rcx) === 0n;
  }
  if (done) out.rip = (regs.rip + BigInt(insn.length)) & ipMask;
  return out;
}
