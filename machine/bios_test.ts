import assert from "node:assert/strict";
import { Bus } from "../core/bus.ts";
import { GuestMemory } from "../core/guest_memory.ts";
import { FakeClock, inb, RecordingIrqLine } from "../devices/fakes.ts";
import {
  FW_CFG_MAX_CPUS,
  FW_CFG_NB_CPUS,
  FW_CFG_NOGRAPHIC,
  FW_CFG_RAM_SIZE,
} from "../devices/fw_cfg.ts";
import { PciConfigSpace, PciHost } from "../devices/pci.ts";
import { RtcMc146818 } from "../devices/rtc_mc146818.ts";
import { checkFirmware } from "../loaders/firmware.ts";
import type { VmConfig } from "../config/schema.ts";
import { attachBiosPlatform, encodeE820, firmwareRamRange, setBootOrder } from "./bios.ts";

function config(vcpus = 2): VmConfig {
  return {
    vm: { name: "t", memoryBytes: 64 << 20, vcpus, accel: "kvm", irqchip: "user" },
    boot: { cmdline: "" },
    disks: [],
    interfaces: [],
    console: { serial: "none" },
    debug: {},
  };
}

Deno.test("bios: e820 entries are 20 bytes, little-endian, RAM", () => {
  const b = encodeE820([{ gpa: 0, size: 0x4000000 }, { gpa: 2 ** 32, size: 0x1000 }]);
  assert.equal(b.length, 40);
  const v = new DataView(b.buffer);
  assert.equal(v.getBigUint64(8, true), 0x4000000n);
  assert.equal(v.getUint32(16, true), 1);
  assert.equal(v.getBigUint64(20, true), 2n ** 32n);
  // A VGA window hole in low RAM is not a gap in the map.
  const holed = encodeE820([{ gpa: 0, size: 0xa0000 }, { gpa: 0xc0000, size: 0x3f40000 }]);
  assert.equal(holed.length, 20);
  assert.equal(new DataView(holed.buffer).getBigUint64(8, true), 0x4000000n);
});

Deno.test("bios: the platform places the firmware and fills fw_cfg, CMOS and the buses", () => {
  const bytes = new Uint8Array(128 * 1024).fill(0x90);
  bytes[bytes.length - 16] = 0xea;
  const fw = checkFirmware(bytes, "/bios.bin");
  const range = firmwareRamRange(fw);
  assert.deepEqual(range, { gpa: 0xfffe0000, size: 0x20000, reserved: true });
  const memory = GuestMemory.anonymous([{ gpa: 0, size: 64 << 20 }, range]);
  const pio = new Bus("pio");
  const pci = new PciHost();
  const rtc = new RtcMc146818({
    clock: new FakeClock(),
    irq: new RecordingIrqLine(),
    memoryBelow4gBytes: 64 << 20,
    memoryAbove4gBytes: 0,
  });
  let resets = 0;
  const p = attachBiosPlatform({
    config: config(2),
    pio,
    pci,
    rtc,
    memory,
    ram: [{ gpa: 0, size: 64 << 20 }],
    reset: () => resets++,
  }, fw);
  assert.equal(memory.readU8(0xffff0), 0xea);
  assert.equal(memory.readU8(0xfffffff0), 0xea);
  const u = (x: Uint8Array | undefined) => x && new DataView(x.buffer).getUint16(0, true);
  assert.equal(
    new DataView(p.fwCfg.item(FW_CFG_RAM_SIZE)!.buffer).getBigUint64(0, true),
    64n << 20n,
  );
  assert.equal(u(p.fwCfg.item(FW_CFG_NB_CPUS)), 2);
  assert.equal(u(p.fwCfg.item(FW_CFG_MAX_CPUS)), 2);
  assert.equal(u(p.fwCfg.item(FW_CFG_NOGRAPHIC)), 1);
  const files = Object.fromEntries(p.fwCfg.files().map((f) => [f.name, f.bytes]));
  assert.deepEqual(Object.keys(files), [
    "etc/boot-fail-wait",
    "etc/e820",
    "etc/sercon-port",
    "etc/show-boot-menu",
  ]);
  assert.deepEqual([...files["etc/boot-fail-wait"]], [0xff, 0xff, 0xff, 0xff]);
  const ending = config(1);
  ending.boot.onFail = "end";
  const p2 = attachBiosPlatform({
    config: ending,
    pio: new Bus("pio"),
    pci: new PciHost(),
    rtc: new RtcMc146818({
      clock: new FakeClock(),
      irq: new RecordingIrqLine(),
      memoryBelow4gBytes: 64 << 20,
      memoryAbove4gBytes: 0,
    }),
    memory,
    ram: [{ gpa: 0, size: 64 << 20 }],
    reset: () => {},
  }, fw);
  assert.deepEqual(
    [...p2.fwCfg.files().find((f) => f.name === "etc/boot-fail-wait")!.bytes],
    [0, 0, 0, 0],
  );
  assert.deepEqual([...files["etc/sercon-port"]], [0xf8, 0x03]);
  assert.equal(files["etc/e820"].length, 20);
  // CMOS 0x5F: CPUs - 1.
  rtc.write(0, Uint8Array.of(0x5f));
  assert.equal(inb(rtc, 1), 1);
  // Ports: fw_cfg selector, DMA, A20, debugcon; the PIIX3 in slot 1.
  assert.equal(pio.find(0x510, 2)?.device.name, "fw_cfg");
  assert.equal(pio.find(0x514, 8)?.device.name, "fw_cfg-dma");
  assert.equal(pio.find(0x92, 1)?.device.name, "port92");
  assert.equal(pio.find(0x402, 1)?.device.name, "debugcon");
  assert.equal(pci.device(1), p.isa);
  pio.write(0x92, Uint8Array.of(1));
  assert.equal(resets, 1);

  const disk = { config: new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1001, classCode: 0 }) };
  pci.addDevice(3, disk);
  const cd = { config: new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1004, classCode: 0 }) };
  pci.addDevice(0x1a, cd);
  setBootOrder(p.fwCfg, pci, [{ device: cd, scsi: true }, { device: disk }, {
    device: { config: disk.config },
  }]);
  const order = p.fwCfg.files().find((f) => f.name === "bootorder");
  assert.equal(
    new TextDecoder().decode(order?.bytes),
    "/pci@i0cf8/*@1a/*@0/*@0,0\n/pci@i0cf8/*@3\n",
  );
});
