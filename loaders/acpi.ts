/**
 * The firmware tables of a {@link Platform}: the platform description,
 * a small AML encoder, the ACPI tables and the MP 1.4 table (one module:
 * they describe the same machine, and the vCPU worker loads one file).
 *
 * @module
 */

// ---- ACPI ----

/*
 * ACPI tables for a {@link Platform}: RSDP, RSDT, XSDT, FADT (revision 4),
 * FACS, MADT and a DSDT whose AML we generate ourselves (the AML section).
 *
 * The build is position independent, in the shape of QEMU's fw_cfg table
 * loader: one `tables` blob (every table but the RSDP) and one `rsdp` blob,
 * where each pointer field holds the *offset* of its target inside `tables`
 * and is listed in {@link AcpiBuild.pointers}; each checksum to compute
 * afterwards is listed in {@link AcpiBuild.checksums}. {@link placeAcpi}
 * applies both for fixed addresses (direct kernel boot); a BIOS loader turns
 * the same lists into ALLOCATE / ADD_POINTER / ADD_CHECKSUM commands.
 *
 * DSDT contents: `\_S5` (sleep type 0, which our PM1a control register
 * treats as power-off), `\_PIC` (stores its argument into the IMCR at ports
 * 0x22/0x23, so an OS that switches to APIC mode also flips our interrupt
 * routing), `\_SB.PWRB` (a PNP0C0C power button) and one ACPI0007 processor
 * device per CPU. The FADT also declares the fixed-feature power button
 * (PWRBTN_STS in the PM1a event block at 0x600).
 *
 *  *
 */

// ---- the platform the tables describe (also the MP table's, CPUID's and the machine's) ----
/** A PCI function's INTx pin and the I/O APIC input it is wired to. */
export interface PciInterrupt {
  /** PCI device number on bus 0. */
  device: number;
  /** INTA# = 0 .. INTD# = 3. */
  pin: number;
  /** The ISA IRQ / GSI the line is routed to (level, active high). */
  irq: number;
}

/** The platform the tables describe. */
export interface Platform {
  /** Processors; processor i has APIC ID i and ACPI UID i. */
  cpus: number;
  lapicGpa: number;
  ioapicId: number;
  ioapicGpa: number;
  /** ISA IRQs that are level-triggered, active high (PCI INTx lines, the SCI). */
  levelIrqs: readonly number[];
  /** The PCI functions' INTx wiring (for the MP table; ACPI guests read PCI config). */
  pciInterrupts: readonly PciInterrupt[];
  /** ACPI SCI interrupt (ISA IRQ). */
  sciIrq: number;
  /** PM1a event block (status + enable, 4 bytes) and control block (2 bytes) ports. */
  pm1aEventPort: number;
  pm1aControlPort: number;
  /** PIIX reset control register (FADT RESET_REG) and its reset value. */
  resetPort: number;
  resetValue: number;
}

/** The PC platform vmmctl builds, for `cpus` processors. */
export function pcPlatform(
  cpus: number,
  options: { levelIrqs?: readonly number[]; pciInterrupts?: readonly PciInterrupt[] } = {},
): Platform {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 254) {
    throw new Error(`Cannot describe ${cpus} processors: xAPIC IDs allow 1 to 254`);
  }
  const sciIrq = 9;
  return {
    cpus,
    lapicGpa: 0xfee00000,
    // The MP spec wants I/O APIC IDs distinct from the local APICs' (4 bits wide).
    ioapicId: cpus < 15 ? cpus : 0,
    ioapicGpa: 0xfec00000,
    levelIrqs: [...new Set([...(options.levelIrqs ?? []), sciIrq])].sort((a, b) => a - b),
    pciInterrupts: options.pciInterrupts ?? [],
    sciIrq,
    pm1aEventPort: 0x600,
    pm1aControlPort: 0x604,
    resetPort: 0xcf9,
    resetValue: 0x06,
  };
}

/** The I/O APIC input (GSI) of ISA `irq`: the PIT's IRQ 0 is wired to input 2, the rest 1:1. */
export function isaIrqToGsi(irq: number): number {
  return irq === 0 ? 2 : irq;
}

// ---- ACPI ----

/** Which blob a pointer or checksum lives in. */
export type AcpiBlobName = "rsdp" | "tables";

