/**
 * The vmm(4) emulation driven by raw ioctls (no back-end): the structs, the
 * errors and the duties it leaves to userspace, on real guest code under KVM.
 */
import { zeroRegisters } from "../../loaders/cpu_state.ts";
import assert from "node:assert/strict";
import { IoctlError, SyscallError } from "../../ffi/errno.ts";
import { openLibc } from "../../ffi/libc.ts";
import { seg } from "../../accel/openbsd/test_helpers.ts";
import type { CpuState, Registers, SpecialRegisters } from "../../accel/types.ts";
import * as abi from "../../accel/openbsd/abi.ts";
import { vm_create_params_era_b, VMM_IOC_CREATE_ERA_B } from "../../accel/openbsd/create.ts";
import { encodeVcpuRegState } from "../../accel/openbsd/regs.ts";
import { OpenbsdAccel } from "../../accel/openbsd/vmm.ts";
import { VmmOnKvmLibc } from "./vmm_on_kvm.ts";

function kvmAvailable(): boolean {
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
}
const ignore = !kvmAvailable();
if (ignore) console.warn("vmm_on_kvm_test: skipped: /dev/kvm cannot be opened here");

const RAM = 0x200000;
const C = abi.vm_create_params;
const P = abi.vm_run_params;
const X = abi.vm_exit;
const VRS = X.offsetOf("vrs");
const gpr = (i: number) => VRS + i * 8;

const ZERO: Registers = { ...zeroRegisters(), rsp: 0x8000n, rip: 0x1000n };

function flat32(regs: Partial<Registers> = {}): CpuState {
  const sregs: SpecialRegisters = {
    cs: seg(0xb, { selector: 0x08 }),
    ds: seg(3),
    es: seg(3),
    fs: seg(3),
    gs: seg(3),
    ss: seg(3),
    tr: seg(0xb, { selector: 0x20, s: false, g: false, db: false, limit: 0x67, base: 0x600n }),
    ldt: seg(2, { selector: 0, s: false, g: false, db: false, limit: 0xffff }),
    gdt: { base: 0x500n, limit: 0x2f },
    idt: { base: 0n, limit: 0x3ff },
    cr0: 0x11n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
  };
  return { regs: { ...ZERO, ...regs }, sregs };
}

function real(regs: Partial<Registers> = {}): CpuState {
  const s = flat32(regs);
  const r = (type: number) => seg(type, { selector: 0, limit: 0xffff, db: false, g: false });
  return {
    regs: s.regs,
    sregs: {
      ...s.sregs,
      cs: r(0xb),
      ds: r(3),
      es: r(3),
      fs: r(3),
      gs: r(3),
      ss: r(3),
      tr: seg(0xb, { selector: 0, s: false, g: false, db: false, limit: 0xffff }),
      cr0: 0x10n,
    },
  };
}

/** A VM made with raw ioctls: its id, RAM view and a run() that passes one vm_exit. */
class RawVm {
  readonly libc: VmmOnKvmLibc;
  readonly fd: number;
  readonly id: number;
  readonly mem: Uint8Array;
  readonly exit = new Uint8Array(X.size);
  readonly ev = new DataView(this.exit.buffer);
  readonly params = new Uint8Array(P.size);
  readonly pv = new DataView(this.params.buffer);

  constructor(libc = new VmmOnKvmLibc(openLibc())) {
    this.libc = libc;
    this.fd = libc.open("/dev/vmm", 2);
    const p = C.bytes({
      vcp_nmemranges: 2n,
      vcp_ncpus: 1n,
      vcp_memranges: [
        { vmr_gpa: 0n, vmr_size: BigInt(RAM), vmr_type: abi.VM_MEM_RAM },
        { vmr_gpa: 0xc0000000n, vmr_size: 0x40000000n, vmr_type: abi.VM_MEM_MMIO },
      ],
      vcp_name: "raw",
    });
    libc.ioctl(this.fd, abi.VMM_IOC_CREATE, p);
    const d = C.decode(new DataView(p.buffer));
    this.id = d.vcp_id;
    this.mem = libc.memoryAt(d.vcp_memranges[0].vmr_va, RAM);
    assert.equal(d.vcp_memranges[1].vmr_va, 0n, "an MMIO range gets no mapping");
    this.pv.setUint32(0, this.id, true);
    this.pv.setBigUint64(P.offsetOf("vrp_exit"), libc.addressOf(this.exit), true);
  }

