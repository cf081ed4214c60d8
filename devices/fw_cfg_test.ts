import assert from "node:assert/strict";
import { inb, inN, outN } from "./fakes.ts";
import {
  FW_CFG_DMA_CTL_ERROR,
  FW_CFG_DMA_CTL_READ,
  FW_CFG_DMA_CTL_SELECT,
  FW_CFG_DMA_CTL_SKIP,
  FW_CFG_DMA_CTL_WRITE,
  FW_CFG_E820_TABLE,
  FW_CFG_FILE_DIR,
  FW_CFG_ID,
  FW_CFG_SIGNATURE,
  FwCfg,
  type FwCfgMemory,
  u16le,
} from "./fw_cfg.ts";

/** 64 KiB of "RAM" at gpa 0. */
function ram(size = 0x10000): FwCfgMemory & { bytes: Uint8Array } {
  const bytes = new Uint8Array(size);
  const inside = (gpa: number, n: number) =>
    Number.isSafeInteger(gpa) && gpa >= 0 && n >= 0 && gpa + n <= size;
  return {
    bytes,
    contains: inside,
    read: (gpa, n) => {
      if (!inside(gpa, n)) throw new RangeError("outside");
      return bytes.slice(gpa, gpa + n);
    },
    write: (gpa, data) => {
      if (!inside(gpa, data.length)) throw new RangeError("outside");
      bytes.set(data, gpa);
    },
    fill: (gpa, n, v = 0) => {
      if (!inside(gpa, n)) throw new RangeError("outside");
      bytes.fill(v, gpa, gpa + n);
    },
  };
}

function select(fw: FwCfg, key: number): void {
  outN(fw.selectorPort, 0, 2, key);
}

function readBytes(fw: FwCfg, n: number): number[] {
  return Array.from({ length: n }, () => inb(fw.selectorPort, 1));
}

/** Writes a descriptor at `at` and starts it through the DMA register (big-endian halves). */
function dma(
  fw: FwCfg,
  mem: { bytes: Uint8Array },
  at: number,
  control: number,
  length: number,
  address: number,
): number {
  const v = new DataView(mem.bytes.buffer);
  v.setUint32(at, control);
  v.setUint32(at + 4, length);
  v.setBigUint64(at + 8, BigInt(address));
  const be = (x: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, x);
    return b;
  };
  fw.dmaPort.write(0, be(Math.floor(at / 2 ** 32)));
  fw.dmaPort.write(4, be(at % 2 ** 32));
  return v.getUint32(at);
}

Deno.test("fw_cfg: signature, ID with DMA, and DMA register signature", () => {
  const fw = new FwCfg({ memory: ram() });
  select(fw, FW_CFG_SIGNATURE);
  assert.equal(String.fromCharCode(...readBytes(fw, 4)), "QEMU");
  select(fw, FW_CFG_ID);
  assert.deepEqual(readBytes(fw, 4), [3, 0, 0, 0]);
  const sig = new Uint8Array(8);
  fw.dmaPort.read(0, sig);
  assert.equal(new TextDecoder().decode(sig), "QEMU CFG");
  const noDma = new FwCfg();
  select(noDma, FW_CFG_ID);
  assert.deepEqual(readBytes(noDma, 4), [1, 0, 0, 0]);
  noDma.dmaPort.read(0, sig);
  assert.deepEqual([...sig], [0, 0, 0, 0, 0, 0, 0, 0]);
});

Deno.test("fw_cfg: reads past an item's end and of unknown selectors give zeros", () => {
  const fw = new FwCfg();
  fw.setItem(FW_CFG_E820_TABLE, Uint8Array.of(7, 8));
  select(fw, FW_CFG_E820_TABLE);
  assert.deepEqual(readBytes(fw, 4), [7, 8, 0, 0]);
  for (const bad of [0x1f, 0x3fff, 0x20, 0x8010, 0xffff]) {
    select(fw, bad);
    assert.deepEqual(readBytes(fw, 3), [0, 0, 0], `selector 0x${bad.toString(16)}`);
  }
  // Selecting again starts over; the write-channel bit does not change the item.
  select(fw, FW_CFG_E820_TABLE | 0x4000);
  assert.deepEqual(readBytes(fw, 2), [7, 8]);
  // Wrong-width accesses do nothing.
  fw.selectorPort.write(0, Uint8Array.of(0));
  assert.equal(inN(fw.selectorPort, 0, 2), 0);
  assert.equal(inb(fw.selectorPort, 0), 0);
});