/** A pointer field that must have the `tables` blob's address added. */
export interface AcpiPointer {
  blob: AcpiBlobName;
  offset: number;
  size: 4 | 8;
}

/** A checksum byte at `offset` making bytes [start, start+length) of `blob` sum to 0. */
export interface AcpiChecksum {
  blob: AcpiBlobName;
  offset: number;
  start: number;
  length: number;
}

/** A position-independent ACPI build (see the module doc). */
export interface AcpiBuild {
  tables: Uint8Array;
  rsdp: Uint8Array;
  /** To apply in order: pointers, then checksums (in order: RSDP's short one first). */
  pointers: AcpiPointer[];
  checksums: AcpiChecksum[];
  /** Where each table starts inside `tables`. */
  entries: { signature: string; offset: number; length: number }[];
}

/** OEM fields of every table. */
export const ACPI_OEM_ID = "VMMCTL";
export const ACPI_OEM_TABLE_ID = "VMMCTL  ";
const CREATOR_ID = "VMMC";

const MADT_LAPIC = 0;
const MADT_IOAPIC = 1;
const MADT_ISO = 2;
const MADT_LAPIC_NMI = 4;
/** MPS INTI flags: active high, edge (ISA default spelled out) / active high, level. */
const INTI_HIGH_EDGE = 0x5;
const INTI_HIGH_LEVEL = 0xd;

class Writer {
  bytes: number[] = [];
  u8(v: number) {
    this.bytes.push(v & 0xff);
    return this;
  }
  u16(v: number) {
    return this.u8(v).u8(v >> 8);
  }
  u32(v: number) {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
  u64(v: number) {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32));
  }
  ascii(s: string, n: number) {
    for (let i = 0; i < n; i++) this.u8(i < s.length ? s.charCodeAt(i) : 0x20);
    return this;
  }
  /** A Generic Address Structure in system I/O space (all zero: not present). */
  gasIo(port: number, bits: number) {
    if (port === 0) return this.u32(0).u64(0);
    return this.u8(1).u8(bits).u8(0).u8(bits >= 32 ? 3 : bits >= 16 ? 2 : 1).u64(port);
  }
}

/** A table: the 36-byte header, then `body`; length filled in, checksum 0 (listed). */
function table(signature: string, revision: number, body: number[]): Uint8Array {
  const w = new Writer();
  w.ascii(signature, 4).u32(36 + body.length).u8(revision).u8(0);
  w.ascii(ACPI_OEM_ID, 6).ascii(ACPI_OEM_TABLE_ID, 8).u32(1).ascii(CREATOR_ID, 4).u32(1);
  w.bytes.push(...body);
  return Uint8Array.from(w.bytes);
}

function madt(p: Platform): Uint8Array {
  const w = new Writer();
  w.u32(p.lapicGpa).u32(1); // PCAT_COMPAT: the 8259s are there too
  for (let i = 0; i < p.cpus; i++) w.u8(MADT_LAPIC).u8(8).u8(i).u8(i).u32(1);
  w.u8(MADT_IOAPIC).u8(12).u8(p.ioapicId).u8(0).u32(p.ioapicGpa).u32(0);
  w.u8(MADT_ISO).u8(10).u8(0).u8(0).u32(isaIrqToGsi(0)).u16(0); // IRQ0 -> GSI2, ISA defaults
  for (const irq of p.levelIrqs) w.u8(MADT_ISO).u8(10).u8(0).u8(irq).u32(irq).u16(INTI_HIGH_LEVEL);
  w.u8(MADT_LAPIC_NMI).u8(6).u8(0xff).u16(INTI_HIGH_EDGE).u8(1); // NMI on every CPU's LINT1
  return table("APIC", 1, w.bytes);
}

function dsdt(p: Platform): Uint8Array {
  const cpus = Array.from(
    { length: p.cpus },
    (_, i) =>
      aml.device(`C${i.toString(16).toUpperCase().padStart(3, "0")}`, [
        aml.name("_HID", aml.string("ACPI0007")),
        aml.name("_UID", aml.int(i)),
      ]),
  );
  const body = [
    aml.name("\\_S5_", aml.pkg([aml.int(0), aml.int(0), aml.int(0), aml.int(0)])),
    aml.ioRegion("\\IMCR", 0x22, 2),
    aml.byteField("\\IMCR", [["IMCS", 8], ["IMCD", 8]]),
    aml.storeArgMethod("\\_PIC", ["\\IMCS", 0x70], "\\IMCD"),
    aml.scope("\\_SB_", [
      aml.device("PWRB", [aml.name("_HID", aml.eisaId("PNP0C0C"))]),
      ...cpus,
    ]),
  ].flat();
  return table("DSDT", 2, body);
}