  reset(state: CpuState): void {
    const p = abi.vm_resetcpu_params.bytes({ vrp_vm_id: this.id, vrp_vcpu_id: 0 });
    p.set(encodeVcpuRegState(state), abi.vm_resetcpu_params.offsetOf("vrp_init_state"));
    this.libc.ioctl(this.fd, abi.VMM_IOC_RESETCPU, p);
  }

  /** One VMM_IOC_RUN; returns the exit reason. */
  run(inject?: number, pending = false): number {
    this.pv.setUint8(P.offsetOf("vrp_inject.vie_type"), inject === undefined ? 0 : 1);
    this.pv.setUint8(P.offsetOf("vrp_inject.vie_vector"), inject ?? 0);
    this.pv.setUint8(P.offsetOf("vrp_intr_pending"), pending ? 1 : 0);
    this.libc.ioctl(this.fd, abi.VMM_IOC_RUN, this.params);
    return this.pv.getUint16(P.offsetOf("vrp_exit_reason"), true);
  }

  get irqready(): boolean {
    return this.pv.getUint8(P.offsetOf("vrp_irqready")) !== 0;
  }

  reg(i: number): bigint {
    return this.ev.getBigUint64(gpr(i), true);
  }

  setReg(i: number, v: bigint): void {
    this.ev.setBigUint64(gpr(i), v, true);
  }

  vei(): { size: number; dir: number; port: number; data: number; len: number; string: number } {
    const e = this.ev;
    return {
      size: e.getUint8(0),
      dir: e.getUint8(1),
      string: e.getUint8(3),
      port: e.getUint16(6, true),
      data: e.getUint32(8, true),
      len: e.getUint8(12),
    };
  }

  close(): void {
    this.libc.ioctl(
      this.fd,
      abi.VMM_IOC_TERM,
      abi.vm_terminate_params.bytes({ vtp_vm_id: this.id }),
    );
    this.libc.close(this.fd);
    this.libc.shutdown();
  }
}

function test(name: string, fn: () => void): void {
  Deno.test({ name: `vmm-on-kvm: ${name}`, ignore, fn });
}

test("IO: RIP is left at the instruction; the same OUT exits again until userspace advances it", () => {
  const vm = new RawVm();
  try {
    // mov al, 0x41; out 0x80, al; mov al, 0x99; in al, 0x71; hlt
    vm.mem.set([0xb0, 0x41, 0xe6, 0x80, 0xb0, 0x99, 0xe4, 0x71, 0xf4], 0x1000);
    vm.reset(flat32({ rax: 0xffffffff_aabbcc00n, rflags: 0x202n }));
    assert.equal(vm.run(), abi.VMX_EXIT_IO);
    assert.deepEqual(vm.vei(), {
      size: 1,
      dir: abi.VEI_DIR_OUT,
      string: 0,
      port: 0x80,
      data: 0xaabbcc41,
      len: 2,
    });
    assert.equal(vm.reg(abi.VCPU_REGS_RIP), 0x1002n);
    assert.equal(vm.ev.getUint8(4), 1, "vei_encoding: immediate port");
    // Not advancing RIP: the OUT happens again.
    assert.equal(vm.run(), abi.VMX_EXIT_IO);
    assert.equal(vm.vei().port, 0x80);
    assert.equal(vm.reg(abi.VCPU_REGS_RIP), 0x1002n);
    vm.setReg(abi.VCPU_REGS_RIP, 0x1004n);
    assert.equal(vm.run(), abi.VMX_EXIT_IO);
    assert.deepEqual(vm.vei(), {
      size: 1,
      dir: abi.VEI_DIR_IN,
      string: 0,
      port: 0x71,
      data: 0xaabbcc99,
      len: 2,
    });
    assert.equal(vm.reg(abi.VCPU_REGS_RIP), 0x1006n);
    assert.equal(vm.reg(abi.VCPU_REGS_RAX), 0xffffffff_aabbcc99n, "nothing written to RAX yet");
    // Userspace merges the IN byte and advances; RAX becomes the zero-extended vei_data.
    vm.ev.setUint8(8, 0x5a);
    vm.setReg(abi.VCPU_REGS_RIP, 0x1008n);
    assert.equal(vm.run(), abi.VMX_EXIT_HLT);
    assert.equal(vm.reg(abi.VCPU_REGS_RAX), 0xaabbcc5an);
    assert.equal(vm.reg(abi.VCPU_REGS_RIP), 0x1009n, "HLT: RIP already past it");
    assert.equal(vm.irqready, true);
  } finally {
    vm.close();
  }
});

