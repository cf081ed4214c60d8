/**
 * The C library as the back-ends see it: an interface with one real
 * implementation over `Deno.dlopen` (glibc on Linux, versioned libc.so.N.M on
 * OpenBSD) and test fakes that replay recorded traffic (see `fake_libc.ts`).
 *
 * Every call that fails throws a {@link SyscallError} naming the call (for an
 * ioctl, the request by name) and errno by name and message.
 *
 * @example
 * ```ts
 * import { openLibc } from "./libc.ts";
 * const libc = openLibc();
 * const fd = libc.open("/dev/kvm", libc.consts.O_RDWR | libc.consts.O_CLOEXEC);
 * ```
 * @module
 */

import { errnoName, type ErrnoOs, IoctlError, SyscallError } from "./errno.ts";
import { findLibcPath } from "./libc_path.ts";

/** A named ioctl request: the name is what error messages show. */
export interface IoctlRequest {
  readonly name: string;
  readonly value: number;
}

/** Flags that differ between systems. */
export interface LibcConstants {
  readonly O_RDONLY: number;
  readonly O_WRONLY: number;
  readonly O_RDWR: number;
  readonly O_CREAT: number;
  readonly O_EXCL: number;
  readonly O_TRUNC: number;
  readonly O_NONBLOCK: number;
  readonly O_CLOEXEC: number;
  readonly O_NOCTTY: number;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly MAP_SHARED: number;
  readonly MAP_PRIVATE: number;
  readonly MAP_ANONYMOUS: number;
  readonly MAP_NORESERVE: number;
  readonly SIGUSR2: number;
}

/** Linux x86-64 values. */
export const LINUX_CONSTANTS: LibcConstants = {
  O_RDONLY: 0,
  O_WRONLY: 1,
  O_RDWR: 2,
  O_CREAT: 0o100,
  O_EXCL: 0o200,
  O_NOCTTY: 0o400,
  O_TRUNC: 0o1000,
  O_NONBLOCK: 0o4000,
  O_CLOEXEC: 0o2000000,
  PROT_READ: 1,
  PROT_WRITE: 2,
  MAP_SHARED: 1,
  MAP_PRIVATE: 2,
  MAP_ANONYMOUS: 0x20,
  MAP_NORESERVE: 0x4000,
  SIGUSR2: 12,
};

/** OpenBSD amd64 values (sys/fcntl.h, sys/mman.h, sys/signal.h). */
export const OPENBSD_CONSTANTS: LibcConstants = {
  O_RDONLY: 0,
  O_WRONLY: 1,
  O_RDWR: 2,
  O_NONBLOCK: 0x4,
  O_CREAT: 0x200,
  O_TRUNC: 0x400,
  O_EXCL: 0x800,
  O_NOCTTY: 0x8000,
  O_CLOEXEC: 0x10000,
  PROT_READ: 1,
  PROT_WRITE: 2,
  MAP_SHARED: 1,
  MAP_PRIVATE: 2,
  MAP_ANONYMOUS: 0x1000,
  MAP_NORESERVE: 0,
  SIGUSR2: 31,
};

/** A mapping made by mmap (or handed to us by a kernel, as vmm(4) does). */
export interface Mapping {
  /** Host virtual address. */
  readonly address: bigint;
  /** The mapped bytes. */
  readonly bytes: Uint8Array;
}

/** The ioctl argument: a buffer passed by pointer, an integer, or nothing. */
export type IoctlArg = Uint8Array | number | bigint | null;

