import assert from "node:assert/strict";
import type { CpuState, Registers, SpecialRegisters } from "../types.ts";
import * as abi from "./abi.ts";
import { FakeVmmLibc, seg } from "./test_helpers.ts";
import { abiForShape, type VmmAbi } from "./abi_tables.ts";
import { ABI_ERA_B_FD_AT_END, vm_create_params_era_b, VMM_IOC_CREATE_ERA_B } from "./create.ts";
import { checkMemRanges, vmmMemRanges } from "./mem_ranges.ts";
import {
  decodeVcpuRegState,
  encodeVcpuRegState,
  segmentAccessRights,
  segmentFromAccessRights,
} from "./regs.ts";
import { OpenbsdAccel } from "./vmm.ts";

const MiB = 1024 * 1024;
const RAM_BYTES = 2 * MiB;
const VM_ID = 5;

/** 32-bit flat protected mode, paging off. */
function flat32(regs: Partial<Registers> = {}): CpuState {
  const sregs: SpecialRegisters = {
    cs: seg(0xb, { selector: 0x08 }),
    ds: seg(3),
    es: seg(3),
    fs: seg(3),
    gs: seg(3),
    ss: seg(3),
    tr: seg(0xb, { selector: 0x20, s: false, g: false, db: false, limit: 0x67, base: 0x600n }),
    ldt: seg(2, { selector: 0, s: false, present: false, unusable: true, g: false, db: false }),
    gdt: { base: 0x500n, limit: 0x2f },
    idt: { base: 0n, limit: 0 },
    cr0: 0x11n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
  };
  return {
    regs: {
      rax: 0n,
      rbx: 0n,
      rcx: 0n,
      rdx: 0n,
      rsi: 0n,
      rdi: 0n,
      rsp: 0x8000n,
      rbp: 0n,
      r8: 0n,
      r9: 0n,
      r10: 0n,
      r11: 0n,
      r12: 0n,
      r13: 0n,
      r14: 0n,
      r15: 0n,
      rip: 0x100000n,
      rflags: 0x202n,
      ...regs,
    },
    sregs,
  };
}

/** A fake /dev/vmm of era A that creates VM 5 and maps its RAM. */
function eraA(libc = new FakeVmmLibc()): FakeVmmLibc {
  const C = abi.vm_create_params;
  libc.on("VMM_IOC_INFO", () => 0);
  libc.on("VMM_IOC_CREATE", (arg) => {
    const v = new DataView(arg.buffer);
    v.setUint32(C.offsetOf("vcp_id"), VM_ID, true);
    const n = Number(v.getBigUint64(0, true));
    for (let i = 0; i < n; i++) {
      const at = C.offsetOf(`vcp_memranges[${i}]`);
      const type = v.getInt32(at + 24, true);
      if (type !== abi.VM_MEM_MMIO) {
        v.setBigUint64(at + 8, libc.map(Number(v.getBigUint64(at + 16, true))), true);
      }
    }
    return 0;
  });
  libc.on("VMM_IOC_RESETCPU", () => 0);
  libc.on("VMM_IOC_WRITEREGS", () => 0);
  libc.on("VMM_IOC_TERM", () => 0);
  return libc;
}

const OPTIONS = {
  name: "t",
  ram: [{ gpa: 0, size: RAM_BYTES }],
  vcpus: 1,
  irqchip: "user" as const,
};

/** The caller's vm_exit buffer behind a RUN's `vrp_exit`. */
function exitOf(libc: FakeVmmLibc, params: Uint8Array): Uint8Array {
  const p = new DataView(params.buffer);
  const b = libc.buffers.get(p.getBigUint64(abi.vm_run_params.offsetOf("vrp_exit"), true));
  assert.ok(b, "vrp_exit does not point at a buffer the back-end took the address of");
  return b;
}

type ExitScript = (exit: DataView, params: DataView, raw: Uint8Array) => number | { errno: string };

/** Answers RUNs from `scripts` in order: each fills the exit and returns the reason. */
function scriptRuns(libc: FakeVmmLibc, scripts: ExitScript[]): Uint8Array[] {
  const seen: Uint8Array[] = [];
  libc.on("VMM_IOC_RUN", (arg) => {
    const exit = exitOf(libc, arg);
    seen.push(exit.slice());
    const s = scripts.shift();
    assert.ok(s, "unexpected VMM_IOC_RUN");
    const pv = new DataView(arg.buffer);
    const r = s(new DataView(exit.buffer), pv, exit);
    if (typeof r !== "number") return r;
    pv.setUint16(abi.vm_run_params.offsetOf("vrp_exit_reason"), r, true);
    return 0;
  });
  return seen;
}

const VRS = abi.vm_exit.offsetOf("vrs");
const gprAt = (i: number) => VRS + i * 8;

/** An IO exit: the kernel's vrs is the vCPU state (here: as reset), plus vei. */
function io(
  port: number,
  size: number,
  dir: number,
  insnLen: number,
  extra: { string?: boolean; rep?: boolean; irqready?: boolean; rip?: bigint } = {},
): ExitScript {
  return (e, p) => {
    e.setUint8(0, size);
    e.setUint8(1, dir);
    e.setUint8(2, extra.rep ? 1 : 0);
    e.setUint8(3, extra.string ? 1 : 0);
    e.setUint16(6, port, true);
    e.setUint32(8, Number(e.getBigUint64(gprAt(abi.VCPU_REGS_RAX), true) & 0xffffffffn), true);
    e.setUint8(12, insnLen);
    if (extra.rip !== undefined) e.setBigUint64(gprAt(abi.VCPU_REGS_RIP), extra.rip, true);
    p.setUint8(abi.vm_run_params.offsetOf("vrp_irqready"), extra.irqready ? 1 : 0);
    return abi.VMX_EXIT_IO;
  };
}

