/**
 * A vmm(4) vCPU: its run loop over VMM_IOC_RUN with the caller-owned
 * `struct vm_exit` as register image, register access through that image
 * (written back with VMM_IOC_WRITEREGS only when changed), and interrupts
 * the vmd way: one vector through `vrp_inject`, only when the last run said
 * `vrp_irqready`; `vrp_intr_pending` asks for a window exit. Exits are
 * decoded in `exits.ts` and `mmio_exit.ts`.
 *
 * @module
 */

import type { Libc } from "../../ffi/libc.ts";
import { IoctlError } from "../../ffi/errno.ts";
import type { CpuState, KickToken, Registers, SpecialRegisters, Vcpu, VcpuExit } from "../types.ts";
import { VcpuBase } from "../vcpu_base.ts";
import * as abi from "./abi.ts";
import { bytesAtRip, type ExitContext, type Pending, whereAmI } from "./exit_context.ts";
import { completeExit, decodeExit } from "./exits.ts";
import {
  encodeVcpuRegState,
  gprAt,
  ipMaskOf,
  readGprs,
  readSregs,
  writeGprs,
  writeSregs,
} from "./regs.ts";
import type { OpenbsdVm } from "./vmm.ts";
import { X86_MAX_INSN_BYTES } from "./x86_decode.ts";

const EXIT = abi.vm_exit;
const EXIT_VRS = EXIT.offsetOf("vrs");
const RIP_AT = EXIT_VRS + gprAt(abi.VCPU_REGS_RIP);
const RAX_AT = EXIT_VRS + gprAt(abi.VCPU_REGS_RAX);
const VRS_SIZE = abi.vcpu_reg_state.size;

const RUNP = abi.vm_run_params;
const RUNP_VM_ID = RUNP.offsetOf("vrp_vm_id");
const RUNP_VCPU_ID = RUNP.offsetOf("vrp_vcpu_id");
const RUNP_INJECT_VECTOR = RUNP.offsetOf("vrp_inject.vie_vector");
const RUNP_INJECT_ERRORCODE = RUNP.offsetOf("vrp_inject.vie_errorcode");
const RUNP_INJECT_TYPE = RUNP.offsetOf("vrp_inject.vie_type");
const RUNP_INTR_PENDING = RUNP.offsetOf("vrp_intr_pending");
const RUNP_EXIT = RUNP.offsetOf("vrp_exit");
const RUNP_EXIT_REASON = RUNP.offsetOf("vrp_exit_reason");
const RUNP_IRQREADY = RUNP.offsetOf("vrp_irqready");

const RWREGS = abi.vm_rwregs_params;
const RW_VM_ID = RWREGS.offsetOf("vrwp_vm_id");
const RW_VCPU_ID = RWREGS.offsetOf("vrwp_vcpu_id");
const RW_MASK = RWREGS.offsetOf("vrwp_mask");
const RW_REGS = RWREGS.offsetOf("vrwp_regs");

const RFLAGS_IF = 1n << 9n;

/** A vmm(4) vCPU; used only on the thread that runs it. */
export class OpenbsdVcpu extends VcpuBase implements Vcpu {
  readonly vm: OpenbsdVm;
  readonly #libc: Libc;
  /** The caller-owned `struct vm_exit`: passed to every RUN; its `vrs` is our register image. */
  readonly #exit = new Uint8Array(EXIT.size);
  readonly #exitView = new DataView(this.#exit.buffer);
  readonly #run = new Uint8Array(RUNP.size);
  readonly #runView = new DataView(this.#run.buffer);
  readonly #rw = new Uint8Array(RWREGS.size);
  #regs?: Registers;
  #sregs?: SpecialRegisters;
  /** VM_RWREGS_* groups changed since the last RUN (written with WRITEREGS). */
  #dirty = 0;
  #irqReady = false;
  #inject?: number;
  #window = false;
  #intrLine = false;
  #pending: Pending = { kind: "none" };
  /** What the exit decoders see of this vCPU. */
  readonly #ctx: ExitContext;

