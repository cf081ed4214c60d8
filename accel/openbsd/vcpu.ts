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
import type { StructLayout } from "../../ffi/struct.ts";
import { IoctlError } from "../../ffi/errno.ts";
import type { CpuState, KickToken, Registers, SpecialRegisters, Vcpu, VcpuExit } from "../types.ts";
import { VcpuBase } from "../vcpu_base.ts";
import * as abi from "./abi.ts";
import type { VmmAbi } from "./abi_tables.ts";
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

const EXIT = abi.vm_exit;
const EXIT_VRS = EXIT.offsetOf("vrs");
const RIP_AT = EXIT_VRS + gprAt(abi.VCPU_REGS_RIP);
const RAX_AT = EXIT_VRS + gprAt(abi.VCPU_REGS_RAX);
const VRS_SIZE = abi.vcpu_reg_state.size;

/** Offsets of the parameter structs in the layout of the running kernel. */
interface ParamOffsets {
  runVmId?: number;
  runVcpuId: number;
  injectVector: number;
  injectErrorcode: number;
  injectType: number;
  intrPending: number;
  exit: number;
  exitReason: number;
  irqready: number;
  rwVmId?: number;
  rwVcpuId: number;
  rwMask: number;
  rwRegs: number;
}

/** The offset of `field` in `layout`, or undefined when this layout has no such field. */
export function optionalOffset(layout: StructLayout, field: string): number | undefined {
  return layout.fields.some((f) => f.name === field) ? layout.offsetOf(field) : undefined;
}

function paramOffsets(vmAbi: VmmAbi): ParamOffsets {
  const run = vmAbi.structs.vm_run_params;
  const rw = vmAbi.structs.vm_rwregs_params;
  return {
    runVmId: optionalOffset(run, "vrp_vm_id"),
    runVcpuId: run.offsetOf("vrp_vcpu_id"),
    injectVector: run.offsetOf("vrp_inject.vie_vector"),
    injectErrorcode: run.offsetOf("vrp_inject.vie_errorcode"),
    injectType: run.offsetOf("vrp_inject.vie_type"),
    intrPending: run.offsetOf("vrp_intr_pending"),
    exit: run.offsetOf("vrp_exit"),
    exitReason: run.offsetOf("vrp_exit_reason"),
    irqready: run.offsetOf("vrp_irqready"),
    rwVmId: optionalOffset(rw, "vrwp_vm_id"),
    rwVcpuId: rw.offsetOf("vrwp_vcpu_id"),
    rwMask: rw.offsetOf("vrwp_mask"),
    rwRegs: rw.offsetOf("vrwp_regs"),
  };
}

/** `{ [idField]: id }` when the layout has that `*_vm_id` field (era B may not). */
export function vmIdField(layout: StructLayout, idField: string, id: number) {
  return optionalOffset(layout, idField) === undefined ? {} : { [idField]: id };
}

const RFLAGS_IF = 1n << 9n;

/** A vmm(4) vCPU; used only on the thread that runs it. */
export class OpenbsdVcpu extends VcpuBase implements Vcpu {
  readonly vm: OpenbsdVm;
  readonly #libc: Libc;
  /** The caller-owned `struct vm_exit`: passed to every RUN; its `vrs` is our register image. */
  readonly #exit = new Uint8Array(EXIT.size);
  readonly #exitView = new DataView(this.#exit.buffer);
  readonly #abi: VmmAbi;
  readonly #at: ParamOffsets;
  readonly #run: Uint8Array;
  readonly #runView: DataView;
  readonly #rw: Uint8Array;
  #regs?: Registers;
  #sregs?: SpecialRegisters;
  /** VM_RWREGS_* groups changed since the last RUN (written with WRITEREGS). */
  #dirty = 0;
  #irqReady = false;
  #inject?: number;
  #window = false;
  #intrLine = false;
  #pending: Pending = { kind: "none" };
  /**
   * RIP of the instruction the last IO/MMIO exit stopped on, until asked
   * whether it runs in an interrupt shadow (then `#shadow` holds the answer).
   */
  #shadowRip?: bigint;
  #shadow = false;
  /** Why vmm(4) terminated this vCPU (RUN and RESETCPU would answer EBUSY). */
  #terminated?: string;
  /** What the exit decoders see of this vCPU. */
  readonly #ctx: ExitContext;

