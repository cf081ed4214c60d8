/**
 * Decoder for the few x86 instructions a guest uses to touch MMIO.
 *
 * OpenBSD vmm(4) reports an MMIO access only as an EPT violation / nested
 * page fault: the guest-physical address is known, but the access width, its
 * direction and the register involved must come from the instruction at RIP.
 * This module decodes exactly the MOV / MOVZX / MOVSX / STOS forms that can
 * reach memory (opcodes 88 89 8A 8B A0-A3 C6/0 C7/0 0F B6 0F B7 0F BE 0F BF
 * AA AB) and fails closed on everything else, naming the bytes, so an
 * unknown instruction stops the VM with a clear message instead of being
 * emulated wrongly.
 *
 * Every decode also returns the memory operand (base, index, scale,
 * displacement, RIP-relative, segment): vmm(4)'s exit does not carry the
 * faulting guest-physical address, so the back-end computes the linear
 * address with {@link effectiveAddress} and translates it through the guest
 * page tables, as vmd does.
 *
 * @example
 * ```ts
 * import { decodeMmioInstruction } from "./x86_decode.ts";
 * // mov eax, [rbx+0x10] in 64-bit mode
 * const d = decodeMmioInstruction(new Uint8Array([0x8b, 0x43, 0x10]), { cpuMode: "long64" });
 * // d = { length: 3, op: "load", width: 4, dest: { reg: 0, width: 4, extend: "zero" }, ... }
 * console.log(d);
 * ```
 * @module
 */

import { GPR_FIELDS, type Registers, type SpecialRegisters } from "../types.ts";

/** The CPU's code mode at the faulting instruction (from CR0.PE, EFER.LMA, CS.L and CS.D). */
export type CpuMode = "real" | "protected16" | "protected32" | "long64";

/** Access width in bytes. */
export type MmioWidth = 1 | 2 | 4 | 8;

/** Address size in bytes (16-, 32- or 64-bit addressing). */
export type AddressSize = 2 | 4 | 8;

/** Segment named by an override prefix. */
export type SegmentOverride = "es" | "cs" | "ss" | "ds" | "fs" | "gs";

/** Architectural limit on the length of one x86 instruction. */
export const X86_MAX_INSN_BYTES = 15;

/**
 * Where a load lands. `reg` is the GPR number (0 RAX, 1 RCX, 2 RDX, 3 RBX,
 * 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15); with `high8` it names AH/CH/DH/BH
 * (bits 8..15 of register `reg` 0..3).
 *
 * `extend` says how the `width`-byte value read from the device grows to
 * `width` (the destination's width) and how it lands in the 64-bit register:
 * - `"none-merge"`: plain MOV into an 8- or 16-bit register; the other bits
 *   of the register are kept.
 * - `"zero"`: zero-extend (MOVZX, and plain MOV into a 32- or 64-bit register).
 * - `"sign"`: sign-extend (MOVSX).
 * After extension, a 1- or 2-byte destination merges into the register, a
 * 4-byte destination clears bits 32..63 (as a 32-bit register write does in
 * 64-bit mode; outside 64-bit mode those bits are invisible and we clear them
 * too, like KVM's emulator), and an 8-byte destination replaces it.
 */
export interface LoadDestination {
  reg: number;
  width: MmioWidth;
  extend: "zero" | "sign" | "none-merge";
  high8?: boolean;
}

/** The value a store writes: a register (low `width` bytes, or AH/CH/DH/BH with `high8`). */
export interface RegisterSource {
  reg: number;
  width: MmioWidth;
  high8?: boolean;
}

/** The value a store writes: an immediate, already extended to the access width (unsigned). */
export interface ImmediateSource {
  imm: bigint;
}

/**
 * STOS: stores AL/AX/EAX/RAX (register 0, access width) and then moves
 * RDI/EDI/DI (per `addressSize`) by the width, down when RFLAGS.DF is set.
 */
export interface StosSource {
  stos: true;
  addressSize: AddressSize;
}

/** What a store writes. */
export type StoreSource = RegisterSource | ImmediateSource | StosSource;

/**
 * The memory operand of a decoded instruction: the address is
 * `segment base + base + index * scale + disp` (+ the address of the next
 * instruction when `ripRelative`), computed at `addressSize`. Register
 * numbers are GPR numbers (0 RAX ... 15 R15). `segment` is the override when
 * there was one, else the default (SS for an rBP/rSP base, ES for STOS).
 */