/** What vmmctl needs of the C library. */
export interface Libc {
  /** Whose errno numbers and flag values apply. */
  readonly os: ErrnoOs;
  readonly consts: LibcConstants;
  open(path: string, flags: number, mode?: number): number;
  close(fd: number): void;
  /** ioctl(2); returns the call's non-negative result. */
  ioctl(fd: number, request: IoctlRequest, arg?: IoctlArg): number;
  /** Like {@link ioctl} but returns `-errno` instead of throwing for the errnos listed. */
  ioctlTry(fd: number, request: IoctlRequest, arg: IoctlArg, accept: readonly string[]): number;
  mmap(length: number, prot: number, flags: number, fd: number, offset: number): Mapping;
  munmap(mapping: Mapping): void;
  /** A view of `length` bytes at host address `address` (memory the kernel mapped for us). */
  memoryAt(address: bigint, length: number): Uint8Array;
  /** The host address of a buffer we own (for structs that carry pointers). */
  addressOf(buffer: Uint8Array): bigint;
  read(fd: number, buffer: Uint8Array): number;
  write(fd: number, buffer: Uint8Array): number;
  pread(fd: number, buffer: Uint8Array, offset: number): number;
  pwrite(fd: number, buffer: Uint8Array, offset: number): number;
  fsync(fd: number): void;
  fdatasync(fd: number): void;
  getpid(): number;
  /** The calling thread's kernel id (what {@link signalThread} takes). */
  threadId(): bigint;
  /** Sends `signal` to one thread of this process (kicks it out of a blocking ioctl). */
  signalThread(threadId: bigint, signal: number): void;
}

const LINUX_SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  fsync: { parameters: ["i32"], result: "i32" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  getpid: { parameters: [], result: "i32" },
} as const;

const ERRNO_LINUX = { __errno_location: { parameters: [], result: "pointer" } } as const;
const ERRNO_OPENBSD = { __errno: { parameters: [], result: "pointer" } } as const;
const THREADS_LINUX = {
  gettid: { parameters: [], result: "i32" },
  tgkill: { parameters: ["i32", "i32", "i32"], result: "i32" },
} as const;
const THREADS_OPENBSD = {
  pthread_self: { parameters: [], result: "pointer" },
  pthread_kill: { parameters: ["pointer", "i32"], result: "i32" },
} as const;
/** Re-exported: the one place that says which libc this process uses. */
export { findLibcPath };

let cached: Libc | undefined;

/** The real C library of this process (opened once). */
export function openLibc(): Libc {
  cached ??= new RealLibc();
  return cached;
}

function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

class RealLibc implements Libc {
  readonly os: ErrnoOs;
  readonly consts: LibcConstants;
  readonly #lib;
  readonly #errnoPtr: () => Deno.PointerValue;
  readonly #threadId: () => bigint;
  readonly #signal: (tid: bigint, sig: number) => number;

