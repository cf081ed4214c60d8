import assert from "node:assert/strict";
import { GuestMemory } from "../core/guest_memory.ts";
import {
  checkFirmware,
  findFirmware,
  firmwareEntryState,
  LEGACY_BIOS_GPA,
  MAX_FIRMWARE_BYTES,
  placeFirmware,
  readFirmware,
} from "./firmware.ts";

/** An image of `kib` KiB whose bytes count up, with a far jump at the reset vector. */
function image(kib: number): Uint8Array {
  const b = new Uint8Array(kib * 1024).map((_, i) => (i * 7) & 0xff);
  b[b.length - 16] = 0xea;
  return b;
}

Deno.test("firmware: boot.bios wins; otherwise the first search path that exists", () => {
  const have = new Set(["/b", "/c"]);
  const exists = (p: string) => have.has(p);
  assert.equal(findFirmware("/c", exists, ["/a", "/b"]), "/c");
  assert.equal(findFirmware(undefined, exists, ["/a", "/b", "/c"]), "/b");
  assert.throws(
    () => findFirmware(undefined, exists, ["/a"]),
    /No BIOS firmware found \(tried "\/a"\): install SeaBIOS \(Debian\/Ubuntu: apt-get install seabios/,
  );
  assert.throws(() => findFirmware("/x", exists, ["/b"]), /tried "\/x"/);
});

Deno.test("firmware: empty, truncated, oversized and erased images are refused by name", () => {
  assert.throws(() => checkFirmware(new Uint8Array(), "/e.bin"), /"\/e.bin" is empty/);
  assert.throws(
    () => checkFirmware(image(128).subarray(0, 100 * 1024), "/t.bin"),
    /"\/t.bin" is 102400 bytes, not a whole number of 64 KiB blocks: truncated\? .*seabios/,
  );
  assert.throws(
    () => checkFirmware(new Uint8Array(MAX_FIRMWARE_BYTES + 65536), "/big.bin"),
    /more than the 16 MiB flash window/,
  );
  assert.throws(
    () => checkFirmware(new Uint8Array(65536).fill(0xff), "/erased.bin"),
    /has no reset vector/,
  );
  assert.throws(() => readFirmware("/nonexistent/bios.bin"), /Cannot read BIOS firmware/);
  const fw = checkFirmware(image(256), "/ok.bin");
  assert.equal(fw.flashGpa, 2 ** 32 - 256 * 1024);
  assert.equal(
    checkFirmware(new Uint8Array(MAX_FIRMWARE_BYTES).fill(1), "/16m").flashGpa,
    2 ** 32 - 2 ** 24,
  );
});

Deno.test("firmware: the image ends at 4 GiB, its top 128 KiB also at 0xE0000-0xFFFFF", () => {
  const bytes = image(256);
  const fw = checkFirmware(bytes, "/bios-256k.bin");
  const mem = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }, {
    gpa: fw.flashGpa,
    size: bytes.length,
  }]);
  placeFirmware(mem, fw);
  assert.deepEqual(mem.read(fw.flashGpa, bytes.length), bytes);
  assert.deepEqual(mem.read(LEGACY_BIOS_GPA, 0x20000), bytes.subarray(bytes.length - 0x20000));
  assert.equal(mem.readU8(0xffff0), 0xea);
  assert.equal(mem.readU8(0xdffff), 0, "below the window is untouched");
  // A 64 KiB image fills only the window's top half.
  const small = checkFirmware(image(64), "/64k.bin");
  const mem2 = GuestMemory.anonymous([{ gpa: 0, size: 0x100000 }, {
    gpa: small.flashGpa,
    size: 65536,
  }]);
  placeFirmware(mem2, small);
  assert.deepEqual(mem2.read(0xf0000, 65536), small.bytes);
  assert.equal(mem2.readU8(0xe0000), 0);
});

Deno.test("firmware: entry at F000:FFF0, reset state on KVM, vmd's CS base 0xF0000 otherwise", () => {
  const kvm = firmwareEntryState(true);
  assert.equal(kvm.regs.rip, 0xfff0n);
  assert.equal(kvm.sregs.cs.selector, 0xf000);
  assert.equal(kvm.sregs.cs.base, 0xffff0000n);
  assert.equal(kvm.sregs.cr0, 0x60000010n);
  assert.equal(kvm.regs.rdx, 0x600n);
  assert.equal(kvm.regs.rflags, 2n);
  const vmd = firmwareEntryState(false);
  assert.equal(vmd.regs.rip, 0xfff0n);
  assert.equal(vmd.sregs.cs.selector, 0xf000);
  assert.equal(vmd.sregs.cs.base, 0xf0000n);
  assert.equal(vmd.sregs.ds.base, 0n);
  assert.equal(vmd.sregs.cr0 & 1n, 0n, "real mode");
});