/** FADT (revision 4, 244 bytes); pointer fields hold 0 and are listed by the caller. */
function fadt(p: Platform): Uint8Array {
  const w = new Writer();
  w.u32(0).u32(0); // FIRMWARE_CTRL, DSDT (pointers)
  w.u8(0).u8(0).u16(p.sciIrq).u32(0); // reserved, profile unspecified, SCI, no SMI_CMD
  w.u8(0).u8(0).u8(0).u8(0); // ACPI_ENABLE/DISABLE (always in ACPI mode), S4BIOS, PSTATE
  w.u32(p.pm1aEventPort).u32(0).u32(p.pm1aControlPort).u32(0).u32(0).u32(0); // no PM timer
  w.u32(0).u32(0); // no GPE blocks
  w.u8(4).u8(2).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0);
  w.u16(0xfff).u16(0xfff); // C2/C3 not supported
  w.u16(0).u16(0).u8(0).u8(0);
  w.u8(0).u8(0).u8(0x32); // no RTC alarms; century at CMOS 0x32
  w.u16(0x3).u8(0); // IAPC_BOOT_ARCH: legacy devices, 8042
  // WBINVD, PROC_C1, SLP_BUTTON (none; the power button is fixed-feature), RESET_REG_SUP.
  w.u32((1 << 0) | (1 << 2) | (1 << 5) | (1 << 10));
  w.gasIo(p.resetPort, 8).u8(p.resetValue).u8(0).u8(0).u8(0);
  w.u64(0).u64(0); // X_FIRMWARE_CTRL (the 32-bit one is used), X_DSDT (pointer)
  w.gasIo(p.pm1aEventPort, 32).gasIo(0, 0).gasIo(p.pm1aControlPort, 16).gasIo(0, 0);
  w.gasIo(0, 0).gasIo(0, 0).gasIo(0, 0).gasIo(0, 0);
  return table("FACP", 4, w.bytes);
}

function facs(): Uint8Array {
  const w = new Writer();
  w.ascii("FACS", 4).u32(64).u32(0).u32(0).u32(0).u32(0).u64(0).u8(2);
  while (w.bytes.length < 64) w.u8(0);
  return Uint8Array.from(w.bytes);
}

/** FADT field offsets of the pointers. */
const FADT_FIRMWARE_CTRL = 36;
const FADT_DSDT = 40;
const FADT_X_DSDT = 140;

/** Builds the ACPI tables of `p` (see the module doc). */
export function buildAcpi(p: Platform): AcpiBuild {
  const out: number[] = [];
  const entries: AcpiBuild["entries"] = [];
  const pointers: AcpiPointer[] = [];
  const checksums: AcpiChecksum[] = [];
  const add = (t: Uint8Array, signature: string, align = 8, checksum = true) => {
    while (out.length % align) out.push(0);
    const offset = out.length;
    out.push(...t);
    entries.push({ signature, offset, length: t.length });
    if (checksum) {
      checksums.push({ blob: "tables", offset: offset + 9, start: offset, length: t.length });
    }
    return offset;
  };
  const set = (offset: number, size: 4 | 8, value: number) => {
    for (let i = 0; i < size; i++) out[offset + i] = i < 4 ? (value >>> (8 * i)) & 0xff : 0;
    pointers.push({ blob: "tables", offset, size });
  };
  const facsAt = add(facs(), "FACS", 64, false);
  const dsdtAt = add(dsdt(p), "DSDT");
  const fadtAt = add(fadt(p), "FACP");
  set(fadtAt + FADT_FIRMWARE_CTRL, 4, facsAt);
  set(fadtAt + FADT_DSDT, 4, dsdtAt);
  set(fadtAt + FADT_X_DSDT, 8, dsdtAt);
  const madtAt = add(madt(p), "APIC");
  const described = [fadtAt, madtAt];
  const rsdtAt = add(table("RSDT", 1, new Array(4 * described.length).fill(0)), "RSDT");
  described.forEach((t, i) => set(rsdtAt + 36 + 4 * i, 4, t));
  const xsdtAt = add(table("XSDT", 1, new Array(8 * described.length).fill(0)), "XSDT");
  described.forEach((t, i) => set(xsdtAt + 36 + 8 * i, 8, t));

  const r = new Writer();
  r.ascii("RSD PTR ", 8).u8(0).ascii(ACPI_OEM_ID, 6).u8(2).u32(rsdtAt).u32(36).u64(xsdtAt);
  r.u8(0).u8(0).u8(0).u8(0);
  const rsdp = Uint8Array.from(r.bytes);
  pointers.push({ blob: "rsdp", offset: 16, size: 4 }, { blob: "rsdp", offset: 24, size: 8 });
  checksums.push(
    { blob: "rsdp", offset: 8, start: 0, length: 20 },
    { blob: "rsdp", offset: 32, start: 0, length: 36 },
  );
  return { tables: Uint8Array.from(out), rsdp, pointers, checksums, entries };
}