function setup(state: CpuState = flat32(), libc = eraA()) {
  const accel = new OpenbsdAccel(libc);
  const vm = accel.createVm(OPTIONS);
  const vcpu = vm.createVcpu(0, state);
  return { libc, accel, vm, vcpu };
}

Deno.test("open errors say what to do", () => {
  for (
    const [errno, re] of [
      [
        "ENOENT",
        /vmm\(4\) is not enabled: \/dev\/vmm is missing \(enable VMX\/SVM in the firmware; vmm\(4\) needs a CPU with EPT\/RVI\)/,
      ],
      ["ENXIO", /vmm\(4\) is not enabled/],
      ["EACCES", /Error: no permission on \/dev\/vmm: run as root \(doas\)$/],
      ["EPERM", /Error: no permission on \/dev\/vmm: run as root \(doas\)$/],
    ] as const
  ) {
    const libc = eraA();
    libc.openError = errno;
    assert.throws(() => new OpenbsdAccel(libc), re, errno);
  }
});

Deno.test("era detection: VMM_IOC_INFO answers in era A, ENOTTY means era B, and must match the layout", () => {
  const a = new OpenbsdAccel(eraA());
  assert.equal(a.era, "A");
  const info = a.libc as FakeVmmLibc;
  // The probe asks for nothing: a zero-sized buffer.
  assert.deepEqual([...info.callsOf("VMM_IOC_INFO")[0].in!], new Array(24).fill(0));
  const b = new FakeVmmLibc();
  assert.equal(new OpenbsdAccel(b, "/dev/vmm", { abi: ABI_ERA_B_FD_AT_END }).era, "B");
  // An era-B kernel with the era-A table (or the reverse) is refused before any VM exists.
  const noLayout = new FakeVmmLibc();
  assert.throws(
    () => new OpenbsdAccel(noLayout),
    /per-VM fd ABI \(era B: \/dev\/vmm answers ENOTTY to VMM_IOC_INFO\) but the layout given is 2025-12 .*probe this host's headers/,
  );
  assert.deepEqual(noLayout.closed, [noLayout.deviceFd]);
  assert.equal(noLayout.callsOf("VMM_IOC_CREATE").length, 0);
  assert.throws(
    () => new OpenbsdAccel(eraA(), "/dev/vmm", { abi: ABI_ERA_B_FD_AT_END }),
    /keeps VMs on \/dev\/vmm \(era A\) but the layout given is era B with vcp_fd end/,
  );
  const broken = new FakeVmmLibc().on("VMM_IOC_INFO", () => ({ errno: "EIO" }));
  assert.throws(() => new OpenbsdAccel(broken), /VMM_IOC_INFO failed: EIO/);
  assert.deepEqual(broken.closed, [broken.deviceFd]);
});

Deno.test("createVm: RAM, the rest below 4 GiB as VM_MEM_MMIO, the name cut to 63 bytes", () => {
  const libc = eraA();
  const accel = new OpenbsdAccel(libc);
  const name = "x".repeat(70);
  const vm = accel.createVm({
    ...OPTIONS,
    name,
    ram: [{ gpa: 0, size: 0x100000 }, { gpa: 0x100000000, size: 0x200000 }],
  });
  const call = libc.callsOf("VMM_IOC_CREATE")[0];
  assert.equal(call.value, 0xca605601);
  const d = abi.vm_create_params.decode(new DataView(call.in!.buffer));
  assert.equal(d.vcp_nmemranges, 3n);
  assert.equal(d.vcp_ncpus, 1n);
  const ranges = d.vcp_memranges.slice(0, 3).map((
    r: Record<string, bigint | number>,
  ) => [r.vmr_gpa, r.vmr_size, r.vmr_type, r.vmr_va]);
  assert.deepEqual(ranges, [
    [0n, 0x100000n, abi.VM_MEM_RAM, 0n],
    [0x100000n, 0xfff00000n, abi.VM_MEM_MMIO, 0n],
    [0x100000000n, 0x200000n, abi.VM_MEM_RAM, 0n],
  ]);
  assert.deepEqual(d.vcp_name.slice(0, 64), [...new Array(63).fill(0x78), 0]);
  assert.equal(vm.id, VM_ID);
  // Guest memory is the kernel's mapping: writes through it land in the fake's buffers.
  vm.memory.writeU32(0x100000000 + 16, 0xdeadbeef);
  const high = [...libc.memory.values()].find((m) => m.length === 0x200000)!;
  assert.equal(new DataView(high.buffer).getUint32(16, true), 0xdeadbeef);
  assert.equal(vm.memory.size, 0x300000);
  vm.close();
  const term = libc.callsOf("VMM_IOC_TERM")[0];
  assert.equal(new DataView(term.in!.buffer).getUint32(0, true), VM_ID);
});

Deno.test("vmmMemRanges: MMIO from the end of low RAM (at most the PCI hole) to 4 GiB", () => {
  assert.deepEqual(vmmMemRanges([{ gpa: 0, size: 0x4000000 }]), [
    { gpa: 0, size: 0x4000000, type: abi.VM_MEM_RAM },
    { gpa: 0x4000000, size: 0xfc000000, type: abi.VM_MEM_MMIO },
  ]);
  assert.deepEqual(vmmMemRanges([{ gpa: 0, size: 0xc0000000 }, { gpa: 2 ** 32, size: 0x1000 }]), [
    { gpa: 0, size: 0xc0000000, type: abi.VM_MEM_RAM },
    { gpa: 0xc0000000, size: 0x40000000, type: abi.VM_MEM_MMIO },
    { gpa: 2 ** 32, size: 0x1000, type: abi.VM_MEM_RAM },
  ]);
  assert.deepEqual(vmmMemRanges([{ gpa: 0, size: 0xd0000000 }], 0xc0000000), [
    { gpa: 0, size: 0xd0000000, type: abi.VM_MEM_RAM },
    { gpa: 0xd0000000, size: 0x30000000, type: abi.VM_MEM_MMIO },
  ]);
  // The MMIO range starts where RAM ends even when the hole would start later.
  assert.deepEqual(vmmMemRanges([{ gpa: 0, size: 0x1000 }], 0xfffff000), [
    { gpa: 0, size: 0x1000, type: abi.VM_MEM_RAM },
    { gpa: 0x1000, size: 0xfffff000, type: abi.VM_MEM_MMIO },
  ]);
});

