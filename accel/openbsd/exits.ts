/**
 * vmm(4) exits to {@link VcpuExit}s, and their completion before the next
 * VMM_IOC_RUN, the way vmd does it:
 * - IO exits: after the device ran, IN data is merged into `vei_data` at the
 *   access width and RIP is advanced by `vei_insn_len` in the exit's `vrs`
 *   (the kernel applies both on the next VMM_IOC_RUN; it also sets RAX to the
 *   zero-extended `vei_data` after any IN, so the upper half of RAX is lost,
 *   as on real vmm(4)). String/REP I/O is emulated element by element through
 *   the guest page tables (see `string_io.ts`).
 * - MMIO: see `mmio_exit.ts`.
 * - VMX and SVM exit reasons do not overlap, so one switch serves both.
 *
 * @module
 */

import type { VcpuExit } from "../types.ts";
import * as abi from "./abi.ts";
import {
  bytesAtRip,
  type ExitContext,
  type ExitDecoding,
  failExit,
  type Pending,
  whereAmI,
} from "./exit_context.ts";
import { hex } from "./mem_ranges.ts";
import { decodeEptExit } from "./mmio_exit.ts";
import { gprAt } from "./regs.ts";
import { advanceStringIo, decodeStringIo, planStringIo, stringIoRemaining } from "./string_io.ts";
import { cpuModeOf, hexBytes, X86_MAX_INSN_BYTES } from "./x86_decode.ts";

const EXIT = abi.vm_exit;
const EXIT_VEI_SIZE = EXIT.offsetOf("vei.vei_size");
const EXIT_VEI_DIR = EXIT.offsetOf("vei.vei_dir");
const EXIT_VEI_REP = EXIT.offsetOf("vei.vei_rep");
const EXIT_VEI_STRING = EXIT.offsetOf("vei.vei_string");
const EXIT_VEI_PORT = EXIT.offsetOf("vei.vei_port");
const EXIT_VEI_DATA = EXIT.offsetOf("vei.vei_data");
const EXIT_VEI_INSN_LEN = EXIT.offsetOf("vei.vei_insn_len");
const EXIT_VRS = EXIT.offsetOf("vrs");
const EXIT_CPL = EXIT.offsetOf("cpl");
const RIP_AT = EXIT_VRS + gprAt(abi.VCPU_REGS_RIP);

const NOTHING: Pending = { kind: "none" };

function done(exit: VcpuExit): ExitDecoding {
  return { exit, pending: NOTHING };
}

/** The exit `reason` (`vrp_exit_reason`) of the last RUN. */
export function decodeExit(ctx: ExitContext, reason: number): ExitDecoding {
  switch (reason) {
    case abi.VMX_EXIT_IO:
    case abi.SVM_VMEXIT_IOIO:
      return decodeIoExit(ctx, reason);
    case abi.VMX_EXIT_EPT_VIOLATION:
    case abi.SVM_VMEXIT_NPF:
      return decodeEptExit(ctx, reason);
    case abi.VMX_EXIT_HLT:
    case abi.SVM_VMEXIT_HLT:
      return done({ kind: "halt" });
    case abi.VMX_EXIT_TRIPLE_FAULT:
    case abi.SVM_VMEXIT_SHUTDOWN:
      return done({ kind: "shutdown", reason: "triple-fault" });
    case abi.VMX_EXIT_INT_WINDOW:
    case abi.SVM_VMEXIT_VINTR:
      return done({ kind: "interrupt-window" });
    case abi.VMX_EXIT_EXTINT:
    case abi.SVM_VMEXIT_INTR:
    case abi.VMX_EXIT_CPUID:
    case abi.SVM_VMEXIT_CPUID:
    case abi.VMX_EXIT_RDMSR:
    case abi.VMX_EXIT_WRMSR:
    case abi.SVM_VMEXIT_MSR:
    case abi.VMX_EXIT_XSETBV:
    case abi.VM_EXIT_NONE:
      return done({ kind: "interrupted" });
    case abi.VM_EXIT_TERMINATED:
      return done({ kind: "shutdown", reason: "system-event" });
    default:
      return done({
        kind: "fail",
        raw: reason,
        reason: `unexpected vmm(4) exit ${abi.vmmExitName(reason)} (${reason})${whereAmI(ctx)}`,
      });
  }
}

