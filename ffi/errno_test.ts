import assert from "node:assert/strict";
import {
  errnoMessage,
  errnoName,
  errnoNumber,
  hostErrnoOs,
  IoctlError,
  SyscallError,
} from "./errno.ts";
import { CC_PATH, compileAndRun, NO_CC_MESSAGE } from "../tests/cc.ts";

Deno.test("errno: names and messages shared by Linux and OpenBSD", () => {
  for (const os of ["linux", "openbsd"] as const) {
    assert.equal(errnoName(2, os), "ENOENT");
    assert.equal(errnoName(13, os), "EACCES");
    assert.equal(errnoName(25, os), "ENOTTY");
    assert.equal(errnoMessage(25, os), "Inappropriate ioctl for device");
    assert.equal(errnoNumber("EINVAL", os), 22);
    assert.equal(errnoNumber("EBUSY", os), 16);
  }
});

Deno.test("errno: numbers where Linux and OpenBSD differ", () => {
  assert.equal(errnoName(11, "linux"), "EAGAIN");
  assert.equal(errnoName(11, "openbsd"), "EDEADLK");
  assert.equal(errnoName(35, "linux"), "EDEADLK");
  assert.equal(errnoName(35, "openbsd"), "EAGAIN");
  assert.equal(errnoNumber("ENOSYS", "linux"), 38);
  assert.equal(errnoNumber("ENOSYS", "openbsd"), 78);
  assert.equal(errnoNumber("ETIMEDOUT", "linux"), 110);
  assert.equal(errnoNumber("ETIMEDOUT", "openbsd"), 60);
  assert.equal(errnoMessage(60, "openbsd"), "Operation timed out");
  assert.equal(errnoMessage(110, "linux"), "Connection timed out");
  assert.equal(errnoMessage(87, "openbsd"), "Value too large to be stored in data type");
  // A Linux-only number means nothing on OpenBSD.
  assert.equal(errnoName(110, "openbsd"), "E110");
});

Deno.test("errno: unknown numbers and names", () => {
  assert.equal(errnoName(9999, "linux"), "E9999");
  assert.equal(errnoMessage(9999, "linux"), "Unknown error 9999");
  assert.equal(errnoName(0, "openbsd"), "E0");
  assert.throws(() => errnoNumber("EFOO", "linux"), {
    message: 'Unknown errno name "EFOO" for linux',
  });
  assert.throws(() => errnoNumber("ETIME", "openbsd"), {
    message: 'Unknown errno name "ETIME" for openbsd',
  });
});

Deno.test("errno: the host table is the running system's (Linux's elsewhere)", () => {
  const expected = (Deno.build.os as string) === "openbsd" ? "openbsd" : "linux";
  assert.equal(hostErrnoOs(), expected);
  assert.equal(errnoName(35), errnoName(35, expected));
  assert.equal(new SyscallError("x", 35).code, errnoName(35, expected));
});

Deno.test("SyscallError: message names the call, errno name and text", () => {
  const e = new SyscallError("KVM_CREATE_VM", 13, "linux");
  assert.equal(e.message, "KVM_CREATE_VM failed: EACCES (Permission denied)");
  assert.equal(e.name, "SyscallError");
  assert.equal(e.call, "KVM_CREATE_VM");
  assert.equal(e.errno, 13);
  assert.equal(e.code, "EACCES");
  assert.ok(e instanceof Error);
  const d = new SyscallError('open "/dev/vmm"', 2, "openbsd", "is vmm(4) enabled?");
  assert.equal(
    d.message,
    'open "/dev/vmm" failed: ENOENT (No such file or directory): is vmm(4) enabled?',
  );
  assert.equal(
    new SyscallError("VMM_IOC_RUN", 35, "openbsd").message,
    "VMM_IOC_RUN failed: EAGAIN (Resource temporarily unavailable)",
  );
  assert.equal(
    new SyscallError("x", 4242, "linux").message,
    "x failed: E4242 (Unknown error 4242)",
  );
});

Deno.test("IoctlError: a SyscallError that also carries the request number", () => {
  const e = new IoctlError("KVM_RUN", 0xae80, 4, "linux");
  assert.equal(e.message, "KVM_RUN failed: EINTR (Interrupted system call)");
  assert.equal(e.name, "IoctlError");
  assert.equal(e.request, 0xae80);
  assert.equal(e.code, "EINTR");
  assert.equal(e.call, "KVM_RUN");
  assert.ok(e instanceof SyscallError);
  const o = new IoctlError("VMM_IOC_CREATE", 0xca605601, 12, "openbsd");
  assert.equal(o.message, "VMM_IOC_CREATE failed: ENOMEM (Cannot allocate memory)");
  assert.equal(o.request, 0xca605601);
});

Deno.test({
  name: "errno: every Linux entry matches <errno.h> and glibc's strerror (C compiler)",
  ignore: CC_PATH === undefined || Deno.build.os !== "linux",
  async fn() {
    const known: [string, number, string][] = [];
    for (let n = 1; n < 200; n++) {
      const name = errnoName(n, "linux");
      if (name !== `E${n}`) known.push([name, n, errnoMessage(n, "linux")]);
    }
    assert.ok(known.length >= 45);
    const body = known.map(([name]) =>
      `  printf("%s %d %s\\n", "${name}", ${name}, strerror(${name}));`
    );
    const source = [
      "#include <errno.h>",
      "#include <stdio.h>",
      "#include <string.h>",
      "int main(void) {",
      ...body,
      "  return 0;",
      "}",
      "",
    ].join("\n");
    const out = await compileAndRun(source);
    assert.ok(out !== undefined, NO_CC_MESSAGE);
    const fromC = out.trim().split("\n").map((line) => {
      const m = /^(\w+) (\d+) (.*)$/.exec(line)!;
      return [m[1], Number(m[2]), m[3]];
    });
    assert.deepEqual(fromC, known);
  },
});
