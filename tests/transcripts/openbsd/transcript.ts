/**
 * ioctl transcripts of the OpenBSD back-end: a recording {@link Libc}
 * wrapper and a replaying fake, so the back-end's struct encoding and
 * duties (RIP advance, IN width, injection) are checked byte for byte with
 * no hypervisor.
 *
 * A transcript is JSON: the device `open` (its fd or errno) and then every
 * `ioctl` and `close` on the device's fds, in order:
 *
 * ```json
 * { "request": "VMM_IOC_RUN", "value": "0xc0285602", "fd": 7,
 *   "in": { "n": 40, "d": [[0, "0100000000000000"], [24, "0000000000577e"]] },
 *   "out": { "n": 40, "d": [[32, "1e00"]] }, "ret": 0,
 *   "exitIn": {...}, "exitOut": {...} }
 * ```
 *
 * `in`/`out` are the argument bytes before and after the call ("hex" in
 * patch form: `n` bytes, `d` the runs that differ from a base: zeros for
 * `in`, the `in` bytes for `out`), `ret` the result, `errno` its name when
 * the call failed. VMM_IOC_RUN also carries the caller's `vm_exit` before
 * (`exitIn`, patched over the previous `exitOut`) and after (`exitOut`,
 * patched over `exitIn`), and its `vrp_exit` pointer is recorded as
 * {@link TRANSCRIPT_EXIT_ADDRESS} (the replayer hands out that address), so
 * a transcript does not depend on where a run's buffers happened to live.
 *
 * @module
 */

import { errnoName, errnoNumber, IoctlError, SyscallError } from "../../../ffi/errno.ts";
import type { ErrnoOs } from "../../../ffi/errno.ts";
import {
  type IoctlArg,
  type IoctlRequest,
  type Libc,
  type LibcConstants,
  LINUX_CONSTANTS,
  type Mapping,
  OPENBSD_CONSTANTS,
} from "../../../ffi/libc.ts";
import * as abi from "../../../accel/openbsd/abi.ts";
import { vm_create_params_era_b, VMM_IOC_CREATE_ERA_B } from "../../../accel/openbsd/create.ts";

/** Where a transcript says the back-end's `vm_exit` buffer lives. */
export const TRANSCRIPT_EXIT_ADDRESS = 0x7e5700000000n;

const RUN_EXIT_PTR = abi.vm_run_params.offsetOf("vrp_exit");

/** Bytes as patches over a base (see the module doc). */
export interface PatchedBytes {
  /** Length. */
  n: number;
  /** [offset, hex] runs that differ from the base. */
  d: [number, string][];
}

/** One recorded call. */
export interface TranscriptEvent {
  /** "open", "ioctl" or "close". */
  op: "open" | "ioctl" | "close";
  path?: string;
  fd?: number;
  request?: string;
  /** The request number as hex, e.g. "0xc0285602". */
  value?: string;
  in?: PatchedBytes | null;
  out?: PatchedBytes | null;
  /** The result (for a failed call -1). */
  ret?: number;
  errno?: string;
  exitIn?: PatchedBytes;
  exitOut?: PatchedBytes;
}