function decodeIoExit(ctx: ExitContext, reason: number): ExitDecoding {
  const v = ctx.exitView;
  const size = v.getUint8(EXIT_VEI_SIZE);
  const dir = v.getUint8(EXIT_VEI_DIR);
  const port = v.getUint16(EXIT_VEI_PORT, true);
  const insnLength = v.getUint8(EXIT_VEI_INSN_LEN);
  if (size !== 1 && size !== 2 && size !== 4) {
    return failExit(ctx, reason, `IO exit with access size "${size}" at port ${hex(port)}`);
  }
  if (v.getUint8(EXIT_VEI_STRING) !== 0 || v.getUint8(EXIT_VEI_REP) !== 0) {
    return decodeStringIoExit(ctx, reason, port, size, dir, insnLength);
  }
  // vei_data is little-endian: its low `size` bytes are the access. The device
  // writes IN data straight into it (the merge vmm(4) wants).
  const data = ctx.exit.subarray(EXIT_VEI_DATA, EXIT_VEI_DATA + size);
  return {
    exit: dir === abi.VEI_DIR_IN
      ? { kind: "io-in", port, size, count: 1, data }
      : { kind: "io-out", port, size, count: 1, data },
    pending: { kind: "io", dir, insnLength },
  };
}

function decodeStringIoExit(
  ctx: ExitContext,
  reason: number,
  port: number,
  size: number,
  dir: number,
  insnLength: number,
): ExitDecoding {
  const regs = ctx.getRegisters();
  const sregs = ctx.getSpecialRegisters();
  const bytes = bytesAtRip(ctx, X86_MAX_INSN_BYTES);
  if (!bytes) return failExit(ctx, reason, `cannot fetch the string I/O instruction`);
  const insn = decodeStringIo(bytes, cpuModeOf(sregs, regs.rflags));
  if ("error" in insn) return failExit(ctx, reason, insn.error);
  const expectDir = insn.op === "ins" ? abi.VEI_DIR_IN : abi.VEI_DIR_OUT;
  if (insn.width !== size || dir !== expectDir || (insnLength && insnLength !== insn.length)) {
    return failExit(
      ctx,
      reason,
      `string I/O instruction "${hexBytes(bytes.subarray(0, insn.length))}" does not match ` +
        `the exit (size ${size}, direction ${dir}, length ${insnLength})`,
    );
  }
  const remaining = stringIoRemaining(insn, regs);
  if (remaining === 0n) {
    // REP with rCX = 0 does nothing: step over it (the kernel takes RIP from vrs).
    ctx.setImageRegisters({ ...regs, rip: (regs.rip + BigInt(insn.length)) & ctx.ipMask() });
    return done({ kind: "interrupted" });
  }
  const cpl = ctx.exitView.getInt32(EXIT_CPL, true);
  const plan = planStringIo(ctx.memory, insn, regs, sregs, remaining, cpl === 3);
  if ("error" in plan) return failExit(ctx, reason, plan.error);
  const data = new Uint8Array(plan.count * insn.width);
  if (insn.op === "outs") plan.gpas.forEach((gpa, i) => (data[i] = ctx.memory.readU8(gpa)));
  return {
    exit: insn.op === "ins"
      ? { kind: "io-in", port, size, count: plan.count, data }
      : { kind: "io-out", port, size, count: plan.count, data },
    pending: { kind: "string-io", insn, count: plan.count, gpas: plan.gpas, data },
  };
}

/**
 * Finishes the exit that left `p` once the device has run: the register
 * image the next RUN passes in gets RIP (and RAX, RSI, RDI, RCX) as the
 * guest must see them.
 */
export function completeExit(ctx: ExitContext, p: Pending): void {
  switch (p.kind) {
    case "io": {
      // Only RIP (and RAX after an IN) change: patch them, not the whole image.
      const v = ctx.exitView;
      const rip = (v.getBigUint64(RIP_AT, true) + BigInt(p.insnLength)) & ctx.ipMask();
      // The kernel loads RAX with the zero-extended vei_data after an IN.
      const rax = p.dir === abi.VEI_DIR_IN ? BigInt(v.getUint32(EXIT_VEI_DATA, true)) : undefined;
      ctx.patchImage(rip, rax);
      return;
    }
    case "string-io": {
      if (p.insn.op === "ins") p.gpas.forEach((gpa, i) => ctx.memory.writeU8(gpa, p.data[i]));
      const next = advanceStringIo(p.insn, ctx.getRegisters(), p.count, ctx.ipMask());
      if (p.insn.op === "ins") next.rax = BigInt(ctx.exitView.getUint32(EXIT_VEI_DATA, true));
      // RSI/RDI/RCX are not reloaded from vrs after an IO exit: write them.
      ctx.setRegisters(next);
      return;
    }
    case "mmio-load": {
      const r = p.finish(p.data);
      if ("error" in r) throw new Error(`MMIO load completion failed: ${r.error}`);
      ctx.setImageRegisters(r.regs);
      return;
    }
    case "mmio-store":
      if ("error" in p.result) throw new Error(`MMIO store completion failed: ${p.result.error}`);
      ctx.setImageRegisters(p.result.regs);
      return;
    case "none":
      return;
  }
}