export interface MemoryOperand {
  base?: number;
  index?: number;
  /** 1, 2, 4 or 8. */
  scale: number;
  /** Displacement (or moffs), sign-extended to 64 bits, as an unsigned bigint. */
  disp: bigint;
  /** 64-bit mode `[rip + disp32]`: relative to the next instruction. */
  ripRelative?: boolean;
  segment: SegmentOverride;
}

/** Fields every decoded MMIO instruction has. */
interface DecodedCommon {
  /** Bytes the instruction occupies (prefixes included): RIP advances by this. */
  length: number;
  /** Bytes moved to or from the device. */
  width: MmioWidth;
  /** Address size in effect (after a 67 prefix). */
  addressSize: AddressSize;
  /** The segment override prefix, when there was one (recorded, not used). */
  segment?: SegmentOverride;
  /** For logs: "mov", "movzx", "movsx" or "stos". */
  mnemonic: "mov" | "movzx" | "movsx" | "stos";
  /** Where the access goes (see {@link effectiveAddress}). */
  mem: MemoryOperand;
}

/** A decoded device read. */
export interface DecodedMmioLoad extends DecodedCommon {
  op: "load";
  dest: LoadDestination;
}

/** A decoded device write. */
export interface DecodedMmioStore extends DecodedCommon {
  op: "store";
  source: StoreSource;
}

/** A decoded MMIO instruction. */
export type DecodedMmio = DecodedMmioLoad | DecodedMmioStore;

/**
 * Why decoding failed. `truncated` is set when the bytes ran out before the
 * instruction did (fewer than 15 were supplied): the caller may have stopped
 * fetching at a page fault and should report that fault instead.
 */
export interface DecodeError {
  /** The whole message, naming the bytes: `Unsupported MMIO instruction "0f 01 d8": ...`. */
  error: string;
  /** Just the reason ("opcode 0f 01 is not emulated"), for callers that add context. */
  reason: string;
  truncated?: boolean;
}

/** Options for {@link decodeMmioInstruction}. */
export interface DecodeMode {
  cpuMode: CpuMode;
}

const SEGMENT_PREFIXES: Readonly<Record<number, SegmentOverride>> = {
  0x26: "es",
  0x2e: "cs",
  0x36: "ss",
  0x3e: "ds",
  0x64: "fs",
  0x65: "gs",
};

/** Formats bytes as lowercase hex pairs separated by spaces ("0f 01 d8"). */
export function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** Thrown inside the decoder only; turned into a {@link DecodeError} at the boundary. */
class DecodeFailure extends Error {
  readonly truncated: boolean;
  constructor(message: string, truncated = false) {
    super(message);
    this.truncated = truncated;
  }
}

/** A cursor over the instruction bytes that enforces the 15-byte limit. */
class ByteCursor {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  #need(count: number): void {
    const end = this.pos + count;
    if (end > X86_MAX_INSN_BYTES) {
      throw new DecodeFailure(`instruction is longer than ${X86_MAX_INSN_BYTES} bytes`);
    }
    if (end > this.bytes.length) {
      throw new DecodeFailure(
        `instruction is truncated: needs more than the ${this.bytes.length} bytes available`,
        true,
      );
    }
  }

  peek(): number {
    this.#need(1);
    return this.bytes[this.pos];
  }

  u8(): number {
    this.#need(1);
    return this.bytes[this.pos++];
  }

  skip(count: number): void {
    this.#need(count);
    this.pos += count;
  }

  /** Little-endian unsigned value of `count` bytes. */
  uint(count: number): bigint {
    this.#need(count);
    let value = 0n;
    for (let i = count - 1; i >= 0; i--) value = (value << 8n) | BigInt(this.bytes[this.pos + i]);
    this.pos += count;
    return value;
  }
}

/** REX bits that extend ModRM/SIB register fields. */
interface RexExtension {
  /** REX.B: 8 or 0, added to ModRM.rm / SIB.base. */
  b: number;
  /** REX.X: 8 or 0, added to SIB.index. */
  x: number;
}

/** Sign-extends the `bytes`-byte little-endian value to 64 bits (unsigned bigint). */
function signExtend(value: bigint, bytes: number): bigint {
  return BigInt.asUintN(64, BigInt.asIntN(bytes * 8, value));
}

/** 16-bit addressing: ModRM.rm -> [base, index] (BX 3, BP 5, SI 6, DI 7). */
const MODRM16: readonly (readonly [number | undefined, number | undefined])[] = [
  [3, 6],
  [3, 7],
  [5, 6],
  [5, 7],
  [undefined, 6],
  [undefined, 7],
  [5, undefined],
  [3, undefined],
];

