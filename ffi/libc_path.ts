/**
 * Which C library this process runs on, so `Deno.dlopen` binds the same
 * one (its errno, its threads, its signal state) instead of loading a
 * second copy. The answer comes from the process itself:
 * - Linux: the libc mapped in /proc/self/maps;
 * - OpenBSD (no /proc): the `libc.so.MAJOR.MINOR` the deno executable was
 *   linked against (its ELF DT_NEEDED), resolved the way ld.so(1) resolves
 *   it (same major, highest minor installed), then checked against the
 *   objects actually loaded, listed by dl_iterate_phdr(3).
 *
 * Each step is a pure function over text or bytes, tested with fakes; the
 * host side ({@link LibcHost}) only reads files and calls dl_iterate_phdr.
 *
 * @module
 */

/** What {@link findLibcPath} reads of the running process and system. */
export interface LibcHost {
  /** /proc/self/maps, or undefined where there is none. */
  procMaps(): string | undefined;
  /** The DT_NEEDED names of the running executable. */
  executableNeeded(): string[];
  /** File names in /usr/lib. */
  listUsrLib(): string[];
  /** Paths of the loaded objects (dl_iterate_phdr through `libcPath`), or undefined. */
  loadedObjects(libcPath: string): string[] | undefined;
}

const LINUX_LIBC = /^(libc\.so\.6|libc-[\d.]+\.so|libc\.musl-[\w]+\.so\.1|ld-musl-[\w]+\.so\.1)$/;
const OPENBSD_LIBC = /^libc\.so\.(\d+)\.(\d+)$/;

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** The libc file among mapped or loaded object paths, by OS naming rules. */
export function libcAmong(paths: readonly string[], os: string): string | undefined {
  const re = os === "openbsd" ? OPENBSD_LIBC : LINUX_LIBC;
  return paths.find((p) => p.startsWith("/") && re.test(basename(p)));
}

/** The libc path mapped into a process, from the text of its /proc/PID/maps. */
export function libcFromMaps(maps: string): string | undefined {
  const paths = maps.split("\n").map((line) => {
    // address perms offset dev inode path (the path may contain spaces)
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*)$/.exec(line.trim());
    return m ? m[1].trim() : "";
  });
  return libcAmong(paths.filter((p) => p !== ""), "linux");
}

/**
 * The library ld.so(1) loads for DT_NEEDED `needed` (e.g. "libc.so.100.3")
 * among the /usr/lib names `installed`: the same major, the highest minor.
 */
export function resolveOpenbsdNeeded(needed: string, installed: readonly string[]): string {
  const want = OPENBSD_LIBC.exec(needed);
  if (!want) throw new Error(`"${needed}" is not a libc.so.MAJOR.MINOR name`);
  let best: number | undefined;
  for (const name of installed) {
    const m = OPENBSD_LIBC.exec(name);
    if (!m || m[1] !== want[1]) continue;
    if (best === undefined || Number(m[2]) > best) best = Number(m[2]);
  }
  if (best === undefined) {
    throw new Error(
      `deno was linked against ${needed} but /usr/lib has no libc.so.${want[1]}.*: ` +
        `reinstall the lang/deno package for this release`,
    );
  }
  return `/usr/lib/libc.so.${want[1]}.${best}`;
}

/** Reads `length` bytes at `offset` of a file (short at its end). */
export type ReadAt = (offset: number, length: number) => Uint8Array;

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
/** Bounds: a hostile or truncated file cannot make the parser loop or allocate without limit. */
const MAX_PHDRS = 256;
const MAX_DYN = 4096;
const MAX_NAME = 256;

/**
 * The DT_NEEDED names of a little-endian ELF64 file: program headers ->
 * PT_DYNAMIC -> DT_NEEDED offsets into DT_STRTAB (a virtual address mapped
 * back to the file through PT_LOAD). Throws on anything malformed.
 */