Deno.test("memory ranges are checked as vmm(4) checks them, with clear errors", () => {
  const R = abi.VM_MEM_RAM;
  assert.throws(
    () => checkMemRanges([{ gpa: 0x800, size: 0x1000, type: R }]),
    /Memory range 0 at "0x800" of "0x1000" bytes is not page aligned/,
  );
  assert.throws(() => checkMemRanges([{ gpa: 0, size: 0x1800, type: R }]), /not page aligned/);
  assert.throws(
    () =>
      checkMemRanges([{ gpa: 0x2000, size: 0x1000, type: R }, {
        gpa: 0x1000,
        size: 0x1000,
        type: R,
      }]),
    /Memory range 1 at "0x1000" .* overlaps the previous range or is not in ascending order/,
  );
  assert.throws(
    () =>
      checkMemRanges([{ gpa: 0, size: 0x2000, type: R }, { gpa: 0x1000, size: 0x1000, type: R }]),
    /overlaps/,
  );
  assert.throws(
    () => checkMemRanges([{ gpa: 128 * 1024 * MiB - 0x1000, size: 0x2000, type: R }]),
    /ends beyond vmm\(4\)'s limit of 128 GiB/,
  );
  const many = Array.from({ length: 17 }, (_, i) => ({ gpa: i * 0x1000, size: 0x1000, type: R }));
  assert.throws(() => checkMemRanges(many), /at most 16 memory ranges, this VM needs "17"/);
  checkMemRanges([{ gpa: 0, size: 0x1000, type: R }, {
    gpa: 0x1000,
    size: 0x1000,
    type: abi.VM_MEM_MMIO,
  }]);
});

Deno.test("createVm: irqchip kernel, vCPUs beyond era A's 1 and ENOMEM are clear errors", () => {
  const accel = new OpenbsdAccel(eraA());
  assert.throws(
    () => accel.createVm({ ...OPTIONS, irqchip: "kernel" }),
    /irqchip "kernel" is not available with accel "openbsd": vmm\(4\) has no in-kernel interrupt controller/,
  );
  assert.throws(
    () => accel.createVm({ ...OPTIONS, vcpus: 2 }),
    /vmm\(4\) on this host \(ABI era A\) runs 1 vCPU per VM; the config asks for "2"/,
  );
  const libc = eraA().on("VMM_IOC_CREATE", () => ({ errno: "ENOMEM" }));
  assert.throws(
    () => new OpenbsdAccel(libc).createVm(OPTIONS),
    /Cannot create VM "t": vmm\(4\) is out of memory or vCPUs \(VMM_IOC_CREATE: ENOMEM\)/,
  );
  const bad = eraA().on("VMM_IOC_CREATE", () => ({ errno: "EINVAL" }));
  assert.throws(
    () => new OpenbsdAccel(bad).createVm(OPTIONS),
    /rejected the memory ranges .*0x0\+0x200000, 0x200000\+0xffe00000/,
  );
  const vm = new OpenbsdAccel(eraA()).createVm(OPTIONS);
  assert.throws(() => vm.setIrqLine(4, true), /no in-kernel interrupt controller/);
});

/** An era-B kernel whose CREATE puts the VM fd (11) where `kernel` says, maps RAM at `va`. */
function eraB(kernel: VmmAbi, va?: (libc: FakeVmmLibc) => bigint): FakeVmmLibc {
  const L = kernel.structs.vm_create_params;
  const libc = new FakeVmmLibc();
  libc.on("VMM_IOC_CREATE", (arg) => {
    const v = new DataView(arg.buffer);
    v.setInt32(L.offsetOf("vcp_fd"), 11, true);
    v.setBigUint64(
      L.offsetOf("vcp_memranges[0].vmr_va"),
      va ? va(libc) : libc.map(RAM_BYTES),
      true,
    );
    return 0;
  });
  for (const name of ["VMM_IOC_READREGS", "VMM_IOC_RESETCPU", "VMM_IOC_INTR", "VMM_IOC_RUN"]) {
    libc.on(name, (_a, fd) => (fd === 11 ? 0 : { errno: "ENOTTY" }));
  }
  return libc;
}