test("MMIO: an EPT violation with MMIO_ASSIST and the length only; GPRs come back from vrs", () => {
  const vm = new RawVm();
  try {
    // mov eax, [0xc0001000]; mov dword [0xc0000010], 0x12345678; mov [0xc0000020], bl; hlt
    vm.mem.set([
      0xa1,
      0x00,
      0x10,
      0x00,
      0xc0,
      0xc7,
      0x05,
      0x10,
      0x00,
      0x00,
      0xc0,
      0x78,
      0x56,
      0x34,
      0x12,
      0x88,
      0x1d,
      0x20,
      0x00,
      0x00,
      0xc0,
      0xf4,
    ], 0x1000); // deno-fmt-ignore
    vm.reset(flat32({ rbx: 0x77n, rflags: 0x202n }));
    for (const [rip, len] of [[0x1000n, 5], [0x1005n, 10], [0x100fn, 6]] as const) {
      assert.equal(vm.run(), abi.VMX_EXIT_EPT_VIOLATION);
      assert.equal(vm.ev.getUint8(0), abi.VEE_FAULT_MMIO_ASSIST);
      assert.equal(vm.ev.getUint8(1), abi.VEE_LEN_VALID, "VMX: no instruction bytes");
      assert.equal(vm.ev.getUint8(2), len);
      assert.equal(vm.reg(abi.VCPU_REGS_RIP), rip, "RIP at the MMIO instruction");
      // The load's result goes in through vrs, as vmd does it.
      if (rip === 0x1000n) vm.setReg(abi.VCPU_REGS_RAX, 0xfeedn);
      vm.setReg(abi.VCPU_REGS_RIP, rip + BigInt(len));
    }
    assert.equal(vm.run(), abi.VMX_EXIT_HLT);
    assert.equal(vm.reg(abi.VCPU_REGS_RAX), 0xfeedn);
  } finally {
    vm.close();
  }
});

test("SVM flavor: SVM exit reasons and decode-assist bytes", () => {
  const vm = new RawVm(new VmmOnKvmLibc(openLibc(), { flavor: "svm" }));
  try {
    vm.mem.set([0x8b, 0x03, 0xe6, 0x80, 0xf4], 0x1000); // mov eax, [ebx]; out 0x80, al; hlt
    vm.reset(flat32({ rbx: 0xc0000000n, rflags: 0x202n }));
    assert.equal(vm.run(), abi.SVM_VMEXIT_NPF);
    // AMD: the bytes fetched and their count, never a length (svm_handle_np_fault).
    assert.equal(vm.ev.getUint8(1), abi.VEE_BYTES_VALID);
    assert.equal(vm.ev.getUint8(2), 15);
    assert.deepEqual([...vm.exit.subarray(3, 7)], [0x8b, 0x03, 0xe6, 0x80]);
    vm.setReg(abi.VCPU_REGS_RIP, 0x1002n);
    assert.equal(vm.run(), abi.SVM_VMEXIT_IOIO);
    vm.setReg(abi.VCPU_REGS_RIP, 0x1004n);
    assert.equal(vm.run(), abi.SVM_VMEXIT_HLT);
  } finally {
    vm.close();
  }
});