Deno.test("fw_cfg: the file directory is sorted by name, big-endian, names NUL-padded", () => {
  const fw = new FwCfg();
  const a = fw.addFile("etc/sercon-port", u16le(0x3f8));
  const b = fw.addFile("bootorder", new TextEncoder().encode("/pci@i0cf8/*@2\n"));
  assert.equal(a, 0x20);
  assert.equal(b, 0x21);
  select(fw, FW_CFG_FILE_DIR);
  const dir = Uint8Array.from(readBytes(fw, 4 + 128));
  const v = new DataView(dir.buffer);
  assert.equal(v.getUint32(0), 2);
  assert.equal(v.getUint32(4), 15);
  assert.equal(v.getUint16(8), 0x21);
  assert.equal(new TextDecoder().decode(dir.subarray(12, 21)), "bootorder");
  assert.equal(dir[21], 0);
  assert.equal(v.getUint32(68), 2);
  assert.equal(v.getUint16(72), 0x20);
  select(fw, a);
  assert.deepEqual(readBytes(fw, 3), [0xf8, 0x03, 0]);
  assert.throws(() => fw.addFile("bootorder", new Uint8Array()), /exists/);
  assert.throws(() => fw.addFile("x".repeat(56), new Uint8Array()), /1 to 55 bytes/);
  assert.throws(() => fw.addFile("", new Uint8Array()), /1 to 55 bytes/);
  assert.throws(() => fw.setItem(0x20, new Uint8Array()), /not a numbered item/);
});

Deno.test("fw_cfg: DMA select+read, then a continued read past the end zero-fills", () => {
  const mem = ram();
  const fw = new FwCfg({ memory: mem });
  const sel = fw.addFile("etc/e820", Uint8Array.of(1, 2, 3, 4, 5));
  mem.bytes.fill(0xee, 0x2000, 0x2010);
  const ctl = FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ | (sel << 16);
  assert.equal(dma(fw, mem, 0x100, ctl, 3, 0x2000), 0);
  assert.deepEqual([...mem.bytes.subarray(0x2000, 0x2004)], [1, 2, 3, 0xee]);
  assert.equal(dma(fw, mem, 0x100, FW_CFG_DMA_CTL_READ, 4, 0x2003), 0);
  assert.deepEqual([...mem.bytes.subarray(0x2003, 0x2008)], [4, 5, 0, 0, 0xee]);
  // Skip, then read: the offset moved.
  dma(fw, mem, 0x100, ctl & ~FW_CFG_DMA_CTL_READ, 0, 0);
  assert.equal(dma(fw, mem, 0x100, FW_CFG_DMA_CTL_SKIP, 4, 0), 0);
  assert.equal(dma(fw, mem, 0x100, FW_CFG_DMA_CTL_READ, 1, 0x3000), 0);
  assert.equal(mem.bytes[0x3000], 5);
  // The port interface shares the selection and offset.
  assert.equal(inb(fw.selectorPort, 1), 0);
});

Deno.test("fw_cfg: DMA buffers outside RAM and writes set the error bit; RAM is untouched", () => {
  const mem = ram();
  const fw = new FwCfg({ memory: mem });
  const sel = fw.addFile("bootorder", Uint8Array.of(9, 9));
  const ctl = FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ | (sel << 16);
  const before = mem.bytes.slice();
  assert.equal(dma(fw, mem, 0x100, ctl, 16, 0xfff8), FW_CFG_DMA_CTL_ERROR);
  assert.equal(dma(fw, mem, 0x100, ctl, 0xffffffff, 0), FW_CFG_DMA_CTL_ERROR);
  assert.equal(dma(fw, mem, 0x100, ctl, 4, 2 ** 52), FW_CFG_DMA_CTL_ERROR);
  const w = FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE | (sel << 16);
  assert.equal(dma(fw, mem, 0x100, w, 2, 0x2000), FW_CFG_DMA_CTL_ERROR);
  before.set(mem.bytes.subarray(0x100, 0x110), 0x100); // only the descriptors changed
  assert.deepEqual(mem.bytes, before);
  assert.deepEqual(fw.item(sel), Uint8Array.of(9, 9));
});

Deno.test("fw_cfg: a DMA descriptor outside RAM is ignored", () => {
  const mem = ram();
  const fw = new FwCfg({ memory: mem });
  const before = mem.bytes.slice();
  const at = (x: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, x);
    return b;
  };
  fw.dmaPort.write(4, at(0xfff8)); // the descriptor would run past RAM
  fw.dmaPort.write(0, at(1));
  fw.dmaPort.write(4, at(0)); // 4 GiB
  fw.dmaPort.write(4, Uint8Array.of(1, 2)); // wrong width
  fw.dmaPort.write(2, at(0)); // wrong offset
  assert.deepEqual(mem.bytes, before);
});