  constructor(vm: OpenbsdVm, id: number, state: CpuState) {
    super(id);
    this.vm = vm;
    this.#libc = vm.accel.libc;
    const vrs = encodeVcpuRegState(state);
    const reset = abi.vm_resetcpu_params.bytes({ vrp_vm_id: vm.id, vrp_vcpu_id: id });
    reset.set(vrs, abi.vm_resetcpu_params.offsetOf("vrp_init_state"));
    this.#libc.ioctl(vm.fd, abi.VMM_IOC_RESETCPU, reset);
    this.#exit.set(vrs, EXIT_VRS);
    this.#runView.setUint32(RUNP_VM_ID, vm.id, true);
    this.#runView.setUint32(RUNP_VCPU_ID, id, true);
    this.#runView.setBigUint64(RUNP_EXIT, this.#libc.addressOf(this.#exit), true);
    this.#ctx = {
      exit: this.#exit,
      exitView: this.#exitView,
      memory: vm.memory,
      getRegisters: () => this.getRegisters(),
      getSpecialRegisters: () => this.getSpecialRegisters(),
      setImageRegisters: (regs) => this.#setImageRegisters(regs),
      patchImage: (rip, rax) => this.#patchImage(rip, rax),
      setRegisters: (regs) => this.setRegisters(regs),
      isMmio: (gpa, length) => vm.isMmio(gpa, length),
      ipMask: () => ipMaskOf(this.#exitView, EXIT_VRS),
    };
    this.configured();
  }

  /** The `vm_exit` buffer (tests look at what the next RUN will pass in). */
  get exitBuffer(): Uint8Array {
    return this.#exit;
  }