/** Sets the checksum byte so the range sums to 0 mod 256. */
export function fixChecksum(bytes: Uint8Array, offset: number, start: number, length: number) {
  bytes[offset] = 0;
  let sum = 0;
  for (let i = start; i < start + length; i++) sum += bytes[i];
  bytes[offset] = (256 - (sum & 0xff)) & 0xff;
}

/** The sum of `bytes` mod 256 (0 for a valid ACPI or MP structure). */
export function byteSum(bytes: Uint8Array): number {
  return bytes.reduce((s, b) => (s + b) & 0xff, 0);
}

/** Applies the pointers (for `tables` at `tablesGpa`) and the checksums. */
export function placeAcpi(
  build: AcpiBuild,
  tablesGpa: number,
): { tables: Uint8Array; rsdp: Uint8Array } {
  const blobs = { tables: build.tables.slice(), rsdp: build.rsdp.slice() };
  for (const ptr of build.pointers) {
    const view = new DataView(blobs[ptr.blob].buffer);
    if (ptr.size === 4) {
      view.setUint32(ptr.offset, view.getUint32(ptr.offset, true) + tablesGpa, true);
    } else {
      view.setBigUint64(ptr.offset, view.getBigUint64(ptr.offset, true) + BigInt(tablesGpa), true);
    }
  }
  for (const c of build.checksums) fixChecksum(blobs[c.blob], c.offset, c.start, c.length);
  return blobs;
}

// ---- AML ----

/*
 * A small ACPI Machine Language encoder (ACPI 6.x section 20): just the
 * terms the generated DSDT uses (names, scopes, devices, packages, integer
 * and string data, a SystemIO operation region with its fields, and a
 * one-argument method that stores into a field). Each function returns the
 * encoded bytes of one term, so trees compose with spread arrays.
 *
 *  *
 */

const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const STRING_PREFIX = 0x0d;
const SCOPE_OP = 0x10;
const METHOD_OP = 0x14;
const PACKAGE_OP = 0x12;
const STORE_OP = 0x70;
const ARG0_OP = 0x68;
const EXT_OP = 0x5b;
const OP_REGION_OP = 0x80;
const FIELD_OP = 0x81;
const DEVICE_OP = 0x82;
const ROOT_CHAR = 0x5c;
const DUAL_NAME_PREFIX = 0x2e;
const MULTI_NAME_PREFIX = 0x2f;

/** A PkgLength (20.2.4) for `n` bytes of body: the encoding counts itself. */
export function pkgLength(n: number): number[] {
  if (n + 1 < 0x40) return [n + 1];
  for (let extra = 1; extra <= 3; extra++) {
    const total = n + 1 + extra;
    if (total < 1 << (4 + 8 * extra)) {
      const out = [(extra << 6) | (total & 0xf)];
      for (let i = 0; i < extra; i++) out.push((total >> (4 + 8 * i)) & 0xff);
      return out;
    }
  }
  throw new Error(`AML package of ${n} bytes is too long`);
}

function nameSeg(seg: string): number[] {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) throw new Error(`Bad AML name segment "${seg}"`);
  return [...seg.padEnd(4, "_")].map((c) => c.charCodeAt(0));
}

