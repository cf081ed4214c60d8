/**
 * Test-only helpers for the loader tests: run nasm/ld on sources written at
 * test time, and a small ELF writer for images the tools cannot make
 * (exact physical/virtual addresses, malformed headers).
 *
 * @module
 */

function toolWorks(cmd: string, args: string[]): boolean {
  try {
    return new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** nasm is on PATH. */
export const HAVE_NASM: boolean = toolWorks("nasm", ["-v"]);
/** GNU ld (binutils) is on PATH and knows the i386 and x86-64 ELF emulations. */
export const HAVE_LD: boolean = toolWorks("ld", ["-V"]);

/** Logs once why a group of tests is skipped. */
export function skipNote(tool: string, what: string): void {
  console.warn(`${tool} not found: skipping ${what}`);
}

function run(cmd: string, args: string[]): void {
  const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * Assembles `source` with nasm (`format` "bin", "elf32" or "elf64"; `defines`
 * become -D options) and, when `linkerScript` is given, links the object with
 * ld. Returns the resulting file's bytes.
 */
export function buildWithNasm(
  source: string,
  format: "bin" | "elf32" | "elf64",
  options: { defines?: Record<string, string | number>; linkerScript?: string } = {},
): Uint8Array {
  const dir = Deno.makeTempDirSync({ prefix: "vmmctl-loader-test-" });
  try {
    Deno.writeTextFileSync(`${dir}/k.asm`, source);
    const defs = Object.entries(options.defines ?? {}).map(([k, v]) => `-D${k}=${v}`);
    const object = format === "bin" ? `${dir}/k.bin` : `${dir}/k.o`;
    run("nasm", ["-f", format, ...defs, "-o", object, `${dir}/k.asm`]);
    if (!options.linkerScript) return Deno.readFileSync(object);
    Deno.writeTextFileSync(`${dir}/k.ld`, options.linkerScript);
    const emulation = format === "elf32" ? "elf_i386" : "elf_x86_64";
    run("ld", ["-m", emulation, "-T", `${dir}/k.ld`, "-o", `${dir}/k.elf`, object]);
    return Deno.readFileSync(`${dir}/k.elf`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** One segment for {@link writeElf}. */
export interface TestSegment {
  type?: number;
  vaddr: bigint;
  paddr: bigint;
  data: Uint8Array;
  memSize?: number;
}

/** One note for {@link writeElf} (placed in a PT_NOTE segment). */
export interface TestNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

/**
 * Writes a minimal little-endian x86 ELF executable: header, program
 * headers, segment data (each 16-byte aligned in the file), and one PT_NOTE
 * segment when `notes` are given.
 */
export function writeElf(spec: {
  elfClass: 32 | 64;
  entry: bigint;
  segments: TestSegment[];
  notes?: TestNote[];
  machine?: number;
}): Uint8Array {
  const is64 = spec.elfClass === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const noteBytes = encodeNotes(spec.notes ?? []);
  const phnum = spec.segments.length + (noteBytes.length > 0 ? 1 : 0);
  let offset = ehsize + phnum * phentsize;
  const placed: { seg: TestSegment; offset: number }[] = [];
  for (const seg of spec.segments) {
    offset = Math.ceil(offset / 16) * 16;
    placed.push({ seg, offset });
    offset += seg.data.length;
  }
  offset = Math.ceil(offset / 16) * 16;
  const noteOffset = offset;
  const out = new Uint8Array(noteOffset + noteBytes.length);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1]);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, spec.machine ?? (is64 ? 62 : 3), true);
  v.setUint32(20, 1, true);
  if (is64) {
    v.setBigUint64(24, spec.entry, true);
    v.setBigUint64(32, BigInt(ehsize), true);
    v.setUint16(52, ehsize, true);
    v.setUint16(54, phentsize, true);
    v.setUint16(56, phnum, true);
  } else {
    v.setUint32(24, Number(spec.entry), true);
    v.setUint32(28, ehsize, true);
    v.setUint16(40, ehsize, true);
    v.setUint16(42, phentsize, true);
    v.setUint16(44, phnum, true);
  }
  const phdr = (
    i: number,
    type: number,
    off: number,
    va: bigint,
    pa: bigint,
    fsz: number,
    msz: number,
  ) => {
    const o = ehsize + i * phentsize;
    if (is64) {
      v.setUint32(o, type, true);
      v.setUint32(o + 4, 7, true);
      v.setBigUint64(o + 8, BigInt(off), true);
      v.setBigUint64(o + 16, va, true);
      v.setBigUint64(o + 24, pa, true);
      v.setBigUint64(o + 32, BigInt(fsz), true);
      v.setBigUint64(o + 40, BigInt(msz), true);
      v.setBigUint64(o + 48, 4n, true);
    } else {
      v.setUint32(o, type, true);
      v.setUint32(o + 4, off, true);
      v.setUint32(o + 8, Number(va), true);
      v.setUint32(o + 12, Number(pa), true);
      v.setUint32(o + 16, fsz, true);
      v.setUint32(o + 20, msz, true);
      v.setUint32(o + 24, 7, true);
      v.setUint32(o + 28, 4, true);
    }
  };
  placed.forEach(({ seg, offset }, i) => {
    out.set(seg.data, offset);
    phdr(
      i,
      seg.type ?? 1,
      offset,
      seg.vaddr,
      seg.paddr,
      seg.data.length,
      seg.memSize ?? seg.data.length,
    );
  });
  if (noteBytes.length > 0) {
    out.set(noteBytes, noteOffset);
    phdr(spec.segments.length, 4, noteOffset, 0n, 0n, noteBytes.length, noteBytes.length);
  }
  return out;
}

function encodeNotes(notes: TestNote[]): Uint8Array {
  const parts: number[] = [];
  const u32 = (x: number) =>
    parts.push(x & 0xff, (x >> 8) & 0xff, (x >> 16) & 0xff, (x >>> 24) & 0xff);
  const padTo4 = () => {
    while (parts.length % 4) parts.push(0);
  };
  for (const n of notes) {
    const name = new TextEncoder().encode(n.name + "\0");
    u32(name.length);
    u32(n.desc.length);
    u32(n.type);
    parts.push(...name);
    padTo4();
    parts.push(...n.desc);
    padTo4();
  }
  return new Uint8Array(parts);
}

/** Little-endian bytes of a 32-bit value. */
export function le32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

/** Little-endian bytes of a 64-bit value. */
export function le64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}
