/**
 * A programmable {@link Libc} for the OpenBSD back-end's unit tests: /dev/vmm
 * answered by a handler per ioctl, guest memory and the `vm_exit` buffer
 * reachable through fake host addresses. No hypervisor, no FFI.
 *
 * @module
 */

import { errnoNumber, IoctlError, SyscallError } from "../../ffi/errno.ts";
import type { Segment } from "../types.ts";
import { type SandboxCalls, VMM_IOCTL_PROMISE } from "./openbsd_host.ts";
import { flatSegment } from "../../loaders/cpu_state.ts";
import {
  type IoctlArg,
  type IoctlRequest,
  type Libc,
  type Mapping,
  OPENBSD_CONSTANTS,
} from "../../ffi/libc.ts";

/** What a handler returns: a result, or an errno name. */
export type FakeAnswer = number | { errno: string };

/** One ioctl as the fake saw it (a copy of the argument bytes on the way in). */
export interface FakeCall {
  fd: number;
  name: string;
  value: number;
  in: Uint8Array | null;
}

/** Handles an ioctl: may write into `arg` (the caller's buffer). */
export type FakeHandler = (arg: Uint8Array, fd: number) => FakeAnswer;

/** A scripted C library that plays OpenBSD's /dev/vmm. */
export class FakeVmmLibc implements Libc {
  readonly os = "openbsd" as const;
  readonly consts = OPENBSD_CONSTANTS;
  /** Every ioctl, in order. */
  readonly calls: FakeCall[] = [];
  /** Handlers by request name; a missing one answers ENOTTY. */
  readonly handlers = new Map<string, FakeHandler>();
  /** Regions handed out by `memoryAt`, by address. */
  readonly memory = new Map<bigint, Uint8Array>();
  /** Buffers whose address the back-end took, by fake address. */
  readonly buffers = new Map<bigint, Uint8Array>();
  openError?: string;
  readonly closed: number[] = [];
  signals: [bigint, number][] = [];
  #nextAddress = 0x7f0000000000n;

  /** The fd `open` returns. */
  readonly deviceFd = 7;

  open(path: string, _flags: number): number {
    if (this.openError) {
      throw new SyscallError(`open "${path}"`, errnoNumber(this.openError, "openbsd"), "openbsd");
    }
    return this.deviceFd;
  }

  close(fd: number): void {
    this.closed.push(fd);
  }

  on(name: string, handler: FakeHandler): this {
    this.handlers.set(name, handler);
    return this;
  }

  /** pledge(2) state the ioctls are checked against (none: unpledged). */
  pledge?: FakePledge;