test("interrupts: vrp_intr_pending opens a window; vrp_inject delivers the vector", () => {
  const vm = new RawVm();
  try {
    // Real mode. IVT[0x20] -> 0000:2000 (out 0x81, al; iret). Main: sti; jmp $.
    new DataView(vm.mem.buffer, vm.mem.byteOffset).setUint32(0x20 * 4, 0x2000, true);
    vm.mem.set([0xe6, 0x81, 0xcf], 0x2000);
    vm.mem.set([0xfb, 0xeb, 0xfe], 0x1000);
    vm.reset(real({ rflags: 0x2n }));
    assert.equal(vm.run(undefined, true), abi.VMX_EXIT_INT_WINDOW);
    assert.equal(vm.irqready, true);
    assert.equal(vm.run(0x20), abi.VMX_EXIT_IO);
    assert.equal(vm.vei().port, 0x81, "the handler of vector 0x20 ran");
    assert.equal(vm.reg(abi.VCPU_REGS_RIP), 0x2000n);
  } finally {
    vm.close();
  }
});

function readRip(vm: RawVm): bigint {
  const rw = abi.vm_rwregs_params.bytes({
    vrwp_vm_id: vm.id,
    vrwp_mask: BigInt(abi.VM_RWREGS_GPRS),
  });
  vm.libc.ioctl(vm.fd, abi.VMM_IOC_READREGS, rw);
  return abi.vm_rwregs_params.decode(new DataView(rw.buffer)).vrwp_regs.vrs_gprs[abi.VCPU_REGS_RIP];
}

test("HLT with interrupts off: EIO, RIP at the HLT (Intel) or past it (AMD), then EBUSY", () => {
  for (const [flavor, rip] of [["vmx", 0x1001n], ["svm", 0x1002n]] as const) {
    const vm = new RawVm(new VmmOnKvmLibc(openLibc(), { flavor }));
    try {
      vm.mem.set([0x90, 0xf4], 0x1000);
      vm.reset(flat32({ rflags: 0x2n }));
      assert.throws(() => vm.run(), (e) => e instanceof IoctlError && e.code === "EIO");
      assert.equal(readRip(vm), rip, flavor);
      // The vCPU is TERMINATED: vm_run and vm_resetcpu refuse it.
      assert.throws(() => vm.run(), (e) => e instanceof IoctlError && e.code === "EBUSY");
      assert.throws(
        () => vm.reset(flat32({ rflags: 0x2n })),
        (e) => e instanceof IoctlError && e.code === "EBUSY",
      );
    } finally {
      vm.close();
    }
  }
});

test("MMIO instruction info per vendor: AMD's fetch stops at the page end; Intel's length may be absent", () => {
  const svm = new RawVm(new VmmOnKvmLibc(openLibc(), { flavor: "svm" }));
  try {
    // mov eax, [ebx] in the last two bytes of a page, then out 0x80, al on the next.
    svm.mem.set([0x8b, 0x03], 0x1ffe);
    svm.mem.set([0xe6, 0x80], 0x2000);
    svm.reset(flat32({ rbx: 0xc0000000n, rflags: 0x202n, rip: 0x1ffen }));
    assert.equal(svm.run(), abi.SVM_VMEXIT_NPF);
    assert.equal(svm.ev.getUint8(1), abi.VEE_BYTES_VALID);
    assert.equal(svm.ev.getUint8(2), 2, "two bytes fetched, not 15");
    assert.deepEqual([...svm.exit.subarray(3, 8)], [0x8b, 0x03, 0, 0, 0]);
  } finally {
    svm.close();
  }
  const vmx = new RawVm(new VmmOnKvmLibc(openLibc(), { vmxInsnLength: "absent" }));
  try {
    vmx.mem.set([0x8b, 0x03], 0x1000);
    vmx.reset(flat32({ rbx: 0xc0000000n, rflags: 0x202n }));
    assert.equal(vmx.run(), abi.VMX_EXIT_EPT_VIOLATION);
    assert.equal(vmx.ev.getUint8(1), 0, "neither a length nor bytes");
  } finally {
    vmx.close();
  }
});