/** A whole transcript file. */
export interface Transcript {
  description: string;
  /** Whose errno numbers the calls were made with ("openbsd" for hand-written ones). */
  os: ErrnoOs;
  events: TranscriptEvent[];
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text: string): Uint8Array {
  if (text.length % 2 !== 0 || /[^0-9a-f]/i.test(text)) {
    throw new Error(`Transcript hex "${text.slice(0, 20)}..." is malformed`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Encodes `bytes` as the runs that differ from `base` (zeros when absent). */
export function patch(bytes: Uint8Array, base?: Uint8Array): PatchedBytes {
  const d: [number, string][] = [];
  const differs = (i: number) => bytes[i] !== (base && i < base.length ? base[i] : 0);
  let i = 0;
  while (i < bytes.length) {
    if (!differs(i)) {
      i++;
      continue;
    }
    let end = i + 1;
    // Extend the run over short equal gaps, so runs stay few.
    for (let j = end; j < bytes.length && j < end + 4; j++) if (differs(j)) end = j + 1;
    while (end < bytes.length && differs(end)) end++;
    d.push([i, hex(bytes.subarray(i, end))]);
    i = end;
  }
  return { n: bytes.length, d };
}

/** The bytes a {@link PatchedBytes} describes over `base`. */
export function unpatch(p: PatchedBytes, base?: Uint8Array): Uint8Array {
  const out = new Uint8Array(p.n);
  if (base) out.set(base.subarray(0, p.n));
  for (const [offset, h] of p.d) {
    const b = unhex(h);
    if (offset + b.length > p.n) {
      throw new Error(`Transcript patch at ${offset} runs past ${p.n} bytes`);
    }
    out.set(b, offset);
  }
  return out;
}

/** Records every ioctl/close on the fds opened at `devicePath` (wrap the Libc the back-end gets). */
export class RecordingLibc implements Libc {
  readonly inner: Libc;
  readonly os: ErrnoOs;
  readonly consts: LibcConstants;
  readonly devicePath: string;
  readonly events: TranscriptEvent[] = [];
  readonly #fds = new Set<number>();
  /** Real address of each buffer the back-end took the address of -> the address recorded. */
  readonly #addresses = new Map<bigint, bigint>();
  #lastExitOut?: Uint8Array;

  constructor(inner: Libc, devicePath = "/dev/vmm") {
    this.inner = inner;
    this.os = inner.os;
    this.consts = inner.consts;
    this.devicePath = devicePath;
  }

  /** The transcript so far. */
  transcript(description: string): Transcript {
    return { description, os: this.os, events: this.events };
  }

  open(path: string, flags: number, mode?: number): number {
    if (path !== this.devicePath) return this.inner.open(path, flags, mode);
    try {
      const fd = this.inner.open(path, flags, mode);
      this.#fds.add(fd);
      this.events.push({ op: "open", path, fd });
      return fd;
    } catch (e) {
      if (e instanceof SyscallError) this.events.push({ op: "open", path, ret: -1, errno: e.code });
      throw e;
    }
  }

  close(fd: number): void {
    if (this.#fds.has(fd)) this.events.push({ op: "close", fd });
    this.inner.close(fd);
  }

  addressOf(buffer: Uint8Array): bigint {
    const real = this.inner.addressOf(buffer);
    if (!this.#addresses.has(real)) {
      this.#addresses.set(real, TRANSCRIPT_EXIT_ADDRESS + BigInt(this.#addresses.size) * 0x1000n);
    }
    return real;
  }

  #record(
    fd: number,
    request: IoctlRequest,
    arg: IoctlArg,
    call: () => number,
  ): number {
    const recorded = this.#fds.has(fd) && arg instanceof Uint8Array;
    if (!recorded) return call();
    const event: TranscriptEvent = {
      op: "ioctl",
      fd,
      request: request.name,
      value: `0x${(request.value >>> 0).toString(16)}`,
    };
    const isRun = request.value === abi.VMM_IOC_RUN.value;
    let exit: Uint8Array | undefined;
    let realPtr = 0n;
    if (isRun) {
      const v = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
      realPtr = v.getBigUint64(RUN_EXIT_PTR, true);
      exit = this.inner.memoryAt(realPtr, abi.vm_exit.size);
      event.exitIn = patch(exit, this.#lastExitOut);
    }
    const canonical = (bytes: Uint8Array): Uint8Array => {
      const c = bytes.slice();
      if (isRun) {
        const mapped = this.#addresses.get(realPtr) ?? realPtr;
        new DataView(c.buffer).setBigUint64(RUN_EXIT_PTR, mapped, true);
      }
      return c;
    };
    const before = canonical(arg);
    event.in = patch(before);
    this.events.push(event);
    const exitBefore = exit?.slice();
    try {
      const r = call();
      event.ret = r;
      if (r < 0) event.errno = errnoName(-r, this.os);
      return r;
    } catch (e) {
      if (e instanceof SyscallError) {
        event.ret = -1;
        event.errno = e.code;
      }
      throw e;
    } finally {
      event.out = patch(canonical(arg), before);
      if (request.value === VMM_IOC_CREATE_ERA_B.value && event.ret === 0) {
        // Era B: the VM's own fd carries the rest of the transcript.
        const v = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
        this.#fds.add(v.getInt32(vm_create_params_era_b.offsetOf("vcp_fd"), true));
      }
      if (exit && exitBefore) {
        const after = exit.slice();
        event.exitOut = patch(after, exitBefore);
        this.#lastExitOut = after;
      }
    }
  }

  ioctl(fd: number, request: IoctlRequest, arg?: IoctlArg): number {
    return this.#record(fd, request, arg ?? null, () => this.inner.ioctl(fd, request, arg));
  }

  ioctlTry(fd: number, request: IoctlRequest, arg: IoctlArg, accept: readonly string[]): number {
    return this.#record(fd, request, arg, () => this.inner.ioctlTry(fd, request, arg, accept));
  }

  mmap(length: number, prot: number, flags: number, fd: number, offset: number): Mapping {
    return this.inner.mmap(length, prot, flags, fd, offset);
  }
  munmap(mapping: Mapping): void {
    this.inner.munmap(mapping);
  }
  memoryAt(address: bigint, length: number): Uint8Array {
    return this.inner.memoryAt(address, length);
  }
  read(fd: number, buffer: Uint8Array): number {
    return this.inner.read(fd, buffer);
  }
  write(fd: number, buffer: Uint8Array): number {
    return this.inner.write(fd, buffer);
  }
  pread(fd: number, buffer: Uint8Array, offset: number): number {
    return this.inner.pread(fd, buffer, offset);
  }
  pwrite(fd: number, buffer: Uint8Array, offset: number): number {
    return this.inner.pwrite(fd, buffer, offset);
  }
  fsync(fd: number): void {
    this.inner.fsync(fd);
  }
  fdatasync(fd: number): void {
    this.inner.fdatasync(fd);
  }
  getpid(): number {
    return this.inner.getpid();
  }
  threadId(): bigint {
    return this.inner.threadId();
  }
  signalThread(threadId: bigint, signal: number): void {
    this.inner.signalThread(threadId, signal);
  }
}

/** A difference between what the back-end did and what the transcript says. */
export class TranscriptMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TranscriptMismatch";
  }
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * A fake C library that answers /dev/vmm from a transcript and fails on the
 * first difference in request, fd or input bytes (the mismatch is also kept
 * in {@link mismatch}, since a run loop turns exceptions into outcomes).
 * Memory the "kernel" mapped (`memoryAt` on addresses from CREATE) is fresh
 * zeroed buffers; the back-end's `vm_exit` lives at
 * {@link TRANSCRIPT_EXIT_ADDRESS}.
 */
export class ReplayLibc implements Libc {
  readonly os: ErrnoOs;
  readonly consts: LibcConstants;
  readonly transcript: Transcript;
  /** Index of the next event. */
  position = 0;
  /** The first mismatch, if any. */
  mismatch?: TranscriptMismatch;
  readonly #memory = new Map<bigint, Uint8Array>();
  readonly #buffers = new Map<bigint, Uint8Array>();
  #lastExitOut?: Uint8Array;

  constructor(transcript: Transcript) {
    this.transcript = transcript;
    this.os = transcript.os;
    this.consts = transcript.os === "openbsd" ? OPENBSD_CONSTANTS : LINUX_CONSTANTS;
  }

  /** True when every event was replayed and nothing differed. */
  get complete(): boolean {
    return this.mismatch === undefined && this.position === this.transcript.events.length;
  }

  #fail(message: string): never {
    const m = new TranscriptMismatch(
      `Transcript "${this.transcript.description}", event ${this.position}: ${message}`,
    );
    this.mismatch ??= m;
    throw m;
  }

  #next(op: TranscriptEvent["op"], what: string): TranscriptEvent {
    const e = this.transcript.events[this.position];
    if (!e) this.#fail(`the back-end made a call past the end: ${what}`);
    if (e.op !== op) this.#fail(`expected ${e.op} ${e.request ?? e.path ?? ""}, got ${what}`);
    return e;
  }

  open(path: string, _flags: number): number {
    const e = this.#next("open", `open "${path}"`);
    if (e.path !== path) this.#fail(`expected open "${e.path}", got open "${path}"`);
    this.position++;
    if (e.errno) throw new SyscallError(`open "${path}"`, errnoNumber(e.errno, this.os), this.os);
    return e.fd!;
  }

  close(fd: number): void {
    const e = this.#next("close", `close ${fd}`);
    if (e.fd !== fd) this.#fail(`expected close ${e.fd}, got close ${fd}`);
    this.position++;
  }

  #ioctl(fd: number, request: IoctlRequest, arg: IoctlArg): { ret: number; errno?: string } {
    const what = `${request.name} on fd ${fd}`;
    const e = this.#next("ioctl", what);
    const value = `0x${(request.value >>> 0).toString(16)}`;
    if (e.request !== request.name || e.value !== value) {
      this.#fail(`expected ${e.request} (${e.value}), got ${request.name} (${value})`);
    }
    if (e.fd !== fd) this.#fail(`${what}: expected fd ${e.fd}`);
    if (!(arg instanceof Uint8Array) || !e.in || !e.out) this.#fail(`${what}: no argument buffer`);
    const want = unpatch(e.in);
    const at = firstDifference(want, arg);
    if (at >= 0) {
      this.#fail(
        `${what}: input differs at byte ${at} (expected ${hex(want.subarray(at, at + 8))}, ` +
          `got ${hex(arg.subarray(at, at + 8))})`,
      );
    }
    if (request.value === abi.VMM_IOC_RUN.value) {
      const ptr = new DataView(arg.buffer, arg.byteOffset).getBigUint64(RUN_EXIT_PTR, true);
      const exit = this.#buffers.get(ptr);
      if (!exit || !e.exitIn || !e.exitOut) this.#fail(`${what}: vrp_exit is not the exit buffer`);
      const wantExit = unpatch(e.exitIn, this.#lastExitOut);
      const x = firstDifference(wantExit, exit);
      if (x >= 0) {
        this.#fail(
          `${what}: vm_exit passed in differs at byte ${x} (expected ` +
            `${hex(wantExit.subarray(x, x + 8))}, got ${hex(exit.subarray(x, x + 8))})`,
        );
      }
      const after = unpatch(e.exitOut, wantExit);
      exit.set(after);
      this.#lastExitOut = after;
    }
    arg.set(unpatch(e.out, want));
    this.position++;
    return { ret: e.ret ?? 0, errno: e.errno };
  }

  ioctl(fd: number, request: IoctlRequest, arg?: IoctlArg): number {
    const r = this.#ioctl(fd, request, arg ?? null);
    if (r.errno) {
      throw new IoctlError(request.name, request.value, errnoNumber(r.errno, this.os), this.os);
    }
    return r.ret;
  }

  ioctlTry(fd: number, request: IoctlRequest, arg: IoctlArg, accept: readonly string[]): number {
    const r = this.#ioctl(fd, request, arg);
    if (!r.errno) return r.ret;
    const n = errnoNumber(r.errno, this.os);
    if (accept.includes(r.errno)) return -n;
    throw new IoctlError(request.name, request.value, n, this.os);
  }

  memoryAt(address: bigint, length: number): Uint8Array {
    const buf = this.#buffers.get(address);
    if (buf) return buf.subarray(0, length);
    let m = this.#memory.get(address);
    if (!m || m.length < length) {
      m = new Uint8Array(length);
      this.#memory.set(address, m);
    }
    return m.subarray(0, length);
  }

  addressOf(buffer: Uint8Array): bigint {
    for (const [a, b] of this.#buffers) if (b === buffer) return a;
    const a = TRANSCRIPT_EXIT_ADDRESS + BigInt(this.#buffers.size) * 0x1000n;
    this.#buffers.set(a, buffer);
    return a;
  }

  mmap(): Mapping {
    throw new Error("ReplayLibc: mmap is not part of a vmm(4) transcript");
  }
  munmap(): void {
    throw new Error("ReplayLibc: munmap is not part of a vmm(4) transcript");
  }
  read(): number {
    throw new Error("ReplayLibc: read is not part of a vmm(4) transcript");
  }
  write(): number {
    throw new Error("ReplayLibc: write is not part of a vmm(4) transcript");
  }
  pread(): number {
    throw new Error("ReplayLibc: pread is not part of a vmm(4) transcript");
  }
  pwrite(): number {
    throw new Error("ReplayLibc: pwrite is not part of a vmm(4) transcript");
  }
  fsync(): void {}
  fdatasync(): void {}
  getpid(): number {
    return 1;
  }
  threadId(): bigint {
    return 1n;
  }
  signalThread(): void {}
}

/** Reads a transcript file. */
export function loadTranscript(path: string | URL): Transcript {
  return JSON.parse(Deno.readTextFileSync(path)) as Transcript;
}

/** Writes a transcript as JSON, one event per line (diffs stay readable). */
export function formatTranscript(t: Transcript): string {
  const lines = t.events.map((e) => "    " + JSON.stringify(e));
  return `{\n  "description": ${JSON.stringify(t.description)},\n  "os": ${
    JSON.stringify(t.os)
  },\n  "events": [\n${lines.join(",\n")}\n  ]\n}\n`;
}