/**
 * Decodes a ModRM byte (and SIB and displacement) that must name memory.
 * Returns the ModRM reg field (3 bits, before REX.R) and the memory operand
 * (its segment is the default; the caller applies an override).
 */
function parseModrm(
  cur: ByteCursor,
  addressSize: AddressSize,
  rex: RexExtension,
  long: boolean,
): { reg: number; mem: MemoryOperand } {
  const modrm = cur.u8();
  const mod = modrm >> 6;
  const reg = (modrm >> 3) & 7;
  const rm = modrm & 7;
  if (mod === 3) {
    // A register operand cannot fault on MMIO: the exit and the bytes disagree.
    throw new DecodeFailure(`ModRM 0x${modrm.toString(16)} names a register, not memory`);
  }
  if (addressSize === 2) {
    // 16-bit forms: no SIB; mod 00 rm 110 is a bare disp16.
    let [base, index] = MODRM16[rm];
    let disp = 0n;
    if (mod === 1) disp = signExtend(cur.uint(1), 1);
    else if (mod === 2) disp = signExtend(cur.uint(2), 2);
    else if (rm === 6) {
      base = undefined;
      disp = signExtend(cur.uint(2), 2);
    }
    const mem: MemoryOperand = { scale: 1, disp, segment: base === 5 ? "ss" : "ds" };
    if (base !== undefined) mem.base = base;
    if (index !== undefined) mem.index = index;
    return { reg, mem };
  }
  // 32/64-bit forms. The special cases look at the 3-bit fields only, so
  // REX.B/REX.X (r12, r13) do not change the length.
  let dispBytes = mod === 1 ? 1 : mod === 2 ? 4 : 0;
  let base: number | undefined;
  let index: number | undefined;
  let scale = 1;
  let ripRelative = false;
  if (rm === 4) {
    const sib = cur.u8();
    scale = 1 << (sib >> 6);
    const sibIndex = ((sib >> 3) & 7) | rex.x;
    if (sibIndex !== 4) index = sibIndex; // index 100 without REX.X means none
    if (mod === 0 && (sib & 7) === 5) dispBytes = 4; // no base: disp32
    else base = (sib & 7) | rex.b;
  } else if (mod === 0 && rm === 5) {
    dispBytes = 4; // disp32: RIP/EIP-relative in 64-bit mode, absolute otherwise
    ripRelative = long;
  } else {
    base = rm | rex.b;
  }
  const disp = dispBytes === 0 ? 0n : signExtend(cur.uint(dispBytes), dispBytes);
  const mem: MemoryOperand = {
    scale,
    disp,
    segment: base === 4 || base === 5 ? "ss" : "ds",
  };
  if (base !== undefined) mem.base = base;
  if (index !== undefined) mem.index = index;
  if (ripRelative) mem.ripRelative = true;
  return { reg, mem };
}

function operandWidth(cpuMode: CpuMode, opsize16: boolean, rexW: boolean): MmioWidth {
  if (rexW) return 8;
  const default16 = cpuMode === "real" || cpuMode === "protected16";
  return default16 !== opsize16 ? 2 : 4;
}

function addressWidth(cpuMode: CpuMode, addrsizePrefix: boolean): AddressSize {
  switch (cpuMode) {
    case "real":
    case "protected16":
      return addrsizePrefix ? 4 : 2;
    case "protected32":
      return addrsizePrefix ? 2 : 4;
    case "long64":
      return addrsizePrefix ? 4 : 8;
  }
}

/** The extension rule of a plain MOV into a register of `width` bytes. */
function movExtend(width: MmioWidth): LoadDestination["extend"] {
  return width >= 4 ? "zero" : "none-merge";
}

/**
 * Decodes the instruction at the start of `bytes` (pass up to 15 bytes;
 * extra bytes after the instruction are ignored).
 *
 * Returns the decoded access, or `{ error }` naming the bytes for anything
 * outside the supported subset: other opcodes, LOCK, REP/REPNE, register
 * operands, truncated input, instructions longer than 15 bytes.
 */
export function decodeMmioInstruction(
  bytes: Uint8Array,
  mode: DecodeMode,
): DecodedMmio | DecodeError {
  try {
    return decode(bytes, mode.cpuMode);
  } catch (e) {
    if (!(e instanceof DecodeFailure)) throw e;
    const shown = hexBytes(bytes.subarray(0, X86_MAX_INSN_BYTES));
    const error = `Unsupported MMIO instruction "${shown}": ${e.message}`;
    return e.truncated
      ? { error, reason: e.message, truncated: true }
      : { error, reason: e.message };
  }
}