Deno.test("era B: the VM is the fd the kernel wrote; a failed start leaves no VM fd open", () => {
  assert.equal(vm_create_params_era_b.size, 2664);
  assert.equal(VMM_IOC_CREATE_ERA_B.value, 0xca685601);
  const endIds = ABI_ERA_B_FD_AT_END;
  const opts = { abi: endIds };
  // A kernel with another vm_create_params size rejects the request number itself.
  assert.throws(
    () => new OpenbsdAccel(new FakeVmmLibc(), "/dev/vmm", opts).createVm(OPTIONS),
    /does not take VMM_IOC_CREATE 0xca685601 \(vm_create_params of 2664 bytes, layout era B with vcp_fd end/,
  );
  // Same size, fd elsewhere (after vcp_id): found where the kernel put it, closed, named.
  const afterId = abiForShape({ fd: "after-id", vmIds: true, avic: false });
  const moved = eraB(afterId);
  assert.throws(
    () => new OpenbsdAccel(moved, "/dev/vmm", opts).createVm(OPTIONS),
    /vcp_fd at offset 2656 holds "-1", not a VM fd .*the kernel put it at offset 604 \(closed\)/,
  );
  assert.deepEqual(moved.closed, [11]);
  // The fd is right but the RAM mapping is not: the VM fd is closed before the error.
  const noVa = eraB(endIds, () => 0n);
  assert.throws(
    () => new OpenbsdAccel(noVa, "/dev/vmm", opts).createVm(OPTIONS),
    /returned host address "0x0" for memory range 0/,
  );
  assert.deepEqual(noVa.closed, [11]);
  // A confirmed VM fd carries every later ioctl and is closed to destroy the VM.
  const ok = eraB(endIds);
  const vm = new OpenbsdAccel(ok, "/dev/vmm", opts).createVm({ ...OPTIONS, vcpus: 4 });
  assert.equal(vm.fd, 11);
  assert.equal(
    vm.id,
    0,
    "era B names the VM by its fd, not by a vcp_id the kernel no longer writes",
  );
  assert.equal(new DataView(ok.callsOf("VMM_IOC_CREATE")[0].in!.buffer).getBigUint64(8, true), 4n);
  vm.createVcpu(3, flat32());
  vm.close();
  assert.deepEqual(ok.closed, [11]);
  assert.equal(ok.callsOf("VMM_IOC_TERM").length, 0);
});

Deno.test("era B without *_vm_id: every parameter struct carries the vCPU id where the kernel reads it", () => {
  const noIds = abiForShape({ fd: "after-poscbit", vmIds: false, avic: false });
  const libc = eraB(noIds);
  const vm = new OpenbsdAccel(libc, "/dev/vmm", { abi: noIds }).createVm({ ...OPTIONS, vcpus: 2 });
  const vcpu = vm.createVcpu(1, flat32());
  const reset = libc.callsOf("VMM_IOC_RESETCPU")[0];
  assert.equal(reset.value, noIds.requests.VMM_IOC_RESETCPU.value);
  assert.equal(reset.in!.length, 576, "vcpu_reg_state stays 8-aligned");
  assert.equal(noIds.structs.vm_resetcpu_params.offsetOf("vrp_init_state"), 8);
  assert.equal(new DataView(reset.in!.buffer).getUint32(0, true), 1, "vrp_vcpu_id at 0");
  vcpu.setInterruptPending(true);
  const intr = libc.callsOf("VMM_IOC_INTR")[0];
  assert.equal(intr.value, 0x80085606, "vm_intr_params is 8 bytes without vip_vm_id");
  assert.deepEqual([...intr.in!], [1, 0, 0, 0, 1, 0, 0, 0]);
  vcpu.run();
  const run = libc.callsOf("VMM_IOC_RUN")[0];
  assert.equal(run.value, 0xc0285602);
  const v = new DataView(run.in!.buffer);
  assert.equal(v.getUint32(0, true), 1, "vrp_vcpu_id at 0");
  assert.equal(v.getBigUint64(noIds.structs.vm_run_params.offsetOf("vrp_exit"), true) !== 0n, true);
});

Deno.test("segments: VMX access rights in both directions, vmd's flat templates", () => {
  // vmd: flat64 CS 0xC09F, data 0xC093, LDTR 0x0082, TR 0x008B; real mode CS 0x809F.
  assert.equal(segmentAccessRights(seg(0xf)), 0xc09f);
  assert.equal(segmentAccessRights(seg(3)), 0xc093);
  assert.equal(segmentAccessRights(seg(2, { s: false, g: false, db: false })), 0x82);
  assert.equal(segmentAccessRights(seg(0xb, { s: false, g: false, db: false })), 0x8b);
  assert.equal(segmentAccessRights(seg(0xf, { g: true, db: false })), 0x809f);
  assert.equal(segmentAccessRights(seg(0xb, { l: true, db: false, dpl: 3, avl: true })), 0xb0fb);
  assert.equal(segmentAccessRights(seg(3, { unusable: true, present: false })), 0x1c013);
  for (
    const s of [
      seg(0xb, { l: true, db: false, dpl: 3 }),
      seg(3, { unusable: true }),
      seg(2, { s: false }),
    ]
  ) {
    assert.deepEqual(
      segmentFromAccessRights(s.selector, s.limit, segmentAccessRights(s), s.base),
      s,
    );
  }
});

Deno.test("createVcpu: VMM_IOC_RESETCPU carries the state as vcpu_reg_state", () => {
  const state = flat32({ rax: 0x1111n, rcx: 0x2222n, rbx: 0x3333n, r15: 0x4444n, rip: 0x123456n });
  const { libc } = setup(state);
  const call = libc.callsOf("VMM_IOC_RESETCPU")[0];
  assert.equal(call.value, 0x82405605);
  const v = new DataView(call.in!.buffer);
  assert.equal(v.getUint32(0, true), VM_ID);
  assert.equal(v.getUint32(4, true), 0);
  const at = abi.vm_resetcpu_params.offsetOf("vrp_init_state");
  const d = abi.vcpu_reg_state.decode(v, at);
  assert.equal(d.vrs_gprs[abi.VCPU_REGS_RAX], 0x1111n);
  assert.equal(d.vrs_gprs[abi.VCPU_REGS_RCX], 0x2222n);
  assert.equal(d.vrs_gprs[abi.VCPU_REGS_RBX], 0x3333n);
  assert.equal(d.vrs_gprs[abi.VCPU_REGS_R15], 0x4444n);
  assert.equal(d.vrs_gprs[abi.VCPU_REGS_RIP], 0x123456n);
  assert.equal(d.vrs_gprs[abi.VCPU_REGS_RFLAGS], 0x202n);
  assert.deepEqual(d.vrs_sregs[abi.VCPU_REGS_CS], {
    vsi_sel: 8,
    vsi_limit: 0xffffffff,
    vsi_ar: 0xc09b,
    vsi_base: 0n,
  });
  assert.deepEqual(d.vrs_sregs[abi.VCPU_REGS_TR], {
    vsi_sel: 0x20,
    vsi_limit: 0x67,
    vsi_ar: 0x8b,
    vsi_base: 0x600n,
  });
  assert.equal(d.vrs_sregs[abi.VCPU_REGS_LDTR].vsi_ar, 0x10002);
  assert.deepEqual(d.vrs_gdtr, { vsi_sel: 0, vsi_limit: 0x2f, vsi_ar: 0, vsi_base: 0x500n });
  assert.equal(d.vrs_crs[abi.VCPU_REGS_CR0], 0x11n);
  assert.equal(d.vrs_crs[abi.VCPU_REGS_XCR0], 1n);
  assert.equal(d.vrs_drs[abi.VCPU_REGS_DR6], 0xffff0ff0n);
  assert.equal(d.vrs_drs[abi.VCPU_REGS_DR7], 0x400n);
  assert.deepEqual(decodeVcpuRegState(encodeVcpuRegState(state)), state);
});

Deno.test("IO exits: OUT data from vei_data; completion advances RIP in vrs; IN data lands in RAX", () => {
  const { libc, vcpu } = setup(flat32({ rax: 0xaabbccdd11223344n, rip: 0x100000n }));
  const seen = scriptRuns(libc, [
    io(0x3f8, 1, abi.VEI_DIR_OUT, 1),
    io(0x3fd, 1, abi.VEI_DIR_IN, 1),
    io(0xcfc, 2, abi.VEI_DIR_IN, 2),
    () => abi.VM_EXIT_NONE,
  ]);
  const out = vcpu.run();
  assert.equal(out.kind, "io-out");
  if (out.kind !== "io-out") return;
  assert.deepEqual([out.port, out.size, out.count, [...out.data]], [0x3f8, 1, 1, [0x44]]);
  vcpu.completeIo();
  assert.equal(vcpu.getRegisters().rip, 0x100001n);

  const inb = vcpu.run();
  // vmm(4) got the advanced RIP in vrs (it sets guest RIP from there).
  assert.equal(
    new DataView(seen[1].buffer).getBigUint64(gprAt(abi.VCPU_REGS_RIP), true),
    0x100001n,
  );
  assert.equal(inb.kind, "io-in");
  if (inb.kind !== "io-in") return;
  inb.data[0] = 0x60;
  vcpu.completeIo();
  // The IN byte is merged into vei_data at its width; RAX becomes the zero-extended vei_data.
  assert.equal(vcpu.getRegisters().rax, 0x11223360n);
  assert.equal(vcpu.getRegisters().rip, 0x100002n);

  const inw = vcpu.run();
  const sent = new DataView(seen[2].buffer);
  assert.equal(sent.getUint32(abi.vm_exit.offsetOf("vei.vei_data"), true), 0x11223360);
  assert.equal(sent.getBigUint64(gprAt(abi.VCPU_REGS_RIP), true), 0x100002n);
  if (inw.kind !== "io-in") throw new Error(inw.kind);
  inw.data.set([0x34, 0x12]);
  vcpu.completeIo();
  assert.equal(vcpu.getRegisters().rax, 0x11221234n);
  assert.equal(vcpu.getRegisters().rip, 0x100004n);
  assert.equal(vcpu.run().kind, "interrupted");
  const last = new DataView(seen[3].buffer);
  assert.equal(last.getUint32(abi.vm_exit.offsetOf("vei.vei_data"), true), 0x11221234);
  assert.equal(last.getBigUint64(gprAt(abi.VCPU_REGS_RIP), true), 0x100004n);
  // Plain IO needs no WRITEREGS: vmm(4) takes RIP and RAX from the exit.
  assert.equal(libc.callsOf("VMM_IOC_WRITEREGS").length, 0);
});

Deno.test("interrupts: injected only after vrp_irqready, one vector; intr_pending follows the window request", () => {
  const { libc, vcpu } = setup();
  const seen: DataView[] = [];
  const R = abi.vm_run_params;
  scriptRuns(libc, [
    (_e, p) => (seen.push(new DataView(p.buffer.slice(0))), abi.VMX_EXIT_INT_WINDOW),
    (
      _e,
      p,
    ) => (seen.push(new DataView(p.buffer.slice(0))),
      p.setUint8(R.offsetOf("vrp_irqready"), 1),
      abi.VMX_EXIT_INT_WINDOW),
    (_e, p) => (seen.push(new DataView(p.buffer.slice(0))), abi.VMX_EXIT_HLT),
  ]);
  assert.equal(vcpu.readyForInterrupt(), false);
  assert.throws(() => vcpu.injectInterrupt(0x20), /did not report vrp_irqready/);
  vcpu.requestInterruptWindow(true);
  assert.equal(vcpu.run().kind, "interrupt-window");
  assert.equal(seen[0].getUint8(R.offsetOf("vrp_intr_pending")), 1);
  assert.equal(seen[0].getUint8(R.offsetOf("vrp_inject.vie_type")), abi.VCPU_INJECT_NONE);
  assert.equal(seen[0].getUint32(R.offsetOf("vrp_vm_id"), true), VM_ID);
  assert.equal(vcpu.readyForInterrupt(), false);
  assert.equal(vcpu.run().kind, "interrupt-window");
  assert.equal(vcpu.readyForInterrupt(), true);
  vcpu.injectInterrupt(0x21);
  assert.equal(vcpu.readyForInterrupt(), false, "one vector per run");
  vcpu.requestInterruptWindow(false);
  assert.equal(vcpu.run().kind, "halt");
  assert.equal(seen[2].getUint8(R.offsetOf("vrp_inject.vie_type")), abi.VCPU_INJECT_INTR);
  assert.equal(seen[2].getUint8(R.offsetOf("vrp_inject.vie_vector")), 0x21);
  assert.equal(seen[2].getUint8(R.offsetOf("vrp_intr_pending")), 0);
});

Deno.test("interrupts: no injection right after STI or MOV SS, where vmm(4) would drop it", () => {
  const { libc, vm, vcpu } = setup(flat32({ rip: 0x1001n, rflags: 0x202n }));
  // sti; out 0x80, al; mov ss, ax; out 0x80, al; nop; out 0x80, al
  vm.memory.write(
    0x1000,
    new Uint8Array([0xfb, 0xe6, 0x80, 0x8e, 0xd0, 0xe6, 0x80, 0x90, 0xe6, 0x80]),
  );
  const R = abi.vm_run_params;
  const out = (rip: number) => (e: DataView, p: DataView) => {
    e.setUint8(0, 1); // vei_size
    e.setUint16(6, 0x80, true);
    e.setUint8(12, 2);
    e.setBigUint64(gprAt(abi.VCPU_REGS_RIP), BigInt(rip), true);
    p.setUint8(R.offsetOf("vrp_irqready"), 1);
    return abi.VMX_EXIT_IO;
  };
  scriptRuns(libc, [out(0x1001), out(0x1005), out(0x1008), (_e, p) => {
    p.setUint8(R.offsetOf("vrp_irqready"), 1);
    return abi.VMX_EXIT_INT_WINDOW;
  }]);
  libc.on("VMM_IOC_WRITEREGS", () => 0);
  for (const [rip, ready] of [[0x1001, false], [0x1005, false], [0x1008, true]] as const) {
    const exit = vcpu.run();
    assert.equal(exit.kind, "io-out");
    assert.equal(vcpu.readyForInterrupt(), ready, `after the OUT at 0x${rip.toString(16)}`);
    vcpu.completeIo();
    assert.equal(vcpu.readyForInterrupt(), ready, "the answer holds until the next run");
  }
  assert.equal(vcpu.run().kind, "interrupt-window");
  assert.equal(vcpu.readyForInterrupt(), true, "a window exit is never in a shadow");
});

Deno.test("VMM_IOC_INTR: sent when the pending state changes", () => {
  const { libc, vcpu } = setup();
  libc.on("VMM_IOC_INTR", () => 0);
  vcpu.setInterruptPending(true);
  vcpu.setInterruptPending(true);
  vcpu.setInterruptPending(false);
  const calls = libc.callsOf("VMM_IOC_INTR");
  assert.equal(calls.length, 2);
  assert.equal(calls[0].value, 0x800c5606);
  assert.deepEqual([...calls[0].in!], [5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
  assert.equal(calls[1].in![8], 0);
});

Deno.test("VMM_IOC_INTR: every RUN resets the kernel's line to vrp_intr_pending, so the cache follows it", () => {
  const { libc, vcpu } = setup();
  libc.on("VMM_IOC_INTR", () => 0);
  scriptRuns(libc, [() => abi.VM_EXIT_NONE, () => abi.VM_EXIT_NONE]);
  vcpu.setInterruptPending(true);
  vcpu.run(); // vrp_intr_pending 0: the kernel's vc_intr is 0 now
  vcpu.setInterruptPending(true); // so this must reach the kernel again
  assert.deepEqual(libc.callsOf("VMM_IOC_INTR").map((c) => c.in![8]), [1, 1]);
  vcpu.requestInterruptWindow(true);
  vcpu.run(); // vrp_intr_pending 1
  vcpu.setInterruptPending(true); // already 1 in the kernel
  assert.equal(libc.callsOf("VMM_IOC_INTR").length, 2);
});

Deno.test("exit reasons: VMX and SVM sets, NONE, TERMINATED, and unknown reasons fail by name", () => {
  const cases: [number, string][] = [
    [abi.VMX_EXIT_HLT, "halt"],
    [abi.SVM_VMEXIT_HLT, "halt"],
    [abi.VMX_EXIT_TRIPLE_FAULT, "shutdown"],
    [abi.SVM_VMEXIT_SHUTDOWN, "shutdown"],
    [abi.VMX_EXIT_INT_WINDOW, "interrupt-window"],
    [abi.SVM_VMEXIT_VINTR, "interrupt-window"],
    [abi.VMX_EXIT_EXTINT, "interrupted"],
    [abi.SVM_VMEXIT_INTR, "interrupted"],
    [abi.VMX_EXIT_CPUID, "interrupted"],
    [abi.SVM_VMEXIT_MSR, "interrupted"],
    [abi.VM_EXIT_NONE, "interrupted"],
    [abi.VM_EXIT_TERMINATED, "shutdown"],
  ];
  const { libc, vcpu } = setup();
  scriptRuns(libc, [
    ...cases.map(([r]) => () => r),
    () => abi.VMX_EXIT_EPT_MISCONFIGURATION,
    () => 0x4242,
  ]);
  for (const [reason, kind] of cases) assert.equal(vcpu.run().kind, kind, abi.vmmExitName(reason));
  const misconfig = vcpu.run();
  assert.ok(misconfig.kind === "fail" && misconfig.raw === 49);
  assert.match(misconfig.reason, /unexpected vmm\(4\) exit VMX_EXIT_EPT_MISCONFIGURATION \(49\)/);
  const unknown = vcpu.run();
  assert.ok(unknown.kind === "fail" && unknown.raw === 0x4242);
  assert.match(unknown.reason, /VM_EXIT_0x4242 \(16962\) at RIP 0x100000/);
});

Deno.test("HLT with interrupts off: EIO, RIP per vendor, then the vCPU is gone; other EIO fails with RIP and bytes", () => {
  // Intel leaves RIP at the HLT, AMD has stepped over it; both then terminate the vCPU.
  for (const [vendor, ripAfter] of [["intel", 0x1000n], ["amd", 0x1001n]] as const) {
    const { libc, vm, vcpu } = setup(flat32({ rflags: 0x2n, rip: 0x1000n }));
    vm.memory.write(0x1000, new Uint8Array([0xf4, 0x90]));
    libc.on("VMM_IOC_READREGS", (arg) => {
      const at = abi.vm_rwregs_params.offsetOf("vrwp_regs");
      arg.set(encodeVcpuRegState(flat32({ rflags: 0x2n, rip: ripAfter })), at);
      return 0;
    });
    scriptRuns(libc, [() => ({ errno: "EIO" })]);
    assert.equal(vcpu.run().kind, "halt", vendor);
    assert.equal(vcpu.getRegisters().rip, 0x1001n, `${vendor}: RIP past the HLT`);
    const again = vcpu.run();
    assert.ok(again.kind === "fail", vendor);
    assert.match(again.reason, /vmm\(4\) terminated vCPU 0 \(HLT with interrupts off\)/);
    assert.equal(libc.callsOf("VMM_IOC_RUN").length, 1, `${vendor}: no RUN into EBUSY`);
  }
  const { libc, vm, vcpu } = setup(flat32({ rflags: 0x2n, rip: 0x2000n }));
  vm.memory.write(0x2000, new Uint8Array([0x0f, 0x0b]));
  libc.on("VMM_IOC_READREGS", (arg) => {
    const at = abi.vm_rwregs_params.offsetOf("vrwp_regs");
    arg.set(encodeVcpuRegState(flat32({ rflags: 0x2n, rip: 0x2000n })), at);
    return 0;
  });
  scriptRuns(libc, [() => ({ errno: "EIO" })]);
  const fail = vcpu.run();
  assert.ok(fail.kind === "fail");
  assert.match(fail.reason, /VMM_IOC_RUN failed: .*EIO.* at RIP 0x2000: 0f 0b/);
});

/**
 * An EPT violation with MMIO_ASSIST: VMX gives only the length (VEE_LEN_VALID);
 * SVM only the bytes fetched (VEE_BYTES_VALID, vee_insn_len = their count).
 */
function mmio(insnLen: number, bytes?: number[]): ExitScript {
  return (e, p) => {
    e.setUint8(0, abi.VEE_FAULT_MMIO_ASSIST);
    e.setUint8(1, bytes ? abi.VEE_BYTES_VALID : abi.VEE_LEN_VALID);
    e.setUint8(2, bytes ? bytes.length : insnLen);
    if (bytes) bytes.forEach((b, i) => e.setUint8(3 + i, b));
    p.setUint8(abi.vm_run_params.offsetOf("vrp_irqready"), 1);
    return bytes ? abi.SVM_VMEXIT_NPF : abi.VMX_EXIT_EPT_VIOLATION;
  };
}

Deno.test("MMIO: the instruction is fetched, the address computed and translated, registers written to vrs", () => {
  const state = flat32({
    rbx: 0xfee00000n,
    rcx: 0x87654321n,
    rax: 0xffffffff00000000n,
    rip: 0x1000n,
  });
  const { libc, vm, vcpu } = setup(state);
  // mov eax, [ebx+0x10]; mov [ebx+4], ecx; mov byte [ebx], 0x5a
  vm.memory.write(0x1000, new Uint8Array([0x8b, 0x43, 0x10, 0x89, 0x4b, 0x04, 0xc6, 0x03, 0x5a]));
  const seen = scriptRuns(libc, [
    mmio(3),
    mmio(3),
    mmio(3, [0xc6, 0x03, 0x5a]),
    () => abi.VMX_EXIT_HLT,
  ]);
  const load = vcpu.run();
  assert.equal(load.kind, "mmio-read");
  if (load.kind !== "mmio-read") return;
  assert.equal(load.gpa, 0xfee00010);
  assert.equal(load.data.length, 4);
  load.data.set([0x78, 0x56, 0x34, 0x12]);
  vcpu.completeIo();
  assert.equal(vcpu.getRegisters().rax, 0x12345678n);
  assert.equal(vcpu.getRegisters().rip, 0x1003n);
  const store = vcpu.run();
  // The next RUN carried every GPR in vrs: vmm(4) reloads them after an EPT exit.
  const v = new DataView(seen[1].buffer);
  assert.equal(v.getBigUint64(gprAt(abi.VCPU_REGS_RAX), true), 0x12345678n);
  assert.equal(v.getBigUint64(gprAt(abi.VCPU_REGS_RIP), true), 0x1003n);
  assert.ok(store.kind === "mmio-write");
  assert.equal(store.gpa, 0xfee00004);
  assert.deepEqual([...store.data], [0x21, 0x43, 0x65, 0x87]);
  vcpu.completeIo();
  // SVM decode assist: the bytes come with the exit.
  const imm = vcpu.run();
  assert.ok(imm.kind === "mmio-write");
  assert.equal(imm.gpa, 0xfee00000);
  assert.deepEqual([...imm.data], [0x5a]);
  vcpu.completeIo();
  assert.equal(vcpu.run().kind, "halt");
  assert.equal(new DataView(seen[3].buffer).getBigUint64(gprAt(abi.VCPU_REGS_RIP), true), 0x1009n);
  assert.equal(libc.callsOf("VMM_IOC_WRITEREGS").length, 0);
});

Deno.test("MMIO fails closed: unknown instruction, RAM address, PROTECT; Intel's length is not trusted", () => {
  const state = flat32({ rbx: 0x3000n, rip: 0x1000n });
  const { libc, vm, vcpu } = setup(state);
  vm.memory.write(0x1000, new Uint8Array([0x8b, 0x03, 0x90]));
  scriptRuns(libc, [
    mmio(2),
    mmio(3),
    mmio(0, [0x01, 0x03]),
    (e) => (e.setUint8(0, abi.VEE_FAULT_PROTECT), abi.VMX_EXIT_EPT_VIOLATION),
    (e) => (e.setUint8(0, abi.VEE_FAULT_HANDLED), abi.VMX_EXIT_EPT_VIOLATION),
  ]);
  const ram = vcpu.run();
  assert.ok(ram.kind === "fail");
  assert.match(ram.reason, /addresses guest-physical 0x3000, which is not in an MMIO range/);
  vcpu.setRegisters({ ...vcpu.getRegisters(), rbx: 0xfee00000n });
  // VMCS_INSTRUCTION_LENGTH is undefined for EPT violations (SDM): 3 is ignored, 2 decoded.
  const len = vcpu.run();
  assert.ok(len.kind === "mmio-read" && len.gpa === 0xfee00000);
  vcpu.completeIo();
  assert.equal(vcpu.getRegisters().rip, 0x1002n);
  vcpu.setRegisters({ ...vcpu.getRegisters(), rip: 0x1000n });
  const add = vcpu.run();
  assert.ok(add.kind === "fail");
  assert.match(add.reason, /SVM_VMEXIT_NPF: Unsupported MMIO instruction at RIP 0x1000: 01 03/);
  const prot = vcpu.run();
  assert.ok(prot.kind === "fail" && /VEE_FAULT_PROTECT/.test(prot.reason));
  assert.equal(vcpu.run().kind, "interrupted");
});

Deno.test("MMIO on AMD: only the bytes fetched are decoded; a short fetch is completed from guest memory", () => {
  const state = flat32({ rbx: 0xfee00000n, rax: 0x1111n, rip: 0x1ffen });
  const { libc, vm, vcpu } = setup(state);
  // mov [ebx], eax (89 03) at the end of a page... and what vee_insn_bytes pads with: zeros.
  vm.memory.write(0x1ffe, new Uint8Array([0x89, 0x03, 0x90]));
  scriptRuns(libc, [
    (e, p) => {
      // The CPU fetched one byte: vee_insn_bytes = 89 00 00 ... (00 00 would be add [rax], al).
      e.setUint8(0, abi.VEE_FAULT_MMIO_ASSIST);
      e.setUint8(1, abi.VEE_BYTES_VALID);
      e.setUint8(2, 1);
      e.setUint8(3, 0x89);
      p.setUint8(abi.vm_run_params.offsetOf("vrp_irqready"), 1);
      return abi.SVM_VMEXIT_NPF;
    },
  ]);
  const store = vcpu.run();
  assert.ok(store.kind === "mmio-write", JSON.stringify(store));
  assert.equal(store.gpa, 0xfee00000, "[ebx], not [eax] from the zero padding");
  assert.deepEqual([...store.data], [0x11, 0x11, 0, 0]);
  vcpu.completeIo();
  assert.equal(vcpu.getRegisters().rip, 0x2000n);
});

Deno.test("string I/O: rep outsb reads DS:ESI, then RSI/RCX/RIP are written back", () => {
  const state = flat32({ rsi: 0x5000n, rcx: 3n, rdx: 0x3f8n, rip: 0x1000n, rax: 0x77n });
  const { libc, vm, vcpu } = setup(state);
  vm.memory.write(0x1000, new Uint8Array([0xf3, 0x6e, 0xf3, 0x6c]));
  vm.memory.write(0x5000, new TextEncoder().encode("abc"));
  libc.on("VMM_IOC_WRITEREGS", () => 0);
  const seen = scriptRuns(libc, [
    io(0x3f8, 1, abi.VEI_DIR_OUT, 2, { string: true, rep: true }),
    io(0x3f8, 1, abi.VEI_DIR_IN, 2, { string: true, rep: true }),
    () => abi.VMX_EXIT_HLT,
  ]);
  const out = vcpu.run();
  assert.ok(out.kind === "io-out");
  assert.equal(out.count, 3);
  assert.equal(new TextDecoder().decode(out.data), "abc");
  vcpu.completeIo();
  const r = vcpu.getRegisters();
  assert.deepEqual([r.rsi, r.rcx, r.rip], [0x5003n, 0n, 0x1002n]);
  // Now rep insb of 2 to ES:EDI.
  vcpu.setRegisters({ ...vcpu.getRegisters(), rdi: 0x6000n, rcx: 2n });
  const inb = vcpu.run();
  const w = libc.callsOf("VMM_IOC_WRITEREGS");
  assert.equal(w.length, 1, "string registers are written with WRITEREGS, once");
  const wr = abi.vm_rwregs_params.decode(new DataView(w[0].in!.buffer));
  assert.equal(wr.vrwp_mask, BigInt(abi.VM_RWREGS_GPRS));
  assert.equal(wr.vrwp_regs.vrs_gprs[abi.VCPU_REGS_RDI], 0x6000n);
  assert.equal(wr.vrwp_regs.vrs_gprs[abi.VCPU_REGS_RSI], 0x5003n);
  assert.equal(new DataView(seen[1].buffer).getBigUint64(gprAt(abi.VCPU_REGS_RIP), true), 0x1002n);
  assert.ok(inb.kind === "io-in" && inb.count === 2);
  inb.data.set([0x31, 0x32]);
  vcpu.completeIo();
  assert.deepEqual([...vm.memory.read(0x6000, 2)], [0x31, 0x32]);
  const r2 = vcpu.getRegisters();
  assert.deepEqual([r2.rdi, r2.rcx, r2.rip], [0x6002n, 0n, 0x1004n]);
  assert.equal(vcpu.run().kind, "halt");
});

Deno.test("kick: the token is the thread; kick sends SIGUSR2", () => {
  const { libc, accel, vcpu } = setup();
  const token = vcpu.kickToken();
  assert.deepEqual(token, { thread: "4660" });
  accel.kick(token);
  assert.deepEqual(libc.signals, [[0x1234n, 31]]);
});