test("interrupt state per RUN: vrp_intr_pending replaces VMM_IOC_INTR, vrp_irqready is RFLAGS.IF, a shadow drops the injection", () => {
  const vm = new RawVm();
  try {
    // Real mode. IVT[0x20] -> 0000:2000 (out 0x81, al; iret).
    new DataView(vm.mem.buffer, vm.mem.byteOffset).setUint32(0x20 * 4, 0x2000, true);
    vm.mem.set([0xe6, 0x81, 0xcf], 0x2000);
    // sti; out 0x80, al (in the STI shadow); out 0x82, al; jmp $
    vm.mem.set([0xfb, 0xe6, 0x80, 0xe6, 0x82, 0xeb, 0xfe], 0x1000);
    vm.reset(real({ rflags: 0x2n }));
    // VMM_IOC_INTR asserts the line, but the RUN's vrp_intr_pending 0 replaces it: no window exit.
    vm.libc.ioctl(
      vm.fd,
      abi.VMM_IOC_INTR,
      abi.vm_intr_params.bytes({ vip_vm_id: vm.id, vip_vcpu_id: 0, vip_intr: 1 }),
    );
    assert.equal(vm.run(), abi.VMX_EXIT_IO);
    assert.equal(vm.vei().port, 0x80);
    assert.equal(vm.irqready, true, "IF is set, even inside the STI shadow");
    // Injected while the guest sat in the shadow at the exit: dropped, the guest goes on.
    vm.setReg(abi.VCPU_REGS_RIP, 0x1003n);
    assert.equal(vm.run(0x20), abi.VMX_EXIT_IO);
    assert.equal(vm.vei().port, 0x82, "vector 0x20's handler did not run");
    assert.equal(vm.libc.droppedInjections, 1);
    // Out of the shadow the same injection is taken.
    vm.setReg(abi.VCPU_REGS_RIP, 0x1005n);
    assert.equal(vm.run(0x20), abi.VMX_EXIT_IO);
    assert.equal(vm.vei().port, 0x81, "vector 0x20's handler ran");
  } finally {
    vm.close();
  }
});

test("registers: RESETCPU then READREGS returns every group as written", () => {
  const vm = new RawVm();
  try {
    const state = flat32({
      rax: 1n,
      rcx: 2n,
      rdx: 3n,
      rbx: 4n,
      rsi: 5n,
      rdi: 6n,
      r8: 8n,
      r15: 15n,
      rip: 0x1234n,
    });
    vm.reset(state);
    const rw = abi.vm_rwregs_params.bytes({
      vrwp_vm_id: vm.id,
      vrwp_mask: BigInt(abi.VM_RWREGS_ALL),
    });
    vm.libc.ioctl(vm.fd, abi.VMM_IOC_READREGS, rw);
    const at = abi.vm_rwregs_params.offsetOf("vrwp_regs");
    const got = abi.vcpu_reg_state.decode(new DataView(rw.buffer), at);
    const want = abi.vcpu_reg_state.decode(new DataView(encodeVcpuRegState(state).buffer));
    assert.deepEqual(got.vrs_gprs, want.vrs_gprs);
    assert.deepEqual(got.vrs_sregs[abi.VCPU_REGS_CS], want.vrs_sregs[abi.VCPU_REGS_CS]);
    assert.deepEqual(got.vrs_sregs[abi.VCPU_REGS_DS], want.vrs_sregs[abi.VCPU_REGS_DS]);
    assert.deepEqual(got.vrs_sregs[abi.VCPU_REGS_TR], want.vrs_sregs[abi.VCPU_REGS_TR]);
    assert.deepEqual(got.vrs_gdtr, want.vrs_gdtr);
    assert.equal(got.vrs_crs[abi.VCPU_REGS_CR0] & 0x11n, 0x11n);
    assert.equal(got.vrs_crs[abi.VCPU_REGS_XCR0], 1n);
    assert.deepEqual(got.vrs_drs, want.vrs_drs);
    // WRITEREGS of one group changes only that group.
    const w = abi.vm_rwregs_params.bytes({
      vrwp_vm_id: vm.id,
      vrwp_mask: BigInt(abi.VM_RWREGS_GPRS),
    });
    new DataView(w.buffer).setBigUint64(at + abi.VCPU_REGS_RBX * 8, 0xabcdn, true);
    vm.libc.ioctl(vm.fd, abi.VMM_IOC_WRITEREGS, w);
    vm.libc.ioctl(vm.fd, abi.VMM_IOC_READREGS, rw);
    const again = abi.vcpu_reg_state.decode(new DataView(rw.buffer), at);
    assert.equal(again.vrs_gprs[abi.VCPU_REGS_RBX], 0xabcdn);
    assert.equal(again.vrs_gprs[abi.VCPU_REGS_RIP], 0n);
    assert.deepEqual(again.vrs_sregs, got.vrs_sregs);
  } finally {
    vm.close();
  }
});

