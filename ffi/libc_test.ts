import assert from "node:assert/strict";
import { IoctlError, SyscallError } from "./errno.ts";
import { LINUX_CONSTANTS, openLibc } from "./libc.ts";

const onLinux = Deno.build.os === "linux";

/** The error `fn` throws (fails when it returns). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail("expected an exception");
}

const real = { ignore: !onLinux } as const;

/** Whether /proc/self/maps has a mapping covering `address`. */
function mapped(address: bigint): boolean {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").some((line) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    return m !== null && BigInt(`0x${m[1]}`) <= address && address < BigInt(`0x${m[2]}`);
  });
}

Deno.test({
  name: "libc: opening a missing file throws SyscallError ENOENT naming the path",
  ...real,
  fn() {
    const libc = openLibc();
    assert.equal(libc.os, "linux");
    assert.equal(libc.consts, LINUX_CONSTANTS);
    const path = "/nonexistent/vmmctl-test-file";
    const err = thrown(() => libc.open(path, libc.consts.O_RDONLY));
    assert.ok(err instanceof SyscallError);
    assert.equal(err.code, "ENOENT");
    assert.equal(err.errno, 2);
    assert.equal(err.message, `open "${path}" failed: ENOENT (No such file or directory)`);
  },
});

Deno.test({
  name: "libc: open/write/pread/pwrite/fdatasync/close round trip on a temp file",
  ...real,
  async fn() {
    const libc = openLibc();
    const c = libc.consts;
    const dir = await Deno.makeTempDir({ prefix: "vmmctl_libc_" });
    try {
      const path = `${dir}/data.bin`;
      const fd = libc.open(path, c.O_RDWR | c.O_CREAT | c.O_EXCL | c.O_CLOEXEC, 0o600);
      try {
        assert.ok(fd >= 0);
        assert.equal(libc.write(fd, new TextEncoder().encode("hello, vmm")), 10);
        assert.equal(libc.pwrite(fd, new Uint8Array([0x56, 0x4d, 0x4d]), 7), 3);
        libc.fdatasync(fd);
        libc.fsync(fd);
        const buf = new Uint8Array(16);
        assert.equal(libc.pread(fd, buf, 0), 10);
        assert.equal(new TextDecoder().decode(buf.subarray(0, 10)), "hello, VMM");
        const tail = new Uint8Array(4);
        assert.equal(libc.pread(fd, tail, 8), 2);
        assert.deepEqual([...tail.subarray(0, 2)], [0x4d, 0x4d]);
        assert.equal(libc.pread(fd, tail, 100), 0); // past the end
      } finally {
        libc.close(fd);
      }
      // What we wrote is what the file holds.
      assert.equal(await Deno.readTextFile(path), "hello, VMM");
      // O_EXCL on an existing file: EEXIST.
      assert.throws(
        () => libc.open(path, c.O_RDWR | c.O_CREAT | c.O_EXCL),
        (e: unknown) => e instanceof SyscallError && e.code === "EEXIST",
      );
      // A bad fd is EBADF. Never close `fd` a second time to show it: in a parallel test run
      // another thread may own that number by then (Deno panicked in closedir once).
      assert.throws(
        () => libc.close(0x3fff_fff0),
        { message: "close failed: EBADF (Bad file descriptor)" },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "libc: read on an fd reads what was written",
  ...real,
  async fn() {
    const libc = openLibc();
    const dir = await Deno.makeTempDir({ prefix: "vmmctl_libc_" });
    try {
      const path = `${dir}/r.txt`;
      await Deno.writeTextFile(path, "abc");
      const fd = libc.open(path, libc.consts.O_RDONLY);
      try {
        const buf = new Uint8Array(8);
        assert.equal(libc.read(fd, buf), 3);
        assert.equal(new TextDecoder().decode(buf.subarray(0, 3)), "abc");
        assert.equal(libc.read(fd, buf), 0);
        assert.throws(
          () => libc.write(fd, buf),
          (e: unknown) => e instanceof SyscallError && e.code === "EBADF",
        );
      } finally {
        libc.close(fd);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "libc: anonymous mmap is writable through its bytes and unmaps",
  ...real,
  fn() {
    const libc = openLibc();
    const c = libc.consts;
    const m = libc.mmap(
      2 * 4096,
      c.PROT_READ | c.PROT_WRITE,
      c.MAP_PRIVATE | c.MAP_ANONYMOUS,
      -1,
      0,
    );
    assert.equal(m.bytes.length, 8192);
    assert.equal(m.address % 4096n, 0n);
    assert.ok(m.bytes.every((b) => b === 0));
    m.bytes[0] = 0xaa;
    m.bytes[8191] = 0x55;
    // A second view of the same address sees the same memory.
    const again = libc.memoryAt(m.address, 8192);
    assert.equal(again[0], 0xaa);
    assert.equal(again[8191], 0x55);
    assert.ok(mapped(m.address));
    libc.munmap(m);
    assert.ok(!mapped(m.address));
  },
});

Deno.test({
  name: "libc: a failed mmap throws naming the size",
  ...real,
  fn() {
    const libc = openLibc();
    const c = libc.consts;
    assert.throws(
      () => libc.mmap(4096, c.PROT_READ, c.MAP_SHARED, 9999, 0),
      { message: "mmap of 4096 bytes failed: EBADF (Bad file descriptor)" },
    );
  },
});

Deno.test({
  name: "libc: ioctl on a regular file fails with ENOTTY named by the request",
  ...real,
  async fn() {
    const libc = openLibc();
    const dir = await Deno.makeTempDir({ prefix: "vmmctl_libc_" });
    try {
      const path = `${dir}/plain`;
      await Deno.writeFile(path, new Uint8Array(8));
      const fd = libc.open(path, libc.consts.O_RDWR);
      try {
        const req = { name: "KVM_GET_API_VERSION", value: 0xae00 };
        const err = thrown(() => libc.ioctl(fd, req));
        assert.ok(err instanceof IoctlError);
        assert.equal(
          err.message,
          "KVM_GET_API_VERSION failed: ENOTTY (Inappropriate ioctl for device)",
        );
        assert.equal(err.request, 0xae00);
        assert.equal(err.code, "ENOTTY");
        // A pointer argument and an _IOR request with bit 31 set go through as well.
        const getRegs = { name: "KVM_GET_REGS", value: 0x8090ae81 };
        assert.throws(() => libc.ioctl(fd, getRegs, new Uint8Array(144)), {
          message: "KVM_GET_REGS failed: ENOTTY (Inappropriate ioctl for device)",
        });
        // ioctlTry returns -errno for accepted errors and throws the others.
        assert.equal(libc.ioctlTry(fd, req, null, ["ENOTTY"]), -25);
        assert.throws(() => libc.ioctlTry(fd, req, 0, ["EINTR"]), IoctlError);
      } finally {
        libc.close(fd);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "libc: getpid is Deno.pid",
  ...real,
  fn() {
    assert.equal(openLibc().getpid(), Deno.pid);
  },
});

Deno.test({
  name: "libc: addressOf and memoryAt see the same bytes",
  ...real,
  fn() {
    const libc = openLibc();
    const buf = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const addr = libc.addressOf(buf);
    assert.ok(addr > 0n);
    assert.equal(libc.addressOf(buf.subarray(3)), addr + 3n);
    const view = libc.memoryAt(addr, buf.length);
    assert.deepEqual([...view], [1, 2, 3, 4, 5, 6, 7, 8]);
    view[2] = 0x99;
    assert.equal(buf[2], 0x99);
    buf[7] = 0x42;
    assert.equal(view[7], 0x42);
  },
});

Deno.test({
  name: "libc: threadId and signalThread(0) reach this thread; a bad thread is ESRCH",
  ...real,
  fn() {
    const libc = openLibc();
    const tid = libc.threadId();
    // A kernel thread id of this process.
    assert.ok(Deno.statSync(`/proc/self/task/${tid}`).isDirectory);
    libc.signalThread(tid, 0);
    assert.throws(
      () => libc.signalThread(0x3fffffffn, 0),
      { message: "tgkill failed: ESRCH (No such process)" },
    );
  },
});
