/**
 * What decoding a vmm(4) exit needs of the vCPU that ran (its `vm_exit`
 * buffer, register image and guest memory), what an exit leaves to finish
 * before the next VMM_IOC_RUN, and the failure report both exit decoders
 * (`exits.ts`, `mmio_exit.ts`) share.
 *
 * @module
 */

import type { GuestMemory } from "../../core/guest_memory.ts";
import type { Registers, SpecialRegisters, VcpuExit } from "../types.ts";
import * as abi from "./abi.ts";
import type { MmioEmulateResult } from "./mmio_emulate.ts";
import { fetchInstruction, type PagingMode } from "./page_walk.ts";
import type { StringIoInstruction } from "./string_io.ts";
import { cpuModeOf, hexBytes, X86_MAX_INSN_BYTES } from "./x86_decode.ts";

/** The vCPU side of exit decoding. */
export interface ExitContext {
  /** The `struct vm_exit` the last RUN filled. */
  readonly exit: Uint8Array;
  readonly exitView: DataView;
  readonly memory: GuestMemory;
  /** The GPRs of the exit's `vrs`. */
  getRegisters(): Registers;
  getSpecialRegisters(): SpecialRegisters;
  /** Replaces the GPRs of `vrs` only (the kernel reloads them itself on the next RUN). */
  setImageRegisters(regs: Registers): void;
  /** Sets RIP (and RAX) in `vrs` only: the cheap completion of a plain IO exit. */
  patchImage(rip: bigint, rax?: bigint): void;
  /** Replaces the GPRs and makes the next RUN write them with VMM_IOC_WRITEREGS. */
  setRegisters(regs: Registers): void;
  /** Whether `[gpa, gpa+length)` lies inside a VM_MEM_MMIO range. */
  isMmio(gpa: number, length: number): boolean;
  /** RIP's width in the current code mode. */
  ipMask(): bigint;
}

/** The pending completion of the last exit. */
export type Pending =
  | { kind: "none" }
  | { kind: "io"; dir: number; insnLength: number }
  | {
    kind: "string-io";
    insn: StringIoInstruction;
    count: number;
    gpas: number[];
    data: Uint8Array;
  }
  | { kind: "mmio-load"; data: Uint8Array; finish: (data: Uint8Array) => MmioEmulateResult }
  | { kind: "mmio-store"; result: MmioEmulateResult };

/** A decoded exit and what must happen before the next RUN. */
export interface ExitDecoding {
  exit: VcpuExit;
  pending: Pending;
}

/** The paging registers a guest page walk needs. */
export function pagingMode(sregs: SpecialRegisters): PagingMode {
  return { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer };
}

/** Up to `max` bytes at CS:RIP+`delta` through the guest page tables, or undefined. */
export function bytesAtRip(ctx: ExitContext, max: number, delta = 0n): Uint8Array | undefined {
  const regs = ctx.getRegisters();
  const sregs = ctx.getSpecialRegisters();
  const long = cpuModeOf(sregs, regs.rflags) === "long64";
  const base = long ? 0n : sregs.cs.base;
  const f = fetchInstruction(ctx.memory, pagingMode(sregs), base, regs.rip + delta, max);
  return "bytes" in f ? f.bytes : undefined;
}

/** " at RIP 0x...: 0f 01 ..." for failure reports. */
export function whereAmI(ctx: ExitContext): string {
  try {
    const regs = ctx.getRegisters();
    const bytes = bytesAtRip(ctx, X86_MAX_INSN_BYTES);
    return ` at RIP 0x${regs.rip.toString(16)}: ${bytes ? hexBytes(bytes) : "?"}`;
  } catch {
    return "";
  }
}

/** A failed exit named by its reason, with where the guest was. */
export function failExit(ctx: ExitContext, raw: number, why: string): ExitDecoding {
  return {
    exit: { kind: "fail", raw, reason: `${abi.vmmExitName(raw)}: ${why}${whereAmI(ctx)}` },
    pending: { kind: "none" },
  };
}