test("errors as vmm(4) gives them: EINVAL, ENOMEM, ENOENT, ENOTTY; INFO and TERM", () => {
  const libc = new VmmOnKvmLibc(openLibc(), { maxVcpus: 1 });
  const fd = libc.open("/dev/vmm", 2);
  const create = (ranges: [bigint, bigint, number][], ncpus = 1n) =>
    C.bytes({
      vcp_nmemranges: BigInt(ranges.length),
      vcp_ncpus: ncpus,
      vcp_memranges: ranges.map(([g, s, t]) => ({ vmr_gpa: g, vmr_size: s, vmr_type: t })),
      vcp_name: "e",
    });
  const code = (f: () => unknown) => {
    try {
      f();
      return "ok";
    } catch (e) {
      if (e instanceof IoctlError) return e.code;
      throw e;
    }
  };
  try {
    const R = abi.VM_MEM_RAM;
    assert.equal(
      code(() => libc.ioctl(fd, abi.VMM_IOC_CREATE, create([[0n, 0x1800n, R]]))),
      "EINVAL",
    );
    assert.equal(
      code(() =>
        libc.ioctl(fd, abi.VMM_IOC_CREATE, create([[0x2000n, 0x1000n, R], [0n, 0x1000n, R]]))
      ),
      "EINVAL",
    );
    assert.equal(
      code(() => libc.ioctl(fd, abi.VMM_IOC_CREATE, create([[128n << 30n, 0x1000n, R]]))),
      "EINVAL",
    );
    assert.equal(code(() => libc.ioctl(fd, abi.VMM_IOC_CREATE, create([]))), "EINVAL");
    assert.equal(
      code(() => libc.ioctl(fd, abi.VMM_IOC_CREATE, create([[0n, 0x1000n, R]], 2n))),
      "EINVAL",
    );
    const ok = create([[0n, 0x10000n, R]]);
    assert.equal(code(() => libc.ioctl(fd, abi.VMM_IOC_CREATE, ok)), "ok");
    const id = new DataView(ok.buffer).getUint32(C.offsetOf("vcp_id"), true);
    assert.equal(
      code(() => libc.ioctl(fd, abi.VMM_IOC_CREATE, create([[0n, 0x10000n, R]]))),
      "ENOMEM",
    );
    // INFO: too small a buffer reports the size needed.
    const info = abi.vm_info_params.bytes({ vip_size: 0n });
    libc.ioctl(fd, abi.VMM_IOC_INFO, info);
    assert.equal(new DataView(info.buffer).getBigUint64(0, true), 160n);
    const results = new Uint8Array(160);
    const full = abi.vm_info_params.bytes({ vip_size: 160n, vip_info: libc.addressOf(results) });
    libc.ioctl(fd, abi.VMM_IOC_INFO, full);
    const r = abi.vm_info_result.decode(new DataView(results.buffer));
    assert.deepEqual([r.vir_id, r.vir_ncpus, r.vir_memory_size, r.vir_creator_pid], [
      id,
      1n,
      0x10000n,
      Deno.pid,
    ]);
    assert.equal(String.fromCharCode(...r.vir_name.slice(0, 1)), "e");
    // Unknown VM or vCPU: ENOENT; unknown request: ENOTTY.
    const run = P.bytes({ vrp_vm_id: 99 });
    assert.equal(code(() => libc.ioctl(fd, abi.VMM_IOC_RUN, run)), "ENOENT");
    assert.equal(
      code(() => libc.ioctl(fd, abi.VMM_IOC_RUN, P.bytes({ vrp_vm_id: id, vrp_vcpu_id: 3 }))),
      "ENOENT",
    );
    assert.equal(code(() => libc.ioctl(fd, abi.VMM_IOC_SHAREMEM, new Uint8Array(656))), "ENOTTY");
    assert.equal(
      code(() =>
        libc.ioctl(fd, abi.VMM_IOC_TERM, abi.vm_terminate_params.bytes({ vtp_vm_id: 99 }))
      ),
      "ENOENT",
    );
    assert.equal(
      code(() =>
        libc.ioctl(fd, abi.VMM_IOC_TERM, abi.vm_terminate_params.bytes({ vtp_vm_id: id }))
      ),
      "ok",
    );
    assert.equal(code(() => libc.ioctl(fd, abi.VMM_IOC_RUN, P.bytes({ vrp_vm_id: id }))), "ENOENT");
  } finally {
    libc.close(fd);
    libc.shutdown();
  }
});

