import assert from "node:assert/strict";
import {
  BOOT_GDT_GPA,
  BOOT_STACK_GPA,
  BOOT_STACK_TOP,
  BOOT_TSS_GPA,
  CMDLINE_GPA,
  CMDLINE_MAX_BYTES,
  E820_RAM,
  E820_RESERVED,
  type E820Entry,
  GiB,
  HIGH_RAM_GPA,
  LAYOUT_AREAS,
  memoryLayout,
  MiB,
  MULTIBOOT_INFO_GPA,
  PCI_HOLE_BASE,
  PCI_MMIO_BASE,
  PCI_MMIO_END,
  PD_COUNT,
  PD_GPA,
  PDPT_GPA,
  PML4_GPA,
  PVH_INFO_GPA,
  ZERO_PAGE_GPA,
} from "./layout.ts";

Deno.test("no two areas of the memory plan overlap", () => {
  const areas = [...LAYOUT_AREAS].sort((a, b) => a.gpa - b.gpa);
  assert.ok(areas.length >= 15);
  for (let i = 1; i < areas.length; i++) {
    const prev = areas[i - 1];
    assert.ok(
      prev.gpa + prev.size <= areas[i].gpa,
      `"${prev.name}" overlaps "${areas[i].name}"`,
    );
  }
});

Deno.test("areas the loaders write lie in the first e820 RAM range", () => {
  const { e820 } = memoryLayout(64 * MiB);
  const low = e820[0];
  const written = [
    "boot GDT",
    "boot TSS",
    "PVH start info",
    "Multiboot info",
    "zero page",
    "boot stack",
    "PML4",
    "PDPT",
    "page directories",
    "command line",
  ];
  for (const name of written) {
    const area = LAYOUT_AREAS.find((a) => a.name === name);
    assert.ok(area, name);
    assert.ok(area.gpa >= 0x500 && area.gpa + area.size <= low.gpa + low.size, name);
  }
  assert.equal(low.type, E820_RAM);
});

Deno.test("the plan has the documented addresses", () => {
  assert.equal(BOOT_GDT_GPA, 0x500);
  assert.equal(ZERO_PAGE_GPA, 0x7000);
  assert.equal(MULTIBOOT_INFO_GPA, 0x6000);
  assert.equal(PML4_GPA, 0x9000);
  assert.equal(PDPT_GPA, 0xa000);
  assert.equal(PD_GPA, 0xb000);
  assert.equal(PD_GPA + PD_COUNT * 0x1000, 0xf000);
  assert.equal(CMDLINE_GPA, 0x20000);
  assert.equal(CMDLINE_MAX_BYTES, 64 * 1024);
  assert.equal(BOOT_STACK_TOP, 0x8ff0);
  assert.ok(BOOT_STACK_TOP > BOOT_STACK_GPA && BOOT_STACK_TOP % 16 === 0);
  assert.ok(BOOT_TSS_GPA > BOOT_GDT_GPA && PVH_INFO_GPA < MULTIBOOT_INFO_GPA);
  assert.equal(PCI_MMIO_BASE, 0xc0000000);
  assert.ok(PCI_MMIO_END > PCI_MMIO_BASE && PCI_MMIO_END <= 0xfec00000);
});

function assertSortedDisjoint(e820: E820Entry[]) {
  for (let i = 1; i < e820.length; i++) {
    assert.ok(e820[i - 1].gpa + e820[i - 1].size <= e820[i].gpa);
  }
}

Deno.test("256M: one RAM region and the four e820 entries", () => {
  const { ram, e820 } = memoryLayout(256 * MiB);
  assert.deepEqual(ram, [{ gpa: 0, size: 256 * MiB }]);
  assert.deepEqual(e820, [
    { gpa: 0, size: 0x9fc00, type: E820_RAM },
    { gpa: 0x9fc00, size: 0x400, type: E820_RESERVED },
    { gpa: 0xf0000, size: 0x10000, type: E820_RESERVED },
    { gpa: 0x100000, size: 255 * MiB, type: E820_RAM },
  ]);
});

Deno.test("memory above 3 GiB continues at 4 GiB", () => {
  for (const gib of [3, 4, 6]) {
    const { ram, e820 } = memoryLayout(gib * GiB);
    assertSortedDisjoint(e820);
    const total = ram.reduce((n, r) => n + r.size, 0);
    assert.equal(total, gib * GiB);
    assert.equal(ram[0].size, Math.min(gib * GiB, PCI_HOLE_BASE));
    const ramInE820 = e820.filter((e) => e.type === E820_RAM).reduce((n, e) => n + e.size, 0);
    // e820 RAM leaves out the EBDA, the VGA window and the BIOS area (384 KiB + 1 KiB).
    assert.equal(ramInE820, gib * GiB - (0x100000 - 0x9fc00));
    if (gib > 3) {
      assert.deepEqual(ram[1], { gpa: HIGH_RAM_GPA, size: (gib - 3) * GiB });
      assert.deepEqual(e820[4], { gpa: HIGH_RAM_GPA, size: (gib - 3) * GiB, type: E820_RAM });
    } else {
      assert.equal(ram.length, 1);
      assert.equal(e820.length, 4);
    }
    for (const e of e820) {
      assert.ok(e.gpa + e.size <= PCI_HOLE_BASE || e.gpa >= HIGH_RAM_GPA);
    }
  }
});

Deno.test("memoryLayout rejects odd sizes", () => {
  assert.throws(() => memoryLayout(MiB), /below the minimum/);
  assert.throws(() => memoryLayout(256 * MiB + 1), /whole number of 4 KiB pages/);
  assert.throws(() => memoryLayout(Number.NaN), /whole number/);
});

Deno.test("layout: with a VGA, 0xA0000-0xBFFFF is a hole in RAM and the e820 is unchanged", () => {
  const plain = memoryLayout(64 * MiB);
  const vga = memoryLayout(64 * MiB, { vgaHole: true });
  assert.deepEqual(vga.ram, [{ gpa: 0, size: 0xa0000 }, {
    gpa: 0xc0000,
    size: 64 * MiB - 0xc0000,
  }]);
  assert.deepEqual(vga.e820, plain.e820);
});