  constructor() {
    const openbsd = (Deno.build.os as string) === "openbsd";
    this.os = openbsd ? "openbsd" : "linux";
    this.consts = openbsd ? OPENBSD_CONSTANTS : LINUX_CONSTANTS;
    const path = findLibcPath();
    this.#lib = Deno.dlopen(path, LINUX_SYMBOLS);
    if (openbsd) {
      const e = Deno.dlopen(path, ERRNO_OPENBSD);
      this.#errnoPtr = () => e.symbols.__errno();
      const t = Deno.dlopen(path, THREADS_OPENBSD);
      this.#threadId = () => Deno.UnsafePointer.value(t.symbols.pthread_self()) as bigint;
      this.#signal = (tid, sig) => {
        const r = t.symbols.pthread_kill(Deno.UnsafePointer.create(tid), sig);
        return r === 0 ? 0 : -r; // pthread_kill returns the error number
      };
    } else {
      const e = Deno.dlopen(path, ERRNO_LINUX);
      this.#errnoPtr = () => e.symbols.__errno_location();
      const t = Deno.dlopen(path, THREADS_LINUX);
      this.#threadId = () => BigInt(t.symbols.gettid());
      const pid = this.#lib.symbols.getpid();
      this.#signal = (tid, sig) => t.symbols.tgkill(pid, Number(tid), sig);
    }
  }

  #errno(): number {
    const p = this.#errnoPtr();
    return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
  }

  #check(call: string, r: number | bigint): number {
    const n = Number(r);
    if (n < 0) throw new SyscallError(call, this.#errno(), this.os);
    return n;
  }

  open(path: string, flags: number, mode = 0): number {
    const r = this.#lib.symbols.open(cString(path), flags, mode);
    if (r < 0) throw new SyscallError(`open "${path}"`, this.#errno(), this.os);
    return r;
  }

  close(fd: number): void {
    this.#check("close", this.#lib.symbols.close(fd));
  }

  // Request numbers as the bigint FFI wants, made once per request (KVM_RUN is on the hot path).
  readonly #requests = new Map<number, bigint>();

  #ioctl(fd: number, request: IoctlRequest, arg: IoctlArg | undefined): number {
    const s = this.#lib.symbols;
    let req = this.#requests.get(request.value);
    if (req === undefined) {
      req = BigInt(request.value >>> 0);
      this.#requests.set(request.value, req);
    }
    if (arg instanceof Uint8Array) return s.ioctl_ptr(fd, req, arg);
    return s.ioctl_int(fd, req, arg === 0 || arg == null ? 0n : BigInt(arg));
  }

  ioctl(fd: number, request: IoctlRequest, arg?: IoctlArg): number {
    const r = this.#ioctl(fd, request, arg);
    if (r < 0) throw new IoctlError(request.name, request.value, this.#errno(), this.os);
    return r;
  }

  ioctlTry(fd: number, request: IoctlRequest, arg: IoctlArg, accept: readonly string[]): number {
    const r = this.#ioctl(fd, request, arg);
    if (r >= 0) return r;
    const err = new IoctlError(request.name, request.value, this.#errno(), this.os);
    if (accept.includes(err.code)) return -err.errno;
    throw err;
  }

  mmap(length: number, prot: number, flags: number, fd: number, offset: number): Mapping {
    const p = this.#lib.symbols.mmap(null, BigInt(length), prot, flags, fd, BigInt(offset));
    const address = Deno.UnsafePointer.value(p) as bigint;
    if (p === null || address === 0xffffffffffffffffn) {
      throw new SyscallError(`mmap of ${length} bytes`, this.#errno(), this.os);
    }
    return { address, bytes: this.memoryAt(address, length) };
  }

  munmap(mapping: Mapping): void {
    const p = Deno.UnsafePointer.create(mapping.address);
    this.#check("munmap", this.#lib.symbols.munmap(p, BigInt(mapping.bytes.length)));
  }

  memoryAt(address: bigint, length: number): Uint8Array {
    const p = Deno.UnsafePointer.create(address);
    if (p === null) throw new Error("memoryAt: null address");
    return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, length));
  }

  addressOf(buffer: Uint8Array): bigint {
    return Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)) as bigint;
  }

  read(fd: number, buffer: Uint8Array): number {
    return this.#check("read", this.#lib.symbols.read(fd, buffer, BigInt(buffer.length)));
  }

  write(fd: number, buffer: Uint8Array): number {
    return this.#check("write", this.#lib.symbols.write(fd, buffer, BigInt(buffer.length)));
  }

  pread(fd: number, buffer: Uint8Array, offset: number): number {
    const s = this.#lib.symbols;
    return this.#check("pread", s.pread(fd, buffer, BigInt(buffer.length), BigInt(offset)));
  }

  pwrite(fd: number, buffer: Uint8Array, offset: number): number {
    const s = this.#lib.symbols;
    return this.#check("pwrite", s.pwrite(fd, buffer, BigInt(buffer.length), BigInt(offset)));
  }

  fsync(fd: number): void {
    this.#check("fsync", this.#lib.symbols.fsync(fd));
  }

  fdatasync(fd: number): void {
    this.#check("fdatasync", this.#lib.symbols.fdatasync(fd));
  }

  getpid(): number {
    return this.#lib.symbols.getpid();
  }

  threadId(): bigint {
    return this.#threadId();
  }

  signalThread(threadId: bigint, signal: number): void {
    const r = this.#signal(threadId, signal);
    if (r === -1) throw new SyscallError("tgkill", this.#errno(), this.os);
    if (r < 0) throw new SyscallError("pthread_kill", -r, this.os);
  }
}

