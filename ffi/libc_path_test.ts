import assert from "node:assert/strict";
import {
  dlIteratePhdr,
  elfNeeded,
  findLibcPath,
  libcFromMaps,
  type LibcHost,
  realLibcHost,
  resolveOpenbsdNeeded,
} from "./libc_path.ts";

const onLinux = Deno.build.os === "linux";

function host(over: Partial<LibcHost>): LibcHost {
  return {
    procMaps: () => undefined,
    executableNeeded: () => [],
    listUsrLib: () => [],
    loadedObjects: () => undefined,
    ...over,
  };
}

const MAPS = [
  "55d0c0000000-55d0c0100000 r--p 00000000 08:01 1234   /usr/local/bin/deno",
  "7f0000000000-7f0000028000 r--p 00000000 08:01 5678   /opt/glibc-2.41/lib/libc.so.6",
  "7f0000100000-7f0000101000 r--p 00000000 08:01 9999   /usr/lib/x86_64-linux-gnu/libc.so.6",
  "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]",
  "7f0000200000-7f0000201000 r--p 00000000 08:01 4321   /home/me/libc.so.6.bak",
].join("\n");

Deno.test("libc on Linux: the one mapped into the process, not a name guessed", () => {
  assert.equal(libcFromMaps(MAPS), "/opt/glibc-2.41/lib/libc.so.6");
  const musl = "7f00-7f01 r-xp 00000000 08:01 1 /lib/ld-musl-x86_64.so.1\n";
  assert.equal(libcFromMaps(musl), "/lib/ld-musl-x86_64.so.1");
  assert.equal(
    findLibcPath("linux", host({ procMaps: () => MAPS })),
    "/opt/glibc-2.41/lib/libc.so.6",
  );
  assert.equal(findLibcPath("linux", host({ procMaps: () => "" })), "libc.so.6");
  assert.equal(findLibcPath("linux", host({})), "libc.so.6");
});

Deno.test("libc on OpenBSD: deno's DT_NEEDED as ld.so resolves it, then what is loaded", () => {
  const usrLib = [
    "libc.so.99.9",
    "libc.so.100.3",
    "libc.so.100.10",
    "libc.so.101.0",
    "libm.so.10.1",
  ];
  // Same major as deno's, highest minor: not the newest libc on the disk (101).
  assert.equal(resolveOpenbsdNeeded("libc.so.100.3", usrLib), "/usr/lib/libc.so.100.10");
  assert.throws(() => resolveOpenbsdNeeded("libc.so.102.0", usrLib), /no libc\.so\.102\.\*/);
  const linked = host({
    executableNeeded: () => ["libpthread.so.28.1", "libc.so.100.3", "libc++.so.10.0"],
    listUsrLib: () => usrLib,
  });
  assert.equal(findLibcPath("openbsd", linked), "/usr/lib/libc.so.100.10");
  // dl_iterate_phdr is the last word: the object actually in the process.
  const loaded = host({
    ...linked,
    loadedObjects: (p) => {
      assert.equal(p, "/usr/lib/libc.so.100.10", "asked through the candidate");
      return ["/usr/local/bin/deno", "/usr/lib/libpthread.so.28.1", "/usr/lib/libc.so.100.3"];
    },
  });
  assert.equal(findLibcPath("openbsd", loaded), "/usr/lib/libc.so.100.3");
  assert.throws(() => findLibcPath("openbsd", host({})), /names no libc\.so\.N\.M/);
  assert.throws(() => findLibcPath("windows", host({})), /Unsupported operating system "windows"/);
});

/** A minimal ELF64 with PT_LOAD, PT_DYNAMIC and the given DT_NEEDED names. */
function elf(needed: string[]): Uint8Array {
  const strtab = new TextEncoder().encode("\0" + needed.join("\0") + "\0");
  const phoff = 64, phnum = 2, dynOff = 64 + 56 * phnum, dynCount = needed.length + 2;
  const strOff = dynOff + dynCount * 16;
  const buf = new Uint8Array(strOff + strtab.length);
  const v = new DataView(buf.buffer);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setBigUint64(32, BigInt(phoff), true);
  v.setUint16(54, 56, true);
  v.setUint16(56, phnum, true);
  const vbase = 0x400000n;
  // PT_LOAD of the whole file at vbase; PT_DYNAMIC.
  v.setUint32(64, 1, true);
  v.setBigUint64(64 + 8, 0n, true);
  v.setBigUint64(64 + 16, vbase, true);
  v.setBigUint64(64 + 32, BigInt(buf.length), true);
  v.setUint32(120, 2, true);
  v.setBigUint64(120 + 8, BigInt(dynOff), true);
  v.setBigUint64(120 + 32, BigInt(dynCount * 16), true);
  let at = dynOff, name = 1;
  for (const n of needed) {
    v.setBigInt64(at, 1n, true);
    v.setBigUint64(at + 8, BigInt(name), true);
    name += n.length + 1;
    at += 16;
  }
  v.setBigInt64(at, 5n, true);
  v.setBigUint64(at + 8, vbase + BigInt(strOff), true);
  buf.set(strtab, strOff);
  return buf;
}

const readOf = (b: Uint8Array) => (o: number, l: number) => b.subarray(o, o + l);

Deno.test("elfNeeded: DT_NEEDED names through DT_STRTAB's segment; malformed files fail", () => {
  assert.deepEqual(elfNeeded(readOf(elf(["libc.so.100.3", "libm.so.10.1"]))), [
    "libc.so.100.3",
    "libm.so.10.1",
  ]);
  assert.throws(() => elfNeeded(readOf(new Uint8Array(64))), /not an ELF file/);
  const cut = elf(["libc.so.100.3"]);
  assert.throws(() => elfNeeded(readOf(cut.subarray(0, 100))), /truncated program headers/);
  const unterminated = elf(["libc.so.100.3"]);
  unterminated[unterminated.length - 1] = 0x41;
  assert.throws(() => elfNeeded(readOf(unterminated)), /unterminated DT_NEEDED/);
});

Deno.test({
  name: "libc of this very process: /proc/self/maps, dl_iterate_phdr and deno's DT_NEEDED agree",
  ignore: !onLinux,
  fn() {
    const path = findLibcPath();
    assert.ok(path.startsWith("/") && /libc/.test(path), path);
    const real = Deno.realPathSync(path);
    const loaded = dlIteratePhdr(path).filter((p) => p.startsWith("/"));
    assert.ok(loaded.some((p) => Deno.realPathSync(p) === real), `${real} in ${loaded}`);
    assert.ok(realLibcHost.executableNeeded().includes("libc.so.6"));
  },
});