/** A NameString: `\` for the root, `.` between segments ("\\_SB_.PWRB"). */
export function nameString(path: string): number[] {
  const out: number[] = [];
  let rest = path;
  if (rest.startsWith("\\")) {
    out.push(ROOT_CHAR);
    rest = rest.slice(1);
  }
  const segs = rest === "" ? [] : rest.split(".");
  if (segs.length === 2) out.push(DUAL_NAME_PREFIX);
  else if (segs.length > 2) out.push(MULTI_NAME_PREFIX, segs.length);
  else if (segs.length === 0) out.push(ZERO_OP); // NullName
  for (const s of segs) out.push(...nameSeg(s));
  return out;
}

/** The AML terms. */
export const aml = {
  /** An integer constant in the shortest encoding. */
  int(v: number): number[] {
    if (v === 0) return [ZERO_OP];
    if (v === 1) return [ONE_OP];
    if (v < 0x100) return [BYTE_PREFIX, v];
    if (v < 0x10000) return [WORD_PREFIX, v & 0xff, v >> 8];
    return [DWORD_PREFIX, v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
  },
  /** A NUL-terminated ASCII string. */
  string(s: string): number[] {
    return [STRING_PREFIX, ...[...s].map((c) => c.charCodeAt(0) & 0x7f), 0];
  },
  /** EisaId("PNP0C0C"): three letters (5 bits each) and four hex digits, as a DWORD. */
  eisaId(id: string): number[] {
    if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new Error(`Bad EISA ID "${id}"`);
    const l = (i: number) => id.charCodeAt(i) - 0x40;
    const vendor = (l(0) << 10) | (l(1) << 5) | l(2);
    const product = parseInt(id.slice(3), 16);
    return [
      DWORD_PREFIX,
      vendor >> 8,
      vendor & 0xff,
      product >> 8,
      product & 0xff,
    ];
  },
  /** Name(path, data). */
  name(path: string, data: number[]): number[] {
    return [NAME_OP, ...nameString(path), ...data];
  },
  /** Package() { elements }. */
  pkg(elements: number[][]): number[] {
    const body = [elements.length, ...elements.flat()];
    return [PACKAGE_OP, ...pkgLength(body.length), ...body];
  },
  /** Scope(path) { terms }. */
  scope(path: string, terms: number[][]): number[] {
    const body = [...nameString(path), ...terms.flat()];
    return [SCOPE_OP, ...pkgLength(body.length), ...body];
  },
  /** Device(name) { terms }. */
  device(name: string, terms: number[][]): number[] {
    const body = [...nameString(name), ...terms.flat()];
    return [EXT_OP, DEVICE_OP, ...pkgLength(body.length), ...body];
  },
  /** OperationRegion(name, SystemIO, port, length). */
  ioRegion(name: string, port: number, length: number): number[] {
    return [EXT_OP, OP_REGION_OP, ...nameString(name), 0x01, ...aml.int(port), ...aml.int(length)];
  },
  /** Field(region, ByteAcc, NoLock, Preserve) { name, bits; ... }. */
  byteField(region: string, fields: [string, number][]): number[] {
    // A named field's length is a PkgLength-shaped bit count that does not count itself.
    const list = fields.flatMap(([n, bits]) => {
      if (bits < 1 || bits >= 0x40) throw new Error(`AML field ${n} of ${bits} bits unsupported`);
      return [...nameSeg(n), bits];
    });
    const body = [...nameString(region), 0x01, ...list];
    return [EXT_OP, FIELD_OP, ...pkgLength(body.length), ...body];
  },
  /** Method(name, 1) { Store(constant, field0); Store(Arg0, field1) }: the _PIC shape. */
  storeArgMethod(name: string, select: [string, number], target: string): number[] {
    const body = [
      ...nameString(name),
      0x01, // one argument, not serialized
      STORE_OP,
      ...aml.int(select[1]),
      ...nameString(select[0]),
      STORE_OP,
      ARG0_OP,
      ...nameString(target),
    ];
    return [METHOD_OP, ...pkgLength(body.length), ...body];
  },
};

// ---- the MP table ----

/*
 * The Intel MultiProcessor Specification 1.4 table, for guests older than
 * ACPI (and OpenBSD's `mpbios`): a 16-byte floating pointer structure
 * ("_MP_", found by the scan of the BIOS area) pointing at a configuration
 * table ("PCMP") with one processor entry per CPU, the ISA and PCI buses,
 * the I/O APIC, the I/O interrupt assignments (ISA IRQ n -> input n, IRQ 0
 * -> input 2, ExtINT on input 0; PCI INTx lines level, active high) and the
 * local interrupts (ExtINT on LINT0, NMI on LINT1).
 */

const PROCESSOR = 0;
const BUS = 1;
const IOAPIC = 2;
const IO_INTERRUPT = 3;
const LOCAL_INTERRUPT = 4;
const INT = 0;
const NMI = 1;
const EXTINT = 3;
const ISA_BUS = 1;
const PCI_BUS = 0;
/** Interrupt flags: conforming (bus default) / active high + level. */
const CONFORMING = 0;
const HIGH_LEVEL = 0x1 | (0x3 << 2);

/** The MP structures for `p`, with the configuration table at `configGpa`. */
export function buildMpTable(
  p: Platform,
  configGpa: number,
): { floating: Uint8Array; config: Uint8Array } {
  const entries: number[] = [];
  let count = 0;
  const entry = (...bytes: number[]) => {
    entries.push(...bytes);
    count++;
  };
  const u32 = (v: number) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
  // Family 6 signature, FPU + APIC feature flags, as a real table lists them.
  const signature = u32(0x600);
  const features = u32((1 << 0) | (1 << 9));
  for (let i = 0; i < p.cpus; i++) {
    const flags = 1 | (i === 0 ? 2 : 0); // enabled, BSP
    entry(PROCESSOR, i, 0x14, flags, ...signature, ...features, ...new Array(8).fill(0));
  }
  const name = (s: string) => [...s.padEnd(6, " ")].map((c) => c.charCodeAt(0));
  entry(BUS, PCI_BUS, ...name("PCI"));
  entry(BUS, ISA_BUS, ...name("ISA"));
  entry(IOAPIC, p.ioapicId, 0x11, 1, ...u32(p.ioapicGpa));
  const level = new Set(p.levelIrqs);
  entry(IO_INTERRUPT, EXTINT, 0, 0, ISA_BUS, 0, p.ioapicId, 0);
  for (let irq = 0; irq < 16; irq++) {
    if (irq === 2) continue; // the cascade
    const flags = level.has(irq) ? HIGH_LEVEL : CONFORMING;
    entry(IO_INTERRUPT, INT, flags, 0, ISA_BUS, irq, p.ioapicId, isaIrqToGsi(irq));
  }
  for (const pci of p.pciInterrupts) {
    const source = (pci.device << 2) | (pci.pin & 3);
    entry(IO_INTERRUPT, INT, HIGH_LEVEL, 0, PCI_BUS, source, p.ioapicId, pci.irq);
  }
  entry(LOCAL_INTERRUPT, EXTINT, CONFORMING, 0, ISA_BUS, 0, 0xff, 0);
  entry(LOCAL_INTERRUPT, NMI, CONFORMING, 0, ISA_BUS, 0, 0xff, 1);

  const header: number[] = [
    ..."PCMP".split("").map((c) => c.charCodeAt(0)),
    (44 + entries.length) & 0xff,
    (44 + entries.length) >> 8,
    4, // spec revision 1.4
    0, // checksum
    ..."VMMCTL  ".split("").map((c) => c.charCodeAt(0)),
    ..."VMMCTL PC   ".split("").map((c) => c.charCodeAt(0)),
    ...u32(0), // no OEM table
    0,
    0,
    count & 0xff,
    count >> 8,
    ...u32(p.lapicGpa),
    0,
    0,
    0, // no extended table
    0,
  ];
  const config = Uint8Array.from([...header, ...entries]);
  fixChecksum(config, 7, 0, config.length);
  const floating = Uint8Array.from([
    ..."_MP_".split("").map((c) => c.charCodeAt(0)),
    ...u32(configGpa),
    1, // length in 16-byte units
    4,
    0, // checksum
    0, // feature 1: the configuration table is present
    0,
    0,
    0,
    0,
  ]);
  fixChecksum(floating, 10, 0, 16);
  if (byteSum(config) !== 0 || byteSum(floating) !== 0) throw new Error("MP table checksum");
  return { floating, config };
}