test("open: a missing KVM looks like a host without vmm(4); other paths are the real ones", () => {
  const libc = new VmmOnKvmLibc(openLibc(), { kvmPath: "/nonexistent/kvm" });
  assert.throws(
    () => libc.open("/dev/vmm", 2),
    (e) => e instanceof SyscallError && e.code === "ENXIO",
  );
  assert.throws(() => new OpenbsdAccel(libc), /vmm\(4\) is not enabled: \/dev\/vmm is missing/);
  const fd = libc.open("/dev/null", 0);
  assert.ok(fd >= 0 && fd < 0x3ff00000);
  libc.close(fd);
});

test("era B: CREATE returns a VM fd; /dev/vmm refuses the rest; closing the fd destroys the VM", () => {
  const libc = new VmmOnKvmLibc(openLibc(), { era: "B" });
  const fd = libc.open("/dev/vmm", 2);
  try {
    const info = abi.vm_info_params.bytes({});
    assert.throws(() => libc.ioctl(fd, abi.VMM_IOC_INFO, info), /ENOTTY/);
    assert.throws(() => libc.ioctl(fd, abi.VMM_IOC_CREATE, C.bytes({})), /ENOTTY/);
    const L = vm_create_params_era_b;
    const p = L.bytes({
      vcp_nmemranges: 1n,
      vcp_ncpus: 2n,
      vcp_memranges: [{ vmr_gpa: 0n, vmr_size: 0x10000n, vmr_type: abi.VM_MEM_RAM }],
    });
    libc.ioctl(fd, VMM_IOC_CREATE_ERA_B, p);
    const vmFd = new DataView(p.buffer).getInt32(L.offsetOf("vcp_fd"), true);
    assert.ok(vmFd > 2 && vmFd !== fd);
    const rw = abi.vm_rwregs_params.bytes({ vrwp_vcpu_id: 1, vrwp_mask: 1n });
    libc.ioctl(vmFd, abi.VMM_IOC_READREGS, rw);
    assert.throws(() => libc.ioctl(fd, abi.VMM_IOC_READREGS, rw), /ENOTTY/);
    assert.throws(() => libc.ioctl(vmFd, abi.VMM_IOC_TERM, new Uint8Array(4)), /ENOTTY/);
    libc.close(vmFd);
    assert.throws(() => libc.ioctl(vmFd, abi.VMM_IOC_READREGS, rw), /EBADF|ENOTTY|not/);
  } finally {
    libc.close(fd);
    libc.shutdown();
  }
});

test("one VM per process: a second CREATE while the first VM's RAM is mapped is refused", () => {
  const libc = new VmmOnKvmLibc(openLibc());
  const accel = new OpenbsdAccel(libc);
  try {
    const options = {
      name: "r",
      ram: [{ gpa: 0, size: 0x100000 }],
      vcpus: 1,
      irqchip: "user" as const,
    };
    const first = accel.createVm(options);
    first.close(); // VMM_IOC_TERM: the VM is gone, its RAM is not
    assert.throws(() => accel.createVm(options), /VMM_IOC_CREATE: ENOMEM/);
    assert.equal(libc.lastError, "a second VMM_IOC_CREATE in one process");
  } finally {
    accel.close();
    libc.shutdown();
  }
  const several = new VmmOnKvmLibc(openLibc(), { oneVmPerProcess: false });
  const a = new OpenbsdAccel(several);
  try {
    const options = {
      name: "s",
      ram: [{ gpa: 0, size: 0x100000 }],
      vcpus: 1,
      irqchip: "user" as const,
    };
    a.createVm(options);
    a.createVm(options);
  } finally {
    a.close();
    several.shutdown();
  }
});