export function elfNeeded(read: ReadAt): string[] {
  const fail = (why: string): never => {
    throw new Error(`Cannot read the executable's ELF dynamic section: ${why}`);
  };
  const eh = read(0, 64);
  if (eh.length < 64 || eh[0] !== 0x7f || eh[1] !== 0x45 || eh[2] !== 0x4c || eh[3] !== 0x46) {
    fail("not an ELF file");
  }
  if (eh[4] !== 2 || eh[5] !== 1) fail("not little-endian ELF64");
  const h = new DataView(eh.buffer, eh.byteOffset, 64);
  const phoff = Number(h.getBigUint64(32, true));
  const phentsize = h.getUint16(54, true);
  const phnum = h.getUint16(56, true);
  if (phentsize < 56 || phnum > MAX_PHDRS) fail("bad program header table");
  const ph = read(phoff, phentsize * phnum);
  if (ph.length < phentsize * phnum) fail("truncated program headers");
  const pv = new DataView(ph.buffer, ph.byteOffset, ph.length);
  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let dyn: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    const type = pv.getUint32(at, true);
    const offset = pv.getBigUint64(at + 8, true);
    const vaddr = pv.getBigUint64(at + 16, true);
    const filesz = pv.getBigUint64(at + 32, true);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    if (type === PT_DYNAMIC) dyn = { offset: Number(offset), size: Number(filesz) };
  }
  if (!dyn) return []; // statically linked
  const count = Math.min(Math.floor(dyn.size / 16), MAX_DYN);
  const d = read(dyn.offset, count * 16);
  const dv = new DataView(d.buffer, d.byteOffset, d.length);
  const needed: bigint[] = [];
  let strtab: bigint | undefined;
  for (let i = 0; i + 16 <= d.length; i += 16) {
    const tag = dv.getBigInt64(i, true);
    const val = dv.getBigUint64(i + 8, true);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) needed.push(val);
    if (tag === DT_STRTAB) strtab = val;
  }
  if (strtab === undefined) return needed.length === 0 ? [] : fail("no DT_STRTAB");
  const seg = loads.find((l) => strtab! >= l.vaddr && strtab! < l.vaddr + l.filesz);
  if (!seg) fail("DT_STRTAB is in no PT_LOAD segment");
  const strtabOffset = seg!.offset + (strtab - seg!.vaddr);
  return needed.map((n) => {
    const bytes = read(Number(strtabOffset + n), MAX_NAME);
    const end = bytes.indexOf(0);
    if (end < 0) fail("unterminated DT_NEEDED name");
    return new TextDecoder().decode(bytes.subarray(0, end));
  });
}

/**
 * The C library this process uses: on Linux the mapped one (else
 * "libc.so.6", which the dynamic linker resolves to the loaded glibc); on
 * OpenBSD the one deno was linked against as ld.so resolves it, replaced by
 * the loaded one if dl_iterate_phdr reports another.
 */
export function findLibcPath(os: string = Deno.build.os, host: LibcHost = realLibcHost): string {
  if (os === "linux") {
    const maps = host.procMaps();
    return (maps === undefined ? undefined : libcFromMaps(maps)) ?? "libc.so.6";
  }
  if (os === "openbsd") {
    const needed = host.executableNeeded().find((n) => OPENBSD_LIBC.test(n));
    if (!needed) {
      throw new Error("Cannot find the C library: deno's executable names no libc.so.N.M");
    }
    const candidate = resolveOpenbsdNeeded(needed, host.listUsrLib());
    const loaded = host.loadedObjects(candidate);
    return (loaded && libcAmong(loaded, "openbsd")) ?? candidate;
  }
  throw new Error(`Unsupported operating system "${os}": vmmctl runs on Linux and OpenBSD`);
}

function readFileAt(path: string): ReadAt {
  return (offset, length) => {
    const f = Deno.openSync(path, { read: true });
    try {
      f.seekSync(offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(length);
      let got = 0;
      while (got < length) {
        const n = f.readSync(buf.subarray(got));
        if (n === null || n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    } finally {
      f.close();
    }
  };
}

/**
 * Paths of the objects loaded in this process, via dl_iterate_phdr(3) of
 * `libcPath` (`struct dl_phdr_info`: dlpi_addr at 0, dlpi_name at 8 on
 * amd64 Linux and OpenBSD).
 */
export function dlIteratePhdr(libcPath: string): string[] {
  const lib = Deno.dlopen(libcPath, {
    dl_iterate_phdr: { parameters: ["function", "pointer"], result: "i32" },
  });
  const names: string[] = [];
  const cb = new Deno.UnsafeCallback(
    { parameters: ["pointer", "usize", "pointer"], result: "i32" } as const,
    (info) => {
      if (info === null) return 0;
      const name = new Deno.UnsafePointerView(info).getPointer(8);
      if (name !== null) names.push(new Deno.UnsafePointerView(name).getCString());
      return 0;
    },
  );
  try {
    lib.symbols.dl_iterate_phdr(cb.pointer, null);
  } finally {
    cb.close();
    lib.close();
  }
  return names;
}

/** The real process and file system. */
export const realLibcHost: LibcHost = {
  procMaps() {
    try {
      return Deno.readTextFileSync("/proc/self/maps");
    } catch {
      return undefined;
    }
  },
  executableNeeded: () => elfNeeded(readFileAt(Deno.execPath())),
  listUsrLib: () => Array.from(Deno.readDirSync("/usr/lib"), (e) => e.name),
  loadedObjects(libcPath) {
    try {
      return dlIteratePhdr(libcPath);
    } catch {
      return undefined;
    }
  },
};
