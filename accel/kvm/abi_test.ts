import assert from "node:assert/strict";
import { StructLayout } from "../../ffi/struct.ts";
import type { IoctlRequest } from "../../ffi/libc.ts";
import { openLibc } from "../../ffi/libc.ts";
import {
  CC_PATH,
  compileAndRun,
  cProgram,
  NO_CC_MESSAGE,
  parseProbeOutput,
  probeLayout,
  probeValues,
} from "../../tests/cc.ts";
import * as abi from "./abi.ts";

const exported = Object.entries(abi) as [string, unknown][];
const layouts = exported.filter((e): e is [string, StructLayout] => e[1] instanceof StructLayout);
const requests = exported.filter((e): e is [string, IoctlRequest] =>
  typeof e[1] === "object" && e[1] !== null && "name" in e[1] && "value" in e[1]
);
const numbers = exported.filter((e): e is [string, number] => typeof e[1] === "number");

Deno.test("kvm abi: headline offsets and sizes match the documented x86-64 ABI", () => {
  // Values from Documentation/virt/kvm/api.rst and the x86-64 headers.
  assert.equal(abi.kvm_run.size, 2352);
  assert.equal(abi.kvm_run.offsetOf("exit_reason"), 8);
  assert.equal(abi.kvm_run.offsetOf("immediate_exit"), 1);
  assert.equal(abi.kvm_run.offsetOf("io.port"), 34);
  assert.equal(abi.kvm_run.offsetOf("io.count"), 36);
  assert.equal(abi.kvm_run.offsetOf("io.data_offset"), 40);
  assert.equal(abi.kvm_run.offsetOf("mmio.data[0]"), 40);
  assert.equal(abi.kvm_run.offsetOf("internal.data[0]"), 40);
  assert.equal(abi.kvm_run.offsetOf("kvm_valid_regs"), 288);
  assert.equal(abi.kvm_run.offsetOf("s.regs.regs.rip"), 304 + 128);
  assert.equal(abi.kvm_regs.size, 144);
  assert.equal(abi.kvm_sregs.size, 312);
  assert.equal(abi.kvm_sregs.offsetOf("interrupt_bitmap"), 280);
  assert.equal(abi.kvm_segment.size, 24);
  assert.equal(abi.kvm_fpu.size, 416);
  assert.equal(abi.kvm_vcpu_events.size, 64);
  assert.equal(abi.kvm_cpuid_entry2.size, 40);
  assert.equal(abi.kvm_irq_level.offsetOf("status"), 0);
});

Deno.test("kvm abi: ioctl requests are the known Linux numbers", () => {
  const known: Record<string, number> = {
    KVM_GET_API_VERSION: 0xae00,
    KVM_CREATE_VM: 0xae01,
    KVM_CHECK_EXTENSION: 0xae03,
    KVM_GET_SUPPORTED_CPUID: 0xc008ae05,
    KVM_CREATE_VCPU: 0xae41,
    KVM_SET_USER_MEMORY_REGION: 0x4020ae46,
    KVM_RUN: 0xae80,
    KVM_GET_REGS: 0x8090ae81,
    KVM_SET_REGS: 0x4090ae82,
    KVM_GET_SREGS: 0x8138ae83,
    KVM_SET_SREGS: 0x4138ae84,
    KVM_SET_CPUID2: 0x4008ae90,
    KVM_GET_MSRS: 0xc008ae88,
  };
  for (const [name, value] of Object.entries(known)) {
    const req = (abi as Record<string, unknown>)[name] as IoctlRequest;
    assert.equal(req.value, value, name);
  }
});

Deno.test("kvm abi: every request is named after its export and unsigned", () => {
  assert.ok(requests.length >= 35);
  for (const [exportName, req] of requests) {
    assert.equal(req.name, exportName);
    assert.ok(Number.isInteger(req.value) && req.value >= 0 && req.value < 2 ** 32, exportName);
  }
});