  constructor(vm: OpenbsdVm, id: number, state: CpuState) {
    super(id);
    this.vm = vm;
    this.#libc = vm.accel.libc;
    this.#abi = vm.accel.abi;
    this.#at = paramOffsets(this.#abi);
    this.#run = new Uint8Array(this.#abi.structs.vm_run_params.size);
    this.#runView = new DataView(this.#run.buffer);
    this.#rw = new Uint8Array(this.#abi.structs.vm_rwregs_params.size);
    const vrs = encodeVcpuRegState(state);
    const resetLayout = this.#abi.structs.vm_resetcpu_params;
    const reset = resetLayout.bytes({
      ...vmIdField(resetLayout, "vrp_vm_id", vm.id),
      vrp_vcpu_id: id,
    });
    reset.set(vrs, resetLayout.offsetOf("vrp_init_state"));
    this.#libc.ioctl(vm.fd, this.#abi.requests.VMM_IOC_RESETCPU, reset);
    this.#exit.set(vrs, EXIT_VRS);
    if (this.#at.runVmId !== undefined) this.#runView.setUint32(this.#at.runVmId, vm.id, true);
    this.#runView.setUint32(this.#at.runVcpuId, id, true);
    this.#runView.setBigUint64(this.#at.exit, this.#libc.addressOf(this.#exit), true);
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
    if (this.#at.rwVmId !== undefined) v.setUint32(this.#at.rwVmId, this.vm.id, true);
    v.setUint32(this.#at.rwVcpuId, this.id, true);
    v.setBigUint64(this.#at.rwMask, BigInt(mask), true);
    return rw;
  }

  #flush(): void {
    if (this.#dirty === 0) return;
    const rw = this.#rwParams(this.#dirty);
    rw.set(this.#exit.subarray(EXIT_VRS, EXIT_VRS + VRS_SIZE), this.#at.rwRegs);
    this.#libc.ioctl(this.vm.fd, this.#abi.requests.VMM_IOC_WRITEREGS, rw);
    this.#dirty = 0;
  }

  /** Reloads the register image with VMM_IOC_READREGS (after a failed RUN). */
  #reload(): void {
    const rw = this.#rwParams(abi.VM_RWREGS_ALL);
    this.#libc.ioctl(this.vm.fd, this.#abi.requests.VMM_IOC_READREGS, rw);
    const at = this.#at.rwRegs;
    this.#exit.set(rw.subarray(at, at + VRS_SIZE), EXIT_VRS);
    this.#regs = undefined;
    this.#sregs = undefined;
  }

  protected doRun(): VcpuExit {
    if (this.#pending.kind !== "none") {
      throw new Error("OpenbsdVcpu.run: the previous IO/MMIO exit was not completed");
    }
    if (this.#terminated) {
      return {
        kind: "fail",
        raw: 0,
        reason: `vmm(4) terminated vCPU ${this.id} (${this.#terminated}): it cannot run again`,
      };
    }
    this.#flush();
    const rv = this.#runView;
    const at = this.#at;
    if (this.#inject !== undefined) {
      rv.setUint8(at.injectVector, this.#inject);
      rv.setUint32(at.injectErrorcode, 0, true);
      rv.setUint8(at.injectType, abi.VCPU_INJECT_INTR);
      this.#inject = undefined;
    } else {
      rv.setUint8(at.injectVector, 0);
      rv.setUint32(at.injectErrorcode, 0, true);
      rv.setUint8(at.injectType, abi.VCPU_INJECT_NONE);
    }
    rv.setUint8(at.intrPending, this.#window ? 1 : 0);
    // The kernel takes its interrupt line from vrp_intr_pending on every RUN,
    // so that is what VMM_IOC_INTR would change from now on.
    this.#intrLine = this.#window;
    rv.setUint16(at.exitReason, 0, true);
    rv.setUint8(at.irqready, 0);
    this.#regs = undefined;
    this.#sregs = undefined;
    const r = this.#libc.ioctlTry(this.vm.fd, this.#abi.requests.VMM_IOC_RUN, this.#run, [
      "EINTR",
      "EAGAIN",
      "EIO",
    ]);
    if (r < 0) return this.#runFailed(r);
    this.#irqReady = rv.getUint8(at.irqready) !== 0;
    const decoded = decodeExit(this.#ctx, rv.getUint16(at.exitReason, true));
    this.#pending = decoded.pending;
    const k = decoded.exit.kind;
    this.#shadow = false;
    this.#shadowRip = k === "io-in" || k === "io-out" || k === "mmio-read" || k === "mmio-write"
      ? this.#exitView.getBigUint64(RIP_AT, true)
      : undefined;
    return decoded.exit;
  }

  /** RUN returned -errno for one of the accepted errors. */
  #runFailed(r: number): VcpuExit {
    const err = new IoctlError(
      "VMM_IOC_RUN",
      this.#abi.requests.VMM_IOC_RUN.value,
      -r,
      this.#libc.os,
    );
    this.#irqReady = false;
    if (err.code !== "EIO") return { kind: "interrupted" };
    // vmm(4) fails the RUN with EIO when the guest halts with interrupts off
    // and when it cannot enter the guest at all. On a halt it also
    // terminates the vCPU; Intel (vmx_handle_hlt) leaves RIP at the HLT, AMD
    // (svm_handle_hlt) has already stepped over it.
    this.#reload();
    const regs = this.getRegisters();
    if ((regs.rflags & RFLAGS_IF) === 0n) {
      const intel = bytesAtRip(this.#ctx, 1)?.[0] === 0xf4;
      const amd = !intel && regs.rip > 0n && bytesAtRip(this.#ctx, 1, -1n)?.[0] === 0xf4;
      if (intel || amd) {
        if (intel) this.#setImageRegisters({ ...regs, rip: regs.rip + 1n });
        this.#terminated = "HLT with interrupts off";
        return { kind: "halt" };
      }
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

  /**
   * vrp_irqready is only RFLAGS.IF: vmm(4) drops an injection while the
   * guest sits in an STI / MOV SS shadow (it does not clear the shadow when
   * userspace steps over the exiting instruction), and the PIC would lose
   * the vector it acknowledged. So after an IO/MMIO exit whose instruction
   * follows STI (FB), MOV SS, r16 (8E D0+r) or POP SS (17), wait for the
   * interrupt window instead. A false match only delays the interrupt by
   * one exit.
   */
  readyForInterrupt(): boolean {
    if (!this.#irqReady || this.#inject !== undefined) return false;
    if (this.#shadowRip !== undefined) {
      const rip = this.#shadowRip;
      this.#shadowRip = undefined;
      const before = rip >= 2n ? this.#bytesBefore(rip) : undefined;
      this.#shadow = before !== undefined &&
        (before[1] === 0xfb || (before[0] === 0x8e && (before[1] & 0xf8) === 0xd0) ||
          before[1] === 0x17);
    }
    return !this.#shadow;
  }

  /** The two bytes before linear CS:`rip`, or undefined when they cannot be read. */
  #bytesBefore(rip: bigint): Uint8Array | undefined {
    const delta = rip - 2n - this.getRegisters().rip;
    const b = bytesAtRip(this.#ctx, 2, delta);
    return b && b.length === 2 ? b : undefined;
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
    const layout = this.#abi.structs.vm_intr_params;
    this.#libc.ioctl(
      this.vm.fd,
      this.#abi.requests.VMM_IOC_INTR,
      layout.bytes({
        ...vmIdField(layout, "vip_vm_id", this.vm.id),
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