function decode(bytes: Uint8Array, cpuMode: CpuMode): DecodedMmio {
  const cur = new ByteCursor(bytes);
  const long = cpuMode === "long64";
  let opsize16 = false;
  let addrsize = false;
  let segment: SegmentOverride | undefined;
  let rex = 0;

  // Legacy prefixes in any order; a REX byte counts only when it comes last
  // (immediately before the opcode), otherwise the CPU ignores it.
  let opcode: number;
  for (;;) {
    const b = cur.u8();
    if (long && b >= 0x40 && b <= 0x4f) {
      rex = b;
      continue;
    }
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addrsize = true;
    else if (b in SEGMENT_PREFIXES) segment = SEGMENT_PREFIXES[b];
    else if (b === 0xf0) throw new DecodeFailure("LOCK prefix is not supported on MMIO");
    else if (b === 0xf2 || b === 0xf3) {
      throw new DecodeFailure(`REP/REPNE prefix 0x${b.toString(16)} is not supported on MMIO`);
    } else {
      opcode = b;
      break;
    }
    rex = 0; // a legacy prefix after REX cancels the REX
  }

  const rexW = (rex & 8) !== 0;
  const rexR = (rex & 4) !== 0 ? 8 : 0;
  const ext: RexExtension = { b: (rex & 1) !== 0 ? 8 : 0, x: (rex & 2) !== 0 ? 8 : 0 };
  const width = operandWidth(cpuMode, opsize16, rexW);
  const addressSize = addressWidth(cpuMode, addrsize);
  const common = { addressSize, ...(segment ? { segment } : {}) };
  // The memory operand with the override applied.
  const withSegment = (mem: MemoryOperand): { mem: MemoryOperand } => ({
    mem: segment ? { ...mem, segment } : mem,
  });
  const modrm = () => {
    const { reg, mem } = parseModrm(cur, addressSize, ext, long);
    return { reg, ...withSegment(mem) };
  };

  // A byte register 4..7 is AH/CH/DH/BH unless any REX prefix is present.
  const byteReg = (reg3: number) => {
    const reg = reg3 | rexR;
    return rex === 0 && reg >= 4 ? { reg: reg - 4, high8: true as const } : { reg };
  };

  switch (opcode) {
    case 0x88: { // MOV r/m8, r8
      const { reg, mem } = modrm();
      return {
        length: cur.pos,
        op: "store",
        width: 1,
        source: { ...byteReg(reg), width: 1 },
        mnemonic: "mov",
        mem,
        ...common,
      };
    }
    case 0x89: { // MOV r/m, r
      const { reg, mem } = modrm();
      return {
        length: cur.pos,
        op: "store",
        width,
        source: { reg: reg | rexR, width },
        mnemonic: "mov",
        mem,
        ...common,
      };
    }
    case 0x8a: { // MOV r8, r/m8
      const { reg, mem } = modrm();
      return {
        length: cur.pos,
        op: "load",
        width: 1,
        dest: { ...byteReg(reg), width: 1, extend: "none-merge" },
        mnemonic: "mov",
        mem,
        ...common,
      };
    }
    case 0x8b: { // MOV r, r/m
      const { reg, mem } = modrm();
      return {
        length: cur.pos,
        op: "load",
        width,
        dest: { reg: reg | rexR, width, extend: movExtend(width) },
        mnemonic: "mov",
        mem,
        ...common,
      };
    }
    case 0xa0:
    case 0xa1:
    case 0xa2:
    case 0xa3: { // MOV AL/rAX <-> moffs: the offset is address-size wide
      const { mem } = withSegment({ scale: 1, disp: cur.uint(addressSize), segment: "ds" });
      const w: MmioWidth = (opcode & 1) === 0 ? 1 : width;
      if (opcode < 0xa2) {
        return {
          length: cur.pos,
          op: "load",
          width: w,
          dest: { reg: 0, width: w, extend: movExtend(w) },
          mnemonic: "mov",
          mem,
          ...common,
        };
      }
      return {
        length: cur.pos,
        op: "store",
        width: w,
        source: { reg: 0, width: w },
        mnemonic: "mov",
        mem,
        ...common,
      };
    }
    case 0xc6:
    case 0xc7: { // MOV r/m, imm (only /0)
      const modrmAt = cur.pos;
      const { reg, mem } = modrm();
      if (reg !== 0) {
        const modrm = bytes[modrmAt].toString(16).padStart(2, "0");
        throw new DecodeFailure(
          `opcode ${opcode.toString(16)} /${reg} (ModRM ${modrm}) is not a MOV`,
        );
      }
      const w: MmioWidth = opcode === 0xc6 ? 1 : width;
      // imm32 for 64-bit stores, sign-extended to 64 bits.
      const immBytes = w === 8 ? 4 : w;
      let imm = cur.uint(immBytes);
      if (w === 8) imm = BigInt.asUintN(64, BigInt.asIntN(32, imm));
      return {
        length: cur.pos,
        op: "store",
        width: w,
        source: { imm },
        mnemonic: "mov",
        mem,
        ...common,
      };
    }
    case 0xaa:
    case 0xab: { // STOS m, AL/rAX (REP was rejected with the prefixes)
      const w: MmioWidth = opcode === 0xaa ? 1 : width;
      return {
        length: cur.pos,
        op: "store",
        width: w,
        source: { stos: true, addressSize },
        mnemonic: "stos",
        // ES:[rDI]; ES cannot be overridden.
        mem: { base: 7, scale: 1, disp: 0n, segment: "es" },
        ...common,
      };
    }
    case 0x0f: {
      const op2 = cur.u8();
      if (op2 !== 0xb6 && op2 !== 0xb7 && op2 !== 0xbe && op2 !== 0xbf) {
        throw new DecodeFailure(`opcode 0f ${op2.toString(16).padStart(2, "0")} is not emulated`);
      }
      // MOVZX / MOVSX r, r/m8 or r/m16
      const { reg, mem } = modrm();
      const w: MmioWidth = (op2 & 1) === 0 ? 1 : 2;
      const sign = op2 >= 0xbe;
      return {
        length: cur.pos,
        op: "load",
        width: w,
        dest: { reg: reg | rexR, width, extend: sign ? "sign" : "zero" },
        mnemonic: sign ? "movsx" : "movzx",
        mem,
        ...common,
      };
    }
    default:
      throw new DecodeFailure(`opcode ${opcode.toString(16).padStart(2, "0")} is not emulated`);
  }
}