/**
 * Process and terminal calls the managed-VM process needs (a separate, small
 * interface so the back-ends' {@link Libc} and its fakes stay as they are).
 */
export interface ProcessLibc {
  /** setsid(2): a new session without a controlling terminal; returns the session id. */
  setsid(): number;
  /** Whether process `pid` exists (kill(pid, 0): EPERM still means it exists). */
  processExists(pid: number): boolean;
  /** A new pseudo-terminal: the master fd (non-blocking) and the slave's path. */
  openPty(): { masterFd: number; slavePath: string };
  /** Opens `path` read-write without making it the controlling terminal. */
  openTerminal(path: string): number;
  /** Puts terminal `fd` in raw mode (cfmakeraw: no echo, no line editing, no CR/LF mapping). */
  makeRaw(fd: number): void;
  /** read(2) on a non-blocking fd: bytes read, 0 at end of file, -1 when nothing is waiting. */
  readNonblocking(fd: number, buffer: Uint8Array): number;
  /** write(2) on a non-blocking fd: bytes written, -1 when it would block. */
  writeNonblocking(fd: number, buffer: Uint8Array): number;
  /** Points this process's stdout and stderr at `path` (opened to append, created 0644). */
  redirectOutput(path: string): void;
  close(fd: number): void;
}

const PROCESS_SYMBOLS = {
  setsid: { parameters: [], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  posix_openpt: { parameters: ["i32"], result: "i32" },
  grantpt: { parameters: ["i32"], result: "i32" },
  unlockpt: { parameters: ["i32"], result: "i32" },
  ptsname: { parameters: ["i32"], result: "pointer" },
  tcgetattr: { parameters: ["i32", "buffer"], result: "i32" },
  tcsetattr: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  cfmakeraw: { parameters: ["buffer"], result: "void" },
  dup2: { parameters: ["i32", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
} as const;

/** FIONBIO (set/clear non-blocking I/O): Linux asm-generic 0x5421; OpenBSD _IOW('f', 126, int). */
const FIONBIO = { linux: 0x5421, openbsd: 0x8004667e } as const;
/** O_APPEND (not in {@link LibcConstants}: only the log redirection needs it). */
const O_APPEND = { linux: 0o2000, openbsd: 0x8 } as const;
/** tcsetattr's "now" action (same value on both systems). */
const TCSANOW = 0;
/** Larger than struct termios on both systems (Linux glibc 60 bytes, OpenBSD 44). */
const TERMIOS_BUFFER_BYTES = 256;

let cachedProcess: ProcessLibc | undefined;

/** The process/terminal calls of the real C library (opened once). */
export function openProcessLibc(): ProcessLibc {
  cachedProcess ??= new RealProcessLibc();
  return cachedProcess;
}

class RealProcessLibc implements ProcessLibc {
  readonly #os: ErrnoOs;
  readonly #consts: LibcConstants;
  readonly #lib;
  readonly #errnoPtr: () => Deno.PointerValue;

  constructor() {
    const openbsd = (Deno.build.os as string) === "openbsd";
    this.#os = openbsd ? "openbsd" : "linux";
    this.#consts = openbsd ? OPENBSD_CONSTANTS : LINUX_CONSTANTS;
    const path = findLibcPath();
    this.#lib = Deno.dlopen(path, PROCESS_SYMBOLS);
    if (openbsd) {
      const e = Deno.dlopen(path, ERRNO_OPENBSD);
      this.#errnoPtr = () => e.symbols.__errno();
    } else {
      const e = Deno.dlopen(path, ERRNO_LINUX);
      this.#errnoPtr = () => e.symbols.__errno_location();
    }
  }

  #errno(): number {
    const p = this.#errnoPtr();
    return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
  }

  #fail(call: string): never {
    throw new SyscallError(call, this.#errno(), this.#os);
  }

  #wouldBlock(): boolean {
    const code = errnoName(this.#errno(), this.#os);
    return code === "EAGAIN" || code === "EWOULDBLOCK" || code === "EINTR";
  }

  setsid(): number {
    const r = this.#lib.symbols.setsid();
    if (r < 0) this.#fail("setsid");
    return r;
  }

  processExists(pid: number): boolean {
    if (this.#lib.symbols.kill(pid, 0) === 0) return true;
    return errnoName(this.#errno(), this.#os) === "EPERM";
  }

  openPty(): { masterFd: number; slavePath: string } {
    const s = this.#lib.symbols;
    const fd = s.posix_openpt(this.#consts.O_RDWR | this.#consts.O_NOCTTY);
    if (fd < 0) this.#fail("posix_openpt");
    try {
      if (s.grantpt(fd) < 0) this.#fail("grantpt");
      if (s.unlockpt(fd) < 0) this.#fail("unlockpt");
      const name = s.ptsname(fd);
      if (name === null) this.#fail("ptsname");
      const slavePath = new Deno.UnsafePointerView(name).getCString();
      const on = new Uint8Array(4);
      new DataView(on.buffer).setInt32(0, 1, true);
      if (s.ioctl_ptr(fd, BigInt(FIONBIO[this.#os]), on) < 0) this.#fail("ioctl FIONBIO");
      return { masterFd: fd, slavePath };
    } catch (e) {
      s.close(fd);
      throw e;
    }
  }

  openTerminal(path: string): number {
    const flags = this.#consts.O_RDWR | this.#consts.O_NOCTTY | this.#consts.O_CLOEXEC;
    const fd = this.#lib.symbols.open(cString(path), flags, 0);
    if (fd < 0) this.#fail(`open "${path}"`);
    return fd;
  }

  makeRaw(fd: number): void {
    const t = new Uint8Array(TERMIOS_BUFFER_BYTES);
    if (this.#lib.symbols.tcgetattr(fd, t) < 0) this.#fail("tcgetattr");
    this.#lib.symbols.cfmakeraw(t);
    if (this.#lib.symbols.tcsetattr(fd, TCSANOW, t) < 0) this.#fail("tcsetattr");
  }

  readNonblocking(fd: number, buffer: Uint8Array): number {
    const r = Number(this.#lib.symbols.read(fd, buffer, BigInt(buffer.length)));
    if (r >= 0) return r;
    if (this.#wouldBlock()) return -1;
    this.#fail("read");
  }

  writeNonblocking(fd: number, buffer: Uint8Array): number {
    const r = Number(this.#lib.symbols.write(fd, buffer, BigInt(buffer.length)));
    if (r >= 0) return r;
    if (this.#wouldBlock()) return -1;
    this.#fail("write");
  }

  redirectOutput(path: string): void {
    const c = this.#consts;
    const flags = c.O_WRONLY | c.O_CREAT | O_APPEND[this.#os] | c.O_CLOEXEC;
    const fd = this.#lib.symbols.open(cString(path), flags, 0o644);
    if (fd < 0) this.#fail(`open "${path}"`);
    try {
      // dup2 clears close-on-exec on the copies, as stdout and stderr should be.
      if (this.#lib.symbols.dup2(fd, 1) < 0) this.#fail("dup2");
      if (this.#lib.symbols.dup2(fd, 2) < 0) this.#fail("dup2");
    } finally {
      this.#lib.symbols.close(fd);
    }
  }

  close(fd: number): void {
    if (this.#lib.symbols.close(fd) < 0) this.#fail("close");
  }
}
