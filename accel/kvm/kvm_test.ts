import assert from "node:assert/strict";
import { KvmAccel } from "./kvm.ts";
import { type Libc, LINUX_CONSTANTS, openLibc } from "../../ffi/libc.ts";
import { SyscallError } from "../../ffi/errno.ts";
import { checkHostMemory } from "../../machine/machine.ts";
import { kvmAvailable } from "../../tests/boot.ts";
import { realModeState } from "../../loaders/cpu_state.ts";
import * as abi from "./abi.ts";

/** A libc whose open() fails with `errno` (no hypervisor needed). */
function failingOpen(errno: number): Libc {
  return {
    os: "linux",
    consts: LINUX_CONSTANTS,
    open: (path: string) => {
      throw new SyscallError(`open "${path}"`, errno, "linux");
    },
  } as unknown as Libc;
}

Deno.test("kvm: a missing /dev/kvm says KVM is not available", () => {
  assert.throws(
    () => new KvmAccel(failingOpen(2)),
    /\/dev\/kvm does not exist: KVM is not available on this host/,
  );
});

Deno.test("kvm: no permission on /dev/kvm says to run as root or join the kvm group", () => {
  for (const errno of [13, 1]) {
    assert.throws(
      () => new KvmAccel(failingOpen(errno)),
      /No permission to open \/dev\/kvm: run as root or add your user to the "kvm" group/,
    );
  }
});

Deno.test("kvm: guest RAM larger than the host's is refused with both sizes", () => {
  assert.throws(
    () => checkHostMemory(64 * 2 ** 30, 8 * 2 ** 30),
    /Memory 64\.0G is more than this host's 8\.0G of RAM/,
  );
  checkHostMemory(2 ** 30, 8 * 2 ** 30);
});

Deno.test({
  name: "kvm: a real-mode guest's OUT and HLT exits decode, registers round-trip, IN completes",
  ignore: !kvmAvailable(),
  fn() {
    const accel = new KvmAccel(openLibc());
    const vm = accel.createVm({
      name: "t",
      ram: [{ gpa: 0, size: 0x10000 }],
      vcpus: 1,
      irqchip: "user",
    });
    try {
      // mov al,0x42; out 0x10,al; in al,0x11; mov bl,al; hlt
      vm.memory.write(
        0x1000,
        new Uint8Array([0xb0, 0x42, 0xe6, 0x10, 0xe4, 0x11, 0x88, 0xc3, 0xf4]),
      );
      const vcpu = vm.createVcpu(0, realModeState(0, 0x1000));
      const out = vcpu.run();
      assert.equal(out.kind, "io-out");
      if (out.kind === "io-out") {
        assert.equal(out.port, 0x10);
        assert.deepEqual([...out.data], [0x42]);
      }
      vcpu.completeIo();
      const inn = vcpu.run();
      assert.equal(inn.kind, "io-in");
      if (inn.kind === "io-in") inn.data[0] = 0x99;
      vcpu.completeIo();
      assert.equal(vcpu.run().kind, "halt");
      const regs = vcpu.getRegisters();
      assert.equal(regs.rbx & 0xffn, 0x99n, "IN result reached AL and was copied to BL");
      assert.equal(regs.rip, 0x1009n);
      regs.rcx = 0x1234n;
      vcpu.setRegisters(regs);
      assert.equal(vcpu.getRegisters().rcx, 0x1234n, "a dirty register reads back from the cache");
      vcpu.close();
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "kvm: with the in-kernel irqchip, setIrqLevelTriggered sets the PIC's ELCR bit",
  ignore: !kvmAvailable(),
  fn() {
    const accel = new KvmAccel(openLibc());
    const vm = accel.createVm({
      name: "t",
      ram: [{ gpa: 0, size: 0x10000 }],
      vcpus: 1,
      irqchip: "kernel",
    });
    const elcr = (chip: number) => {
      const buf = abi.kvm_irqchip.bytes({ chip_id: chip });
      openLibc().ioctl(vm.fd, abi.KVM_GET_IRQCHIP, buf);
      return buf[abi.kvm_irqchip.offsetOf("chip.pic.elcr")];
    };
    try {
      assert.equal(elcr(0), 0);
      assert.equal(elcr(1), 0);
      vm.setIrqLevelTriggered(5);
      vm.setIrqLevelTriggered(10);
      vm.setIrqLevelTriggered(11);
      assert.equal(elcr(0), 1 << 5);
      assert.equal(elcr(1), (1 << 2) | (1 << 3));
    } finally {
      vm.close();
      accel.close();
    }
  },
});