  getRegisters(): Registers {
    this.#regs ??= readGprs(this.#exitView, EXIT_VRS);
    return { ...this.#regs };
  }

  setRegisters(regs: Registers): void {
    this.#regs = { ...regs };
    writeGprs(this.#exitView, EXIT_VRS, regs);
    this.#dirty |= abi.VM_RWREGS_GPRS;
  }

  getSpecialRegisters(): SpecialRegisters {
    this.#sregs ??= readSregs(this.#exitView, EXIT_VRS);
    return structuredClone(this.#sregs);
  }

  setSpecialRegisters(sregs: SpecialRegisters): void {
    this.#sregs = structuredClone(sregs);
    writeSregs(this.#exitView, EXIT_VRS, sregs);
    this.#dirty |= abi.VM_RWREGS_SREGS | abi.VM_RWREGS_CRS | abi.VM_RWREGS_MSRS;
  }

  /** Updates GPRs in the image only: the kernel reloads them from `vrs` itself. */
  #setImageRegisters(regs: Registers): void {
    this.#regs = { ...regs };
    writeGprs(this.#exitView, EXIT_VRS, regs);
  }

  #patchImage(rip: bigint, rax?: bigint): void {
    this.#exitView.setBigUint64(RIP_AT, rip, true);
    if (this.#regs) this.#regs.rip = rip;
    if (rax === undefined) return;
    this.#exitView.setBigUint64(RAX_AT, rax, true);
    if (this.#regs) this.#regs.rax = rax;
  }

  /** A zeroed `vm_rwregs_params` for this vCPU with `mask`. */
  #rwParams(mask: number): Uint8Array {
    const rw = this.#rw;
    rw.fill(0);
    const v = new DataView(rw.buffer);
    v.setUint32(RW_VM_ID, this.vm.id, true);
    v.setUint32(RW_VCPU_ID, this.id, true);
    v.setBigUint64(RW_MASK, BigInt(mask), true);
    return rw;
  }

  #flush(): void {
    if (this.#dirty === 0) return;
    const rw = this.#rwParams(this.#dirty);
    rw.set(this.#exit.subarray(EXIT_VRS, EXIT_VRS + VRS_SIZE), RW_REGS);
    this.#libc.ioctl(this.vm.fd, abi.VMM_IOC_WRITEREGS, rw);
    this.#dirty = 0;
  }

  /** Reloads the register image with VMM_IOC_READREGS (after a failed RUN). */
  #reload(): void {
    const rw = this.#rwParams(abi.VM_RWREGS_ALL);
    this.#libc.ioctl(this.vm.fd, abi.VMM_IOC_READREGS, rw);
    this.#exit.set(rw.subarray(RW_REGS, RW_REGS + VRS_SIZE), EXIT_VRS);
    this.#regs = undefined;
    this.#sregs = undefined;
  }

  protected doRun(): VcpuExit {
    if (this.#pending.kind !== "none") {
      throw new Error("OpenbsdVcpu.run: the previous IO/MMIO exit was not completed");
    }
    this.#flush();
    const rv = this.#runView;
    if (this.#inject !== undefined) {
      rv.setUint8(RUNP_INJECT_VECTOR, this.#inject);
      rv.setUint32(RUNP_INJECT_ERRORCODE, 0, true);
      rv.setUint8(RUNP_INJECT_TYPE, abi.VCPU_INJECT_INTR);
      this.#inject = undefined;
    } else {
      rv.setUint8(RUNP_INJECT_VECTOR, 0);
      rv.setUint32(RUNP_INJECT_ERRORCODE, 0, true);
      rv.setUint8(RUNP_INJECT_TYPE, abi.VCPU_INJECT_NONE);
    }
    rv.setUint8(RUNP_INTR_PENDING, this.#window ? 1 : 0);
    rv.setUint16(RUNP_EXIT_REASON, 0, true);
    rv.setUint8(RUNP_IRQREADY, 0);
    this.#regs = undefined;
    this.#sregs = undefined;
    const r = this.#libc.ioctlTry(this.vm.fd, abi.VMM_IOC_RUN, this.#run, [
      "EINTR",
      "EAGAIN",
      "EIO",
    ]);
    if (r < 0) return this.#runFailed(r);
    this.#irqReady = rv.getUint8(RUNP_IRQREADY) !== 0;
    const decoded = decodeExit(this.#ctx, rv.getUint16(RUNP_EXIT_REASON, true));
    this.#pending = decoded.pending;
    return decoded.exit;
  }

  /** RUN returned -errno for one of the accepted errors. */
  #runFailed(r: number): VcpuExit {
    const err = new IoctlError("VMM_IOC_RUN", abi.VMM_IOC_RUN.value, -r, this.#libc.os);
    this.#irqReady = false;
    if (err.code !== "EIO") return { kind: "interrupted" };
    // vmm(4) fails the RUN with EIO when the guest halts with interrupts off
    // (RIP still at the HLT) and when it cannot enter the guest at all.
    this.#reload();
    const regs = this.getRegisters();
    const bytes = bytesAtRip(this.#ctx, X86_MAX_INSN_BYTES);
    if ((regs.rflags & RFLAGS_IF) === 0n && bytes?.[0] === 0xf4) {
      this.#setImageRegisters({ ...regs, rip: regs.rip + 1n });
      this.#dirty |= abi.VM_RWREGS_GPRS;
      return { kind: "halt" };
    }
    return {
      kind: "fail",
      raw: 0,
      reason: `VMM_IOC_RUN failed: ${err.message}${whereAmI(this.#ctx)}`,
    };
  }

  protected doCompleteIo(): void {
    const p = this.#pending;
    this.#pending = { kind: "none" };
    completeExit(this.#ctx, p);
  }

  readyForInterrupt(): boolean {
    return this.#irqReady && this.#inject === undefined;
  }

  injectInterrupt(vector: number): void {
    if (!this.#irqReady) {
      throw new Error(`Cannot inject vector ${vector}: the last run did not report vrp_irqready`);
    }
    this.#inject = vector & 0xff;
  }

  requestInterruptWindow(wanted: boolean): void {
    this.#window = wanted;
  }

  /**
   * VMM_IOC_INTR: tells the kernel whether an interrupt is pending for this
   * vCPU, as vmd's device threads do while the vCPU runs. Our devices run on
   * the vCPU thread and pass the same bit in `vrp_intr_pending`, so the run
   * loop needs this only from other threads; it is a no-op when unchanged.
   */
  setInterruptPending(pending: boolean): void {
    if (pending === this.#intrLine) return;
    this.#intrLine = pending;
    this.#libc.ioctl(
      this.vm.fd,
      abi.VMM_IOC_INTR,
      abi.vm_intr_params.bytes({
        vip_vm_id: this.vm.id,
        vip_vcpu_id: this.id,
        vip_intr: pending ? 1 : 0,
      }),
    );
  }

  kickToken(): KickToken {
    return { thread: this.#libc.threadId().toString() };
  }

  protected doClose(): void {
    // vCPUs live and die with their VM (VMM_IOC_TERM / closing the VM fd).
  }
}
