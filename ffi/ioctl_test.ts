import assert from "node:assert/strict";
import {
  hexRequest,
  LINUX_IOC_NONE,
  LINUX_IOC_READ,
  LINUX_IOC_WRITE,
  linuxIo,
  linuxIoc,
  linuxIor,
  linuxIow,
  linuxIowr,
  OPENBSD_IOC_IN,
  OPENBSD_IOC_INOUT,
  OPENBSD_IOC_OUT,
  OPENBSD_IOC_VOID,
  openbsdIo,
  openbsdIoc,
  openbsdIor,
  openbsdIow,
  openbsdIowr,
} from "./ioctl.ts";
import {
  CC_PATH,
  compileAndRun,
  cProgram,
  NO_CC_MESSAGE,
  parseProbeOutput,
  probeValues,
} from "../tests/cc.ts";

Deno.test("linux ioctl: known KVM and TUN request numbers", () => {
  assert.equal(linuxIo(0xae, 0x00), 0xae00); // KVM_GET_API_VERSION
  assert.equal(linuxIo(0xae, 0x01), 0xae01); // KVM_CREATE_VM
  assert.equal(linuxIo(0xae, 0x80), 0xae80); // KVM_RUN
  assert.equal(linuxIow(0xae, 0x46, 32), 0x4020ae46); // KVM_SET_USER_MEMORY_REGION
  assert.equal(linuxIor(0xae, 0x81, 144), 0x8090ae81); // KVM_GET_REGS
  assert.equal(linuxIor(0xae, 0x83, 312), 0x8138ae83); // KVM_GET_SREGS
  assert.equal(linuxIowr(0xae, 0x05, 8), 0xc008ae05); // KVM_GET_SUPPORTED_CPUID
  assert.equal(linuxIow(0x54, 202, 4), 0x400454ca); // TUNSETIFF
  assert.equal(linuxIor(0x54, 210, 4), 0x800454d2); // TUNGETIFF
  assert.equal(linuxIor(0x12, 114, 8), 0x80081272); // BLKGETSIZE64
});

Deno.test("linux ioctl: direction bits and the generic encoder agree", () => {
  assert.equal([LINUX_IOC_NONE, LINUX_IOC_WRITE, LINUX_IOC_READ].join(), "0,1,2");
  assert.equal(linuxIoc(LINUX_IOC_READ | LINUX_IOC_WRITE, 0xae, 0x88, 8), linuxIowr(0xae, 0x88, 8));
  assert.equal(linuxIoc(3, 0xff, 0xff, 0x3fff), 0xffffffff);
  assert.equal(linuxIoc(0, 0, 0, 0), 0);
});

Deno.test("ioctl numbers with bit 31 set stay positive (unsigned)", () => {
  const values = [
    linuxIor(0xae, 0x81, 144),
    linuxIowr(0xae, 0x05, 8),
    linuxIoc(3, 0xff, 0xff, 0x3fff),
    openbsdIowr(0x56, 2, 40),
    openbsdIow(0x56, 4, 4),
  ];
  for (const v of values) {
    assert.ok(v > 0x7fffffff && v <= 0xffffffff, hexRequest(v));
    assert.equal(v, v >>> 0);
  }
});

Deno.test("linux ioctl: fields out of range are refused", () => {
  assert.throws(() => linuxIoc(4, 0xae, 0, 0), {
    name: "RangeError",
    message: "ioctl direction 4 does not fit in 2 bits",
  });
  assert.throws(() => linuxIor(0xae, 0x81, 0x4000), {
    message: "ioctl size 16384 does not fit in 14 bits",
  });
  assert.throws(() => linuxIo(0x100, 0), { message: "ioctl type 256 does not fit in 8 bits" });
  assert.throws(() => linuxIo(0xae, 256), { message: "ioctl number 256 does not fit in 8 bits" });
  assert.throws(() => linuxIo(0xae, -1), RangeError);
  assert.throws(() => linuxIow(0xae, 1, 1.5), RangeError);
});

