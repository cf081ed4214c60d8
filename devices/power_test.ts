import assert from "node:assert/strict";
import { inb, inN, outb, outN, RecordingIrqLine } from "./fakes.ts";
import { AcpiPmEvents, PM1_PWRBTN, PM1_WAK_STS, PowerControl, ResetControl } from "./power.ts";

Deno.test("power: SLP_EN in a 16-bit write powers off, whatever SLP_TYP", () => {
  let offs = 0;
  const pm = new PowerControl(() => offs++);
  assert.equal(inN(pm, 0, 2), 0x0001, "SCI_EN set: ACPI mode");
  outN(pm, 0, 2, 0x0001 | (5 << 10));
  assert.equal(offs, 0);
  assert.equal(inN(pm, 0, 2), 0x1401, "SLP_TYP kept");
  outN(pm, 0, 2, 0x2000);
  assert.equal(offs, 1);
  outN(pm, 0, 2, 0x2000 | (5 << 10));
  assert.equal(offs, 2);
  assert.equal(inN(pm, 0, 2) & 0x2000, 0, "SLP_EN reads 0");
});

Deno.test("power: byte writes update their half; the low byte alone never powers off", () => {
  let offs = 0;
  const pm = new PowerControl(() => offs++);
  outb(pm, 0, 0xff);
  assert.equal(offs, 0);
  outb(pm, 1, 0x20);
  assert.equal(offs, 1);
  assert.equal(inb(pm, 1), 0x00);
  assert.equal(inN(pm, 1, 1), 0x00);
});

Deno.test("reset control: RST_CPU resets (0x06, 0x0E); others are stored", () => {
  let resets = 0;
  const rcr = new ResetControl(() => resets++);
  assert.equal(inb(rcr, 0), 0);
  outb(rcr, 0, 0x02); // Linux first sets SYS_RST...
  assert.equal(resets, 0);
  assert.equal(inb(rcr, 0), 0x02);
  outb(rcr, 0, 0x06); // ...then RST_CPU
  assert.equal(resets, 1);
  outb(rcr, 0, 0x0e);
  assert.equal(resets, 2);
  assert.equal(inb(rcr, 0), 0x0a, "RST_CPU reads 0");
  outN(rcr, 0, 4, 0xffffff00);
  assert.equal(resets, 2, "wide write: low byte 0");
});

Deno.test("acpi pm1: the power button raises the SCI only when enabled; status is write-one-to-clear", () => {
  const sci = new RecordingIrqLine();
  const pm = new AcpiPmEvents(sci);
  pm.pressPowerButton();
  assert.equal(inN(pm, 0, 2), PM1_PWRBTN);
  assert.equal(sci.level, false, "PWRBTN_EN clear: no SCI");
  outN(pm, 2, 2, 0xffff);
  assert.equal(inN(pm, 2, 2), 0x0721, "only the defined enable bits stick");
  assert.equal(sci.level, true);
  assert.equal(inN(pm, 0, 4), (0x0721 << 16) | PM1_PWRBTN, "a dword read sees both registers");
  outN(pm, 0, 2, 0); // writing zeros clears nothing
  assert.equal(sci.level, true);
  outN(pm, 0, 2, PM1_PWRBTN);
  assert.equal(inN(pm, 0, 2), 0);
  assert.equal(sci.level, false);
  assert.deepEqual(sci.history, [true, false]);
  outN(pm, 0, 2, 0xffff); // clearing bits that are not set, and the wake bit, is harmless
  assert.equal(inN(pm, 0, 2) & PM1_WAK_STS, 0);
  assert.equal(inN(pm, 4, 1), 0, "past the block");
});
