import assert from "node:assert/strict";
import { Bus } from "../../core/bus.ts";
import { GuestMemory } from "../../core/guest_memory.ts";
import { guestConfig } from "../../tests/boot.ts";
import { FakeClock, inN } from "../fakes.ts";
import { PCI_INTERRUPT_LINE, PciHost } from "../pci.ts";
import { Pic8259Pair } from "../pic8259.ts";
import type { TimedDevice } from "../../core/device.ts";
import { HAVE_QEMU_TOOLS } from "../../disk/test_helpers.ts";
import { attachVirtioDevices, type VirtioHostMachine } from "./attach.ts";

function machine(disks: { path: string; readonly?: boolean }[]): VirtioHostMachine {
  const pic = new Pic8259Pair();
  return {
    config: {
      ...guestConfig({ kernel: "/nonexistent" }),
      disks: disks.map((d) => ({ path: d.path, format: "raw", readonly: d.readonly ?? false })),
    },
    pio: new Bus("pio"),
    mmio: new Bus("mmio"),
    pci: new PciHost(),
    vm: { memory: GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }]) },
    pic,
    timed: [] as TimedDevice[],
    clock: new FakeClock(),
    timersDirty: false,
    irq: (n) => pic.line(n),
  };
}

Deno.test("attach: rng, one blk per disk and vmmci in slots 1..; IRQs 5, 9, 10, 11 set level-triggered", async () => {
  const a = await Deno.makeTempFile();
  const b = await Deno.makeTempFile();
  await Deno.writeFile(a, new Uint8Array(4096));
  await Deno.writeFile(b, new Uint8Array(8192));
  const m = machine([{ path: a }, { path: b, readonly: true }]);
  const devices = attachVirtioDevices(m);
  try {
    assert.equal(devices.all.length, 4);
    assert.deepEqual(
      devices.all.map((d) => [d.config.u16(0), d.config.u16(2)]),
      [[0x1af4, 0x1005], [0x1af4, 0x1001], [0x1af4, 0x1001], [0x0b5d, 0x0777]],
    );
    assert.deepEqual([1, 2, 3, 4].map((s) => m.pci.device(s)), devices.all);
    assert.deepEqual(devices.all.map((d) => d.config.u8(PCI_INTERRUPT_LINE)), [5, 9, 10, 11]);
    // ELCR: IRQ 5 on the master, 9-11 on the slave.
    assert.equal(inN(m.pic!.elcr, 0, 1), 1 << 5);
    assert.equal(inN(m.pic!.elcr, 1, 1), 0b1110);
    assert.equal(m.pio.find(0xc100, 1)?.device, devices.all[1].legacy);
    assert.equal(m.mmio.find(0xc0004000, 4)?.device, devices.all[1].modern);
    assert.equal(m.timed.length, 4);
    assert.equal(devices.blks[1].disk.readonly, true);
    assert.equal(devices.blks[0].capacitySectors, 8);
  } finally {
    devices.close();
    await Deno.remove(a);
    await Deno.remove(b);
  }
});

Deno.test("attach: a missing disk image is a clear error naming the disk", () => {
  const m = machine([{ path: "/nonexistent/disk.img" }]);
  assert.throws(() => attachVirtioDevices(m), /Cannot attach disk 0 "\/nonexistent\/disk.img"/);
});

Deno.test({
  name: "attach: a disk's backing file opens only if the VM's owner could read it",
  ignore: Deno.uid() !== 0 || !HAVE_QEMU_TOOLS,
  fn() {
    const dir = Deno.makeTempDirSync({ prefix: "attach-owner-" });
    try {
      Deno.chmodSync(dir, 0o755);
      Deno.writeFileSync(`${dir}/secret`, new Uint8Array(1024 * 1024).fill(0x73));
      Deno.chmodSync(`${dir}/secret`, 0o600);
      const out = new Deno.Command("qemu-img", {
        args: ["create", "-q", "-f", "qcow2", "-b", `${dir}/secret`, "-F", "raw", `${dir}/ov`],
      }).outputSync();
      assert.ok(out.success);
      const vm = (owner?: string) => {
        const m = machine([{ path: `${dir}/ov` }]);
        m.config.disks[0].format = "qcow2";
        if (owner !== undefined) m.config.vm.owner = { user: owner };
        return m;
      };
      attachVirtioDevices(vm()).close(); // root's own VM
      const m = vm("nobody");
      assert.throws(() => attachVirtioDevices(m), /Cannot attach disk 0 .*owner could not read it/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