Deno.test("openbsd ioctl: the vmm(4) table of the reference document", () => {
  // name, _IOW/_IOWR, number, sizeof, request (docs/openbsd-vmm-abi.md section 1)
  const table: [string, "w" | "wr", number, number, number][] = [
    ["VMM_IOC_CREATE", "wr", 1, 2656, 0xca605601],
    ["VMM_IOC_RUN", "wr", 2, 40, 0xc0285602],
    ["VMM_IOC_INFO", "wr", 3, 24, 0xc0185603],
    ["VMM_IOC_TERM", "w", 4, 4, 0x80045604],
    ["VMM_IOC_RESETCPU", "w", 5, 576, 0x82405605],
    ["VMM_IOC_INTR", "w", 6, 12, 0x800c5606],
    ["VMM_IOC_READREGS", "wr", 7, 584, 0xc2485607],
    ["VMM_IOC_WRITEREGS", "w", 8, 584, 0x82485608],
    ["VMM_IOC_READVMPARAMS", "wr", 9, 32, 0xc0205609],
    ["VMM_IOC_WRITEVMPARAMS", "w", 10, 32, 0x8020560a],
    ["VMM_IOC_SHAREMEM", "wr", 11, 656, 0xc290560b],
    ["VMM_IOC_SHAREMEM (2023)", "w", 11, 656, 0x8290560b],
  ];
  for (const [name, dir, nr, size, value] of table) {
    const got = dir === "w" ? openbsdIow(0x56, nr, size) : openbsdIowr(0x56, nr, size);
    assert.equal(hexRequest(got), hexRequest(value), name);
  }
});

Deno.test("openbsd ioctl: known terminal and file requests", () => {
  assert.equal(openbsdIor(0x74, 19, 44), 0x402c7413); // TIOCGETA, struct termios = 44 bytes
  assert.equal(openbsdIow(0x74, 20, 44), 0x802c7414); // TIOCSETA
  assert.equal(openbsdIor(0x66, 127, 4), 0x4004667f); // FIONREAD
  assert.equal(openbsdIow(0x66, 126, 4), 0x8004667e); // FIONBIO
  assert.equal(openbsdIo(0x66, 1), 0x20006601); // FIOCLEX
  assert.equal(openbsdIo(0x74, 13), 0x2000740d); // TIOCEXCL
});

Deno.test("openbsd ioctl: direction bits and the generic encoder agree", () => {
  assert.equal(OPENBSD_IOC_VOID, 0x20000000);
  assert.equal(OPENBSD_IOC_OUT, 0x40000000);
  assert.equal(OPENBSD_IOC_IN, 0x80000000);
  assert.equal(OPENBSD_IOC_INOUT, 0xc0000000);
  assert.equal(openbsdIoc(OPENBSD_IOC_INOUT, 0x56, 2, 40), openbsdIowr(0x56, 2, 40));
  assert.equal(openbsdIoc(OPENBSD_IOC_INOUT, 0xff, 0xff, 0x1fff), 0xdfffffff);
});

Deno.test("openbsd ioctl: fields out of range are refused", () => {
  assert.throws(() => openbsdIow(0x56, 1, 0x2000), {
    name: "RangeError",
    message: "ioctl length 8192 does not fit in 13 bits",
  });
  assert.throws(() => openbsdIo(0x100, 1), { message: "ioctl group 256 does not fit in 8 bits" });
  assert.throws(() => openbsdIo(0x56, 300), { message: "ioctl number 300 does not fit in 8 bits" });
  assert.throws(() => openbsdIor(0x56, 1, -4), RangeError);
});

Deno.test("hexRequest: 0x and eight lowercase hex digits", () => {
  assert.equal(hexRequest(0xae01), "0x0000ae01");
  assert.equal(hexRequest(0x8090ae81), "0x8090ae81");
  assert.equal(hexRequest(0), "0x00000000");
});

Deno.test({
  name: "linux ioctl: the encoders agree with <sys/ioctl.h> macros (C compiler)",
  ignore: CC_PATH === undefined,
  async fn() {
    const probe = probeValues({
      "_IO(0xae, 0x01)": linuxIo(0xae, 0x01),
      "_IOW(0xae, 0x46, char[32])": linuxIow(0xae, 0x46, 32),
      "_IOR(0xae, 0x81, char[144])": linuxIor(0xae, 0x81, 144),
      "_IOWR(0xae, 0x05, char[8])": linuxIowr(0xae, 0x05, 8),
      "_IOR('T', 210, unsigned int)": linuxIor(0x54, 210, 4),
      "_IOR(0xff, 0xff, char[0x3fff])": linuxIor(0xff, 0xff, 0x3fff),
      TUNSETIFF: linuxIow(0x54, 202, 4),
      BLKGETSIZE64: linuxIor(0x12, 114, 8),
    });
    const source = cProgram(
      ["#include <sys/ioctl.h>", "#include <linux/if_tun.h>", "#include <linux/fs.h>"],
      probe.lines,
    );
    const out = await compileAndRun(source);
    assert.ok(out !== undefined, NO_CC_MESSAGE);
    assert.deepEqual(parseProbeOutput(out), probe.expected);
  },
});
