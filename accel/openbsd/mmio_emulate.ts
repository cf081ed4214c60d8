/**
 * The pure MMIO step of the OpenBSD back-end: decode the instruction that
 * faulted, do the access on the MMIO bus, and return the registers the guest
 * must see afterwards (destination written at the right width and extension,
 * RDI moved for STOS, RIP past the instruction).
 *
 * vmm(4) writes every GPR (RIP included) back from the `vrs` the back-end
 * passes to the next VMM_IOC_RUN after an EPT exit, so the back-end only
 * stores the returned registers there. Anything the decoder does not know
 * fails closed with the RIP and the bytes in the message.
 *
 * @example
 * ```ts
 * import { emulateMmio } from "./mmio_emulate.ts";
 * import type { Registers } from "../types.ts";
 * function example(regs: Registers) {
 *   const r = emulateMmio({
 *     bytes: new Uint8Array([0x8b, 0x03]), // mov eax, [rbx]
 *     cpuMode: "long64",
 *     regs,
 *     gpa: 0xfee00020,
 *     mmioRead: (_gpa, data) => data.set([0x78, 0x56, 0x34, 0x12]),
 *     mmioWrite: () => {},
 *   });
 *   // r.regs.rax === 0x12345678n, r.regs.rip === regs.rip + 2n
 *   return "error" in r ? r.error : r.regs;
 * }
 * console.log(example);
 * ```
 * @module
 */

import { GPR_FIELDS, type Registers } from "../types.ts";
import {
  type AddressSize,
  type CpuMode,
  type DecodedMmio,
  decodeMmioInstruction,
  hexBytes,
  type MmioWidth,
  X86_MAX_INSN_BYTES,
} from "./x86_decode.ts";

/** RFLAGS.DF: string instructions move down. */
export const X86_RFLAGS_DF = 1n << 10n;

/** Re-exported for callers that index registers by number. */
export { GPR_FIELDS };

/** What {@link emulateMmio} needs. */
export interface MmioEmulateInput {
  /** Instruction bytes at RIP (up to 15; extra bytes are ignored). */
  bytes: Uint8Array;
  cpuMode: CpuMode;
  regs: Registers;
  /** Guest-physical address of the access, as the exit reported it. */
  gpa: number;
  /** Fills `data` (the access width) with what the device returns at `gpa`. */
  mmioRead(gpa: number, data: Uint8Array): void;
  /** Writes `data` (the access width) to the device at `gpa`. */
  mmioWrite(gpa: number, data: Uint8Array): void;
  /** Instruction length the hypervisor reported (VMX), cross-checked against the decode. */
  insnLength?: number;
  /**
   * Why fetching stopped before 15 bytes (from `fetchInstruction`); reported
   * instead of "truncated" when the decoder needed the missing bytes.
   */
  fetchFault?: string;
}

/** The registers after the access, or why the access was refused. */
export type MmioEmulateResult = { regs: Registers; decoded: DecodedMmio } | { error: string };

const MASK64 = (1n << 64n) - 1n;

function widthMask(bytes: number): bigint {
  return (1n << BigInt(bytes * 8)) - 1n;
}

/** Little-endian bytes of the low `width` bytes of `value`. */
function toBytes(value: bigint, width: MmioWidth): Uint8Array {
  const out = new Uint8Array(width);
  for (let i = 0; i < width; i++) out[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return out;
}

function fromBytes(data: Uint8Array): bigint {
  let value = 0n;
  for (let i = data.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[i]);
  return value;
}

/**
 * Writes `value` (already `width` bytes wide) into a 64-bit register the way
 * a register write of that width does: 1/2 bytes merge, 4 bytes clear the
 * upper half, 8 bytes replace.
 */
function writeWidth(old: bigint, value: bigint, width: MmioWidth, high8 = false): bigint {
  if (high8) return (old & ~0xff00n & MASK64) | ((value & 0xffn) << 8n);
  switch (width) {
    case 1:
    case 2:
      return (old & ~widthMask(width) & MASK64) | (value & widthMask(width));
    case 4:
      return value & 0xffffffffn;
    case 8:
      return value & MASK64;
  }
}

function ipMask(cpuMode: CpuMode): bigint {
  switch (cpuMode) {
    case "real":
    case "protected16":
      return 0xffffn;
    case "protected32":
      return 0xffffffffn;
    case "long64":
      return MASK64;
  }
}

/** Moves DI/EDI/RDI by `delta` at `addressSize` (16-bit wraps and keeps the rest). */
function stepIndex(old: bigint, delta: bigint, addressSize: AddressSize): bigint {
  const mask = widthMask(addressSize);
  const moved = (old + delta) & mask;
  return addressSize === 2 ? (old & ~mask & MASK64) | moved : moved;
}

/**
 * Decodes `input.bytes`, performs the access through `mmioRead`/`mmioWrite`
 * at `input.gpa`, and returns the updated registers (a new object; the input
 * is not modified) and the decoded instruction. Fails closed, without
 * touching the device, on an unsupported instruction or when `insnLength`
 * disagrees with the decoded length.
 */
export function emulateMmio(input: MmioEmulateInput): MmioEmulateResult {
  const { regs, cpuMode } = input;
  const at = `RIP 0x${regs.rip.toString(16)}`;
  const decoded = decodeMmioInstruction(input.bytes, { cpuMode });
  if ("error" in decoded) {
    const shown = hexBytes(input.bytes.subarray(0, X86_MAX_INSN_BYTES));
    if (decoded.truncated && input.fetchFault !== undefined) {
      return {
        error: `Cannot fetch the MMIO instruction at ${at} past "${shown}": ${input.fetchFault}`,
      };
    }
    return { error: `Unsupported MMIO instruction at ${at}: ${shown} (${decoded.reason})` };
  }
  const insn = hexBytes(input.bytes.subarray(0, decoded.length));
  if (input.insnLength !== undefined && input.insnLength !== decoded.length) {
    return {
      error: `MMIO instruction "${insn}" at ${at} decodes to ${decoded.length} bytes ` +
        `but the hypervisor reported ${input.insnLength}`,
    };
  }

  const out: Registers = { ...regs };
  if (decoded.op === "load") {
    const data = new Uint8Array(decoded.width);
    input.mmioRead(input.gpa, data);
    let value = fromBytes(data);
    const { dest } = decoded;
    if (dest.extend === "sign") {
      value = BigInt.asUintN(64, BigInt.asIntN(decoded.width * 8, value));
    }
    value &= widthMask(dest.width);
    const field = GPR_FIELDS[dest.reg];
    out[field] = writeWidth(out[field], value, dest.width, dest.high8);
  } else {
    const { source } = decoded;
    let value: bigint;
    if ("imm" in source) {
      value = source.imm;
    } else if ("stos" in source) {
      value = regs.rax;
    } else {
      const raw = regs[GPR_FIELDS[source.reg]];
      value = source.high8 ? raw >> 8n : raw;
    }
    input.mmioWrite(input.gpa, toBytes(value, decoded.width));
    if ("stos" in source) {
      const step = BigInt(decoded.width);
      const delta = (regs.rflags & X86_RFLAGS_DF) !== 0n ? -step : step;
      out.rdi = stepIndex(regs.rdi, delta, source.addressSize);
    }
  }
  // IP/EIP wrap at the code size, and a 16/32-bit IP write clears the bits above.
  out.rip = (regs.rip + BigInt(decoded.length)) & ipMask(cpuMode);
  return { regs: out, decoded };
}