Deno.test("kvm abi: kvmExitName names every exit reason constant", () => {
  const exits = numbers.filter(([n]) => /^KVM_EXIT_/.test(n) && !/^KVM_EXIT_IO_(IN|OUT)$/.test(n));
  assert.ok(exits.length >= 20);
  for (const [name, value] of exits) assert.equal(abi.kvmExitName(value), name);
  assert.equal(abi.kvmExitName(2), "KVM_EXIT_IO");
  assert.equal(abi.kvmExitName(17), "KVM_EXIT_INTERNAL_ERROR");
  assert.equal(abi.kvmExitName(999), "KVM_EXIT_999");
});

Deno.test({
  name: "kvm abi: every layout, request and constant matches <linux/kvm.h> (C compiler)",
  ignore: CC_PATH === undefined,
  async fn() {
    const probes = [
      ...layouts.map(([, l]) => probeLayout(l)),
      probeValues(Object.fromEntries(requests.map(([name, r]) => [name, r.value]))),
      probeValues(Object.fromEntries(numbers.filter(([n]) => /^KVM/.test(n)))),
    ];
    const lines = probes.flatMap((p) => p.lines);
    const expected = Object.assign({}, ...probes.map((p) => p.expected));
    // Variable-length structs: the flexible array starts right after our header.
    for (const l of [abi.kvm_cpuid2, abi.kvm_msrs, abi.kvm_msr_list, abi.kvm_irq_routing]) {
      assert.equal(l.fields.at(-1)!.offset, l.size, l.name);
    }
    const out = await compileAndRun(cProgram(["#include <linux/kvm.h>"], lines));
    assert.ok(out !== undefined, NO_CC_MESSAGE);
    const actual = parseProbeOutput(out);
    assert.ok(Object.keys(expected).length > 900);
    assert.deepEqual(actual, expected);
  },
});