// ---------------------------------------------------------------------------
// Effective addresses

const CR0_PE = 1n;
const EFER_LMA = 1n << 10n;
const RFLAGS_VM = 1n << 17n;

/**
 * The code mode the CPU is in: real (CR0.PE clear, or virtual-8086 mode,
 * which addresses like real mode), 64-bit (EFER.LMA and CS.L), else
 * protected mode with CS.D choosing 32- or 16-bit defaults.
 */
export function cpuModeOf(sregs: SpecialRegisters, rflags = 0n): CpuMode {
  if ((sregs.cr0 & CR0_PE) === 0n || (rflags & RFLAGS_VM) !== 0n) return "real";
  if ((sregs.efer & EFER_LMA) !== 0n && sregs.cs.l) return "long64";
  return sregs.cs.db ? "protected32" : "protected16";
}

/**
 * The linear address a decoded instruction accesses: base + index * scale +
 * displacement (+ the next instruction's RIP when RIP-relative), wrapped at
 * the address size, plus the segment base. In 64-bit mode only FS and GS
 * have a base (the others count as 0) and the sum wraps at 64 bits;
 * elsewhere the linear address wraps at 32 bits. Segment limits are not
 * checked (the guest's page tables and the MMIO range check catch a wild
 * address).
 *
 * @example
 * ```ts
 * import { decodeMmioInstruction, effectiveAddress } from "./x86_decode.ts";
 * // mov eax, [rbx+rcx*4+0x10] with rbx=0xfee00000, rcx=2 -> 0xfee00018
 * const d = decodeMmioInstruction(new Uint8Array([0x8b, 0x44, 0x8b, 0x10]), { cpuMode: "long64" });
 * // effectiveAddress(d, regs, sregs) === 0xfee00018n
 * ```
 */
export function effectiveAddress(
  decoded: DecodedMmio,
  regs: Registers,
  sregs: SpecialRegisters,
): bigint {
  const { mem, addressSize } = decoded;
  const long = (sregs.efer & EFER_LMA) !== 0n && sregs.cs.l;
  let offset = mem.disp;
  if (mem.base !== undefined) offset += regs[GPR_FIELDS[mem.base]];
  if (mem.index !== undefined) offset += regs[GPR_FIELDS[mem.index]] * BigInt(mem.scale);
  if (mem.ripRelative) offset += regs.rip + BigInt(decoded.length);
  offset = BigInt.asUintN(addressSize * 8, offset);
  const segBase = long && mem.segment !== "fs" && mem.segment !== "gs"
    ? 0n
    : sregs[mem.segment].base;
  return BigInt.asUintN(long ? 64 : 32, segBase + offset);
}