  #call(fd: number, request: IoctlRequest, arg: IoctlArg): FakeAnswer {
    this.pledge?.checkIoctl(request.name);
    const buf = arg instanceof Uint8Array ? arg : null;
    this.calls.push({ fd, name: request.name, value: request.value, in: buf ? buf.slice() : null });
    const h = this.handlers.get(request.name);
    if (!h) return { errno: "ENOTTY" };
    return h(buf ?? new Uint8Array(0), fd);
  }

  ioctl(fd: number, request: IoctlRequest, arg?: IoctlArg): number {
    const r = this.#call(fd, request, arg ?? null);
    if (typeof r === "number") return r;
    throw new IoctlError(request.name, request.value, errnoNumber(r.errno, "openbsd"), "openbsd");
  }

  ioctlTry(fd: number, request: IoctlRequest, arg: IoctlArg, accept: readonly string[]): number {
    const r = this.#call(fd, request, arg);
    if (typeof r === "number") return r;
    const n = errnoNumber(r.errno, "openbsd");
    if (accept.includes(r.errno)) return -n;
    throw new IoctlError(request.name, request.value, n, "openbsd");
  }

  /** A fresh "kernel mapping" of `size` bytes; returns its address. */
  map(size: number): bigint {
    const address = this.#nextAddress;
    this.#nextAddress += BigInt(Math.ceil(size / 4096) * 4096 + 0x100000);
    this.memory.set(address, new Uint8Array(size));
    return address;
  }

  memoryAt(address: bigint, length: number): Uint8Array {
    const m = this.memory.get(address);
    if (!m || m.length < length) {
      throw new Error(`FakeVmmLibc: nothing mapped at 0x${address.toString(16)}`);
    }
    return m.subarray(0, length);
  }

  addressOf(buffer: Uint8Array): bigint {
    for (const [a, b] of this.buffers) if (b === buffer) return a;
    const address = this.#nextAddress;
    this.#nextAddress += 0x10000n;
    this.buffers.set(address, buffer);
    return address;
  }

  mmap(_l: number, _p: number, _f: number, _fd: number, _o: number): Mapping {
    throw new Error("FakeVmmLibc: the OpenBSD back-end must not mmap");
  }
  munmap(_m: Mapping): void {
    throw new Error("FakeVmmLibc: the OpenBSD back-end must not munmap");
  }
  read(): number {
    throw new Error("not used");
  }
  write(): number {
    throw new Error("not used");
  }
  pread(): number {
    throw new Error("not used");
  }
  pwrite(): number {
    throw new Error("not used");
  }
  fsync(): void {}
  fdatasync(): void {}
  getpid(): number {
    return 4242;
  }
  threadId(): bigint {
    return 0x1234n;
  }
  signalThread(threadId: bigint, signal: number): void {
    this.signals.push([threadId, signal]);
  }

  /** The calls to `name`. */
  callsOf(name: string): FakeCall[] {
    return this.calls.filter((c) => c.name === name);
  }
}

/** A flat 4 GiB present segment (selector 0x10) of descriptor `type`, with overrides. */
export function seg(type: number, extra: Partial<Segment> = {}): Segment {
  return flatSegment(0x10, type, extra);
}

/** A pledge violation: the kernel kills the process (SIGABRT); the fake throws this. */
export class PledgeViolation extends Error {}

/**
 * pledge(2) and unveil(2) with the kernel's rules: promises can only be
 * narrowed, unveil is refused once locked, and each vmm(4) ioctl needs
 * "vmm" plus what {@link VMM_IOCTL_PROMISE} says.
 */
export class FakePledge implements SandboxCalls {
  /** undefined until the first pledge. */
  promises?: Set<string>;
  locked = false;
  readonly unveiled: [string, string][] = [];
  readonly log: string[] = [];

  pledge(promises: string | null, _exec: string | null): void {
    this.log.push(`pledge ${promises}`);
    if (promises === null) return;
    const want = new Set(promises.split(/\s+/).filter((w) => w !== ""));
    const gained = [...want].filter((p) => this.promises && !this.promises.has(p));
    if (gained.length > 0) {
      throw new SyscallError(`pledge "${promises}"`, errnoNumber("EPERM", "openbsd"), "openbsd");
    }
    this.promises = want;
  }

  unveil(path: string | null, permissions: string | null): void {
    this.log.push(path === null ? "unveil lock" : `unveil ${path} ${permissions}`);
    if (this.locked) {
      throw new SyscallError(`unveil "${path}"`, errnoNumber("EPERM", "openbsd"), "openbsd");
    }
    if (path === null) this.locked = true;
    else this.unveiled.push([path, permissions ?? ""]);
  }

  /** Throws {@link PledgeViolation} when the current promises forbid ioctl `name`. */
  checkIoctl(name: string): void {
    if (!this.promises) return;
    const needs = ["vmm", VMM_IOCTL_PROMISE[name] ?? "(unknown)"];
    const missing = needs.filter((p) => !this.promises!.has(p));
    if (missing.length > 0) {
      throw new PledgeViolation(
        `pledge violation: ${name} needs "${missing.join(" ")}", promises are ` +
          `"${[...this.promises].join(" ")}"`,
      );
    }
  }
}
