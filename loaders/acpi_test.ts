import assert from "node:assert/strict";
import { buildAcpi, byteSum, pcPlatform, placeAcpi } from "./acpi.ts";
import { aml, nameString, pkgLength } from "./acpi.ts";
import { buildMpTable } from "./acpi.ts";

const TABLES_GPA = 0xf1000;

function placed(cpus: number) {
  const build = buildAcpi(pcPlatform(cpus, { levelIrqs: [5, 10, 11] }));
  return { build, ...placeAcpi(build, TABLES_GPA) };
}

function table(tables: Uint8Array, build: ReturnType<typeof buildAcpi>, sig: string) {
  const e = build.entries.find((t) => t.signature === sig)!;
  return tables.subarray(e.offset, e.offset + e.length);
}

Deno.test("acpi: RSDP, RSDT, XSDT and every table checksum to 0 and point at each other", () => {
  const { build, tables, rsdp } = placed(4);
  assert.equal(new TextDecoder().decode(rsdp.subarray(0, 8)), "RSD PTR ");
  assert.equal(byteSum(rsdp.subarray(0, 20)), 0);
  assert.equal(byteSum(rsdp), 0);
  assert.equal(rsdp[15], 2, "ACPI 2.0+ revision");
  for (const e of build.entries) {
    const t = tables.subarray(e.offset, e.offset + e.length);
    const len = new DataView(t.buffer, t.byteOffset).getUint32(4, true);
    assert.equal(len, e.length, e.signature);
    if (e.signature !== "FACS") assert.equal(byteSum(t), 0, `${e.signature} checksum`);
  }
  const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.length);
  const at = (sig: string) => TABLES_GPA + build.entries.find((t) => t.signature === sig)!.offset;
  assert.equal(view(rsdp).getUint32(16, true), at("RSDT"));
  assert.equal(Number(view(rsdp).getBigUint64(24, true)), at("XSDT"));
  const rsdt = view(table(tables, build, "RSDT"));
  assert.deepEqual([rsdt.getUint32(36, true), rsdt.getUint32(40, true)], [at("FACP"), at("APIC")]);
  const xsdt = view(table(tables, build, "XSDT"));
  assert.equal(Number(xsdt.getBigUint64(44, true)), at("APIC"));
  const fadt = view(table(tables, build, "FACP"));
  assert.equal(fadt.getUint32(36, true), at("FACS"));
  assert.equal(fadt.getUint32(40, true), at("DSDT"));
  assert.equal(Number(fadt.getBigUint64(140, true)), at("DSDT"));
  assert.equal(at("FACS") % 64, 0, "FACS is 64-byte aligned");
  // A corrupted byte breaks the checksum (the check can fail).
  const t = table(tables, build, "APIC").slice();
  t[40]++;
  assert.notEqual(byteSum(t), 0);
});

Deno.test("acpi: MADT lists one enabled LAPIC per CPU, the IOAPIC and the overrides", () => {
  const { build, tables } = placed(3);
  const t = table(tables, build, "APIC");
  const found: string[] = [];
  for (let o = 44; o < t.length; o += t[o + 1]) {
    const d = new DataView(t.buffer, t.byteOffset + o);
    if (t[o] === 0) {
      found.push(`lapic uid ${t[o + 2]} id ${t[o + 3]} flags ${d.getUint32(4, true)}`);
    }
    if (t[o] === 1) found.push(`ioapic ${t[o + 2]} @${d.getUint32(4, true).toString(16)}`);
    if (t[o] === 2) found.push(`iso ${t[o + 3]}->${d.getUint32(4, true)} ${d.getUint16(8, true)}`);
    if (t[o] === 4) found.push(`nmi lint${t[o + 5]}`);
  }
  assert.deepEqual(found, [
    "lapic uid 0 id 0 flags 1",
    "lapic uid 1 id 1 flags 1",
    "lapic uid 2 id 2 flags 1",
    "ioapic 3 @fec00000",
    "iso 0->2 0",
    "iso 5->5 13",
    "iso 9->9 13",
    "iso 10->10 13",
    "iso 11->11 13",
    "nmi lint1",
  ]);
});

