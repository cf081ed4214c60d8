/**
 * MMIO exits of vmm(4): an EPT violation / NPF with VEE_FAULT_MMIO_ASSIST
 * carries no address, so the instruction at RIP is fetched (or taken from
 * the SVM decode-assist bytes), decoded, its effective address computed and
 * translated to a guest-physical address inside a VM_MEM_MMIO range; the
 * registers the guest must see are produced by `mmio_emulate.ts` and
 * written into `vrs` on completion (the kernel reloads every GPR from it
 * after an EPT exit).
 *
 * @module
 */

import type { Registers, SpecialRegisters } from "../types.ts";
import * as abi from "./abi.ts";
import { type ExitContext, type ExitDecoding, failExit, pagingMode } from "./exit_context.ts";
import { hex } from "./mem_ranges.ts";
import { emulateMmio } from "./mmio_emulate.ts";
import { fetchInstruction, translate } from "./page_walk.ts";
import {
  cpuModeOf,
  type DecodedMmio,
  decodeMmioInstruction,
  effectiveAddress,
  X86_MAX_INSN_BYTES,
} from "./x86_decode.ts";

const EXIT = abi.vm_exit;
const EXIT_VEE_FAULT_TYPE = EXIT.offsetOf("vee.vee_fault_type");
const EXIT_VEE_INSN_INFO = EXIT.offsetOf("vee.vee_insn_info");
const EXIT_VEE_INSN_LEN = EXIT.offsetOf("vee.vee_insn_len");
const EXIT_VEE_INSN_BYTES = EXIT.offsetOf("vee.vee_insn_bytes");
const EXIT_CPL = EXIT.offsetOf("cpl");

/** An EPT violation / NPF exit by its `vee_fault_type`. */
export function decodeEptExit(ctx: ExitContext, reason: number): ExitDecoding {
  const faultType = ctx.exitView.getUint8(EXIT_VEE_FAULT_TYPE);
  switch (faultType) {
    case abi.VEE_FAULT_HANDLED:
      return { exit: { kind: "interrupted" }, pending: { kind: "none" } };
    case abi.VEE_FAULT_MMIO_ASSIST:
      return decodeMmioExit(ctx, reason);
    case abi.VEE_FAULT_PROTECT:
      return failExit(ctx, reason, `the guest accessed memory it may not (VEE_FAULT_PROTECT)`);
    default:
      return failExit(ctx, reason, `EPT violation of fault type "${faultType}"`);
  }
}

function decodeMmioExit(ctx: ExitContext, reason: number): ExitDecoding {
  const v = ctx.exitView;
  const regs = ctx.getRegisters();
  const sregs = ctx.getSpecialRegisters();
  const cpuMode = cpuModeOf(sregs, regs.rflags);
  const info = v.getUint8(EXIT_VEE_INSN_INFO);
  const csBase = cpuMode === "long64" ? 0n : sregs.cs.base;
  let bytes: Uint8Array;
  let fetchFault: string | undefined;
  // AMD (decode assist) sets only VEE_BYTES_VALID, with vee_insn_len = the
  // bytes the CPU fetched: fewer than 15 near a page end, the rest being
  // zeros that must not be decoded. The rest comes through the page tables.
  const fetched = (info & abi.VEE_BYTES_VALID) !== 0
    ? Math.min(v.getUint8(EXIT_VEE_INSN_LEN), X86_MAX_INSN_BYTES)
    : 0;
  if (fetched === X86_MAX_INSN_BYTES) {
    bytes = ctx.exit.slice(EXIT_VEE_INSN_BYTES, EXIT_VEE_INSN_BYTES + fetched);
  } else {
    const rest = fetchInstruction(
      ctx.memory,
      pagingMode(sregs),
      csBase,
      regs.rip + BigInt(fetched),
      X86_MAX_INSN_BYTES - fetched,
    );
    if (!("bytes" in rest) && fetched === 0) {
      return failExit(ctx, reason, `cannot fetch the MMIO instruction: ${rest.fault}`);
    }
    const tail = "bytes" in rest ? rest.bytes : new Uint8Array(0);
    bytes = new Uint8Array(fetched + tail.length);
    bytes.set(ctx.exit.subarray(EXIT_VEE_INSN_BYTES, EXIT_VEE_INSN_BYTES + fetched));
    bytes.set(tail, fetched);
    fetchFault = rest.fault;
  }
  // Intel's vee_insn_len (VEE_LEN_VALID) is VMCS_INSTRUCTION_LENGTH, which
  // the SDM does not define for EPT violations: the decoded length is used,
  // never the reported one.
  const insnLength = undefined;
  const decoded = decodeMmioInstruction(bytes, { cpuMode });
  if ("error" in decoded) {
    // emulateMmio words the failure (unsupported instruction or fetch fault).
    const r = emulateMmio({
      bytes,
      cpuMode,
      regs,
      gpa: 0,
      mmioRead: () => {},
      mmioWrite: () => {},
      insnLength,
      fetchFault,
    });
    return failExit(ctx, reason, "error" in r ? r.error : "MMIO instruction did not decode");
  }
  const gpa = mmioAddress(ctx, decoded, regs, sregs);
  if (typeof gpa === "string") return failExit(ctx, reason, gpa);
  const input = { bytes, cpuMode, regs, gpa, insnLength, fetchFault };
  if (decoded.op === "load") {
    // Validate (length cross-check) before the device is touched: a dry run.
    const dry = emulateMmio({ ...input, mmioRead: () => {}, mmioWrite: () => {} });
    if ("error" in dry) return failExit(ctx, reason, dry.error);
    const data = new Uint8Array(decoded.width);
    return {
      exit: { kind: "mmio-read", gpa, data },
      pending: {
        kind: "mmio-load",
        data,
        finish: (d) =>
          emulateMmio({ ...input, mmioRead: (_g, out) => out.set(d), mmioWrite: () => {} }),
      },
    };
  }
  let written: Uint8Array | undefined;
  const result = emulateMmio({
    ...input,
    mmioRead: () => {
      throw new Error("unreachable: a store read the device");
    },
    mmioWrite: (_g, d) => (written = d.slice()),
  });
  if ("error" in result) return failExit(ctx, reason, result.error);
  return {
    exit: { kind: "mmio-write", gpa, data: written! },
    pending: { kind: "mmio-store", result },
  };
}

/** The guest-physical address of the access, or why it cannot be MMIO. */
function mmioAddress(
  ctx: ExitContext,
  decoded: DecodedMmio,
  regs: Registers,
  sregs: SpecialRegisters,
): number | string {
  const linear = effectiveAddress(decoded, regs, sregs);
  const cpl = ctx.exitView.getInt32(EXIT_CPL, true);
  const t = translate(ctx.memory, pagingMode(sregs), linear, {
    write: decoded.op === "store",
    user: cpl === 3,
  });
  if ("fault" in t) {
    return `MMIO access at linear ${hex(linear)} does not translate: ${t.fault}`;
  }
  if (!ctx.isMmio(t.gpa, decoded.width)) {
    return `MMIO instruction at RIP ${hex(regs.rip)} addresses guest-physical ${hex(t.gpa)}, ` +
      `which is not in an MMIO range`;
  }
  return t.gpa;
}