const hasKvm = (() => {
  try {
    return Deno.statSync("/dev/kvm").isCharDevice === true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "kvm abi: the running kernel agrees (API version, MSRs, regs, a real-mode PIO exit)",
  ignore: !hasKvm,
  fn() {
    const libc = openLibc();
    const { O_RDWR, O_CLOEXEC, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS } =
      libc.consts;
    const kvm = libc.open("/dev/kvm", O_RDWR | O_CLOEXEC);
    const fds = [kvm];
    try {
      assert.equal(libc.ioctl(kvm, abi.KVM_GET_API_VERSION), abi.KVM_API_VERSION);
      const mmapSize = libc.ioctl(kvm, abi.KVM_GET_VCPU_MMAP_SIZE);
      assert.ok(mmapSize >= abi.kvm_run.size, `mmap size ${mmapSize}`);

      // Every MSR number we name is one KVM knows (EFER and the segment bases
      // travel in kvm_sregs instead, so KVM may leave them out of the list).
      const max = 1024;
      const list = new Uint8Array(abi.kvm_msr_list.size + 4 * max);
      abi.kvm_msr_list.encode(new DataView(list.buffer), { nmsrs: max });
      libc.ioctl(kvm, abi.KVM_GET_MSR_INDEX_LIST, list);
      const view = new DataView(list.buffer);
      const n = view.getUint32(0, true);
      const indices = new Set(Array.from({ length: n }, (_, i) => view.getUint32(4 + 4 * i, true)));
      const msrs = numbers.filter(([name]) => name.startsWith("MSR_"));
      assert.ok(msrs.length >= 14);
      for (const [name, index] of msrs) {
        if (["MSR_IA32_EFER", "MSR_FS_BASE", "MSR_GS_BASE", "MSR_IA32_APIC_BASE"].includes(name)) {
          continue;
        }
        assert.ok(indices.has(index), `${name} (0x${index.toString(16)}) not in KVM's MSR list`);
      }

      const vm = libc.ioctl(kvm, abi.KVM_CREATE_VM, 0);
      fds.push(vm);
      const vcpu = libc.ioctl(vm, abi.KVM_CREATE_VCPU, 0);
      fds.push(vcpu);

      // kvm_regs round trip through the kernel.
      const regs = abi.kvm_regs.bytes({ rip: 0x1234n, rflags: 0x2n, r15: 0x1122334455667788n });
      libc.ioctl(vcpu, abi.KVM_SET_REGS, regs);
      const back = new Uint8Array(abi.kvm_regs.size);
      libc.ioctl(vcpu, abi.KVM_GET_REGS, back);
      const decoded = abi.kvm_regs.decode(new DataView(back.buffer));
      assert.equal(decoded.rip, 0x1234n);
      assert.equal(decoded.r15, 0x1122334455667788n);

      // kvm_msrs + kvm_msr_entry round trip.
      const msrBuf = new Uint8Array(abi.kvm_msrs.size + abi.kvm_msr_entry.size);
      const msrView = new DataView(msrBuf.buffer);
      abi.kvm_msrs.encode(msrView, { nmsrs: 1 });
      abi.kvm_msr_entry.encode(msrView, { index: abi.MSR_LSTAR, data: 0xffff800000001000n }, 8);
      assert.equal(libc.ioctl(vcpu, abi.KVM_SET_MSRS, msrBuf), 1);
      abi.kvm_msr_entry.encode(msrView, { data: 0n }, 8);
      assert.equal(libc.ioctl(vcpu, abi.KVM_GET_MSRS, msrBuf), 1);
      assert.equal(abi.kvm_msr_entry.decode(msrView, 8).data, 0xffff800000001000n);

      // A real-mode guest at 0: `mov al, 0x42; out 0x10, al; hlt`.
      const ram = libc.mmap(0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      const run = libc.mmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
      try {
        ram.bytes.set([0xb0, 0x42, 0xe6, 0x10, 0xf4]);
        libc.ioctl(
          vm,
          abi.KVM_SET_USER_MEMORY_REGION,
          abi.kvm_userspace_memory_region.bytes({
            slot: 0,
            guest_phys_addr: 0n,
            memory_size: 0x1000n,
            userspace_addr: ram.address,
          }),
        );
        const sregs = new Uint8Array(abi.kvm_sregs.size);
        libc.ioctl(vcpu, abi.KVM_GET_SREGS, sregs);
        abi.kvm_sregs.encode(new DataView(sregs.buffer), { cs: { base: 0n, selector: 0 } });
        libc.ioctl(vcpu, abi.KVM_SET_SREGS, sregs);
        libc.ioctl(vcpu, abi.KVM_SET_REGS, abi.kvm_regs.bytes({ rip: 0n, rflags: 0x2n }));

        const runView = new DataView(run.bytes.buffer, run.bytes.byteOffset, run.bytes.length);
        // immediate_exit: KVM_RUN returns EINTR before entering the guest.
        abi.kvm_run.encode(runView, { immediate_exit: 1 });
        assert.equal(libc.ioctlTry(vcpu, abi.KVM_RUN, null, ["EINTR"]), -4);
        abi.kvm_run.encode(runView, { immediate_exit: 0 });

        libc.ioctl(vcpu, abi.KVM_RUN);
        const exit = abi.kvm_run.decode(runView);
        assert.equal(abi.kvmExitName(exit.exit_reason), "KVM_EXIT_IO");
        assert.deepEqual(
          { ...exit.io, data_offset: undefined },
          { direction: abi.KVM_EXIT_IO_OUT, size: 1, port: 0x10, count: 1, data_offset: undefined },
        );
        assert.equal(run.bytes[Number(exit.io.data_offset)], 0x42);

        libc.ioctl(vcpu, abi.KVM_RUN);
        assert.equal(
          abi.kvmExitName(runView.getUint32(abi.kvm_run.offsetOf("exit_reason"), true)),
          "KVM_EXIT_HLT",
        );
        libc.ioctl(vcpu, abi.KVM_GET_REGS, back);
        assert.equal(abi.kvm_regs.decode(new DataView(back.buffer)).rip, 5n);
      } finally {
        libc.munmap(run);
        libc.munmap(ram);
      }
    } finally {
      for (const fd of fds.reverse()) libc.close(fd);
    }
  },
});