Deno.test("aml: package lengths, names, EISA IDs", () => {
  assert.deepEqual(pkgLength(10), [11]);
  assert.deepEqual(pkgLength(62), [63]);
  assert.deepEqual(pkgLength(63), [0x41, 0x04], "65 = 0x41: 2-byte form counts itself");
  assert.deepEqual(pkgLength(0x1000), [0x83, 0x00, 0x01]);
  assert.deepEqual(nameString("\\_SB_.PWRB"), [
    0x5c,
    0x2e,
    ...[..."_SB_PWRB"].map((c) => c.charCodeAt(0)),
  ]);
  assert.deepEqual(aml.eisaId("PNP0C0C"), [0x0c, 0x41, 0xd0, 0x0c, 0x0c]);
  assert.deepEqual(aml.int(0x1234), [0x0b, 0x34, 0x12]);
  assert.throws(() => nameString("toolong"));
});

Deno.test("mptable: floating pointer and configuration table checksum; CPUs, IOAPIC, IRQs", () => {
  const { floating, config } = buildMpTable(
    pcPlatform(2, { pciInterrupts: [{ device: 1, pin: 0, irq: 10 }], levelIrqs: [10] }),
    0xf0100,
  );
  assert.equal(new TextDecoder().decode(floating.subarray(0, 4)), "_MP_");
  assert.equal(byteSum(floating), 0);
  assert.equal(new DataView(floating.buffer).getUint32(4, true), 0xf0100);
  assert.equal(new TextDecoder().decode(config.subarray(0, 4)), "PCMP");
  assert.equal(byteSum(config), 0);
  assert.equal(new DataView(config.buffer).getUint16(4, true), config.length);
  const kinds: string[] = [];
  for (let o = 44; o < config.length; o += config[o] === 0 ? 20 : 8) {
    const e = config.subarray(o, o + 8);
    if (e[0] === 0) kinds.push(`cpu ${e[1]} flags ${e[3]}`);
    if (e[0] === 2) kinds.push(`ioapic ${e[1]}`);
    if (e[0] === 3 && (e[5] === 0 || e[4] === 0)) {
      kinds.push(`int bus${e[4]} ${e[5]}->${e[7]} f${e[2]}`);
    }
  }
  assert.deepEqual(kinds, [
    "cpu 0 flags 3",
    "cpu 1 flags 1",
    "ioapic 2",
    "int bus1 0->0 f0",
    "int bus1 0->2 f0",
    "int bus0 4->10 f13",
  ]);
});

/** `iasl -d` (ACPICA, a decompiler nobody here wrote) on each table. */
Deno.test({
  name: "acpi: every table decompiles with iasl -d without errors; the MADT lists the CPUs",
  ignore: !(await hasIasl()),
  fn: async () => {
    const { build, tables } = placed(4);
    const dir = await Deno.makeTempDir({ prefix: "smp-acpi-" });
    try {
      for (const e of build.entries) {
        const path = `${dir}/${e.signature.toLowerCase()}.dat`;
        await Deno.writeFile(path, tables.subarray(e.offset, e.offset + e.length));
        const out = await new Deno.Command("iasl", {
          args: ["-d", path],
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
        })
          .output();
        const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, `${e.signature}: ${text}`);
        assert.doesNotMatch(text, /error|warning/i, `${e.signature}: ${text}`);
        const dsl = await Deno.readTextFile(path.replace(/\.dat$/, ".dsl"));
        assert.doesNotMatch(
          dsl,
          /\*\*\*\* (Unknown|Invalid)|Incorrect|Error/i,
          `${e.signature}:\n${dsl}`,
        );
        if (e.signature === "APIC") {
          const ids = [...dsl.matchAll(/Local Apic ID : ([0-9A-F]+)/g)].map((m) =>
            parseInt(m[1], 16)
          );
          assert.deepEqual(ids, [0, 1, 2, 3]);
          assert.equal([...dsl.matchAll(/Processor Enabled : 1/g)].length, 4);
          assert.match(dsl, /Interrupt : 00000002/);
        }
        if (e.signature === "DSDT") {
          for (const want of ["PNP0C0C", "Name (\\_S5,", "Method (\\_PIC, 1", "ACPI0007", "C003"]) {
            assert.ok(dsl.includes(want), `DSDT lacks ${want}:\n${dsl}`);
          }
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function hasIasl(): Promise<boolean> {
  try {
    const r = await new Deno.Command("iasl", { args: ["-v"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}
