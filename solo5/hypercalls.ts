/**
 * The hvt hypercalls and the shared network ring, served from guest memory.
 *
 * Every pointer and length the guest supplies is checked against the
 * memory the guest was given (the ring area above it is the tender's) and
 * then goes through {@link GuestMemory}; a bad one ends the guest with a
 * {@link GuestFault} that says which call and which address. Nothing here
 * throws for anything else a guest does.
 *
 * @module
 */

import { type GuestMemory, GuestMemoryError } from "../core/guest_memory.ts";
import { DiskError } from "../disk/image.ts";
import { TAP_MAX_FRAME_BYTES } from "../net/tap.ts";
import { guestLog, type RateLimitedLog } from "../core/device.ts";
import {
  HC,
  HVT_HALT_COOKIE_MAX,
  HVT_HYPERCALL,
  HVT_RING,
  HVT_RING_COMMITS,
  HYPERCALL_NAMES,
  SOLO5_R_AGAIN,
  SOLO5_R_EINVAL,
  SOLO5_R_EUNSPEC,
  SOLO5_R_OK,
  X86_TRAP_REGS,
} from "./abi.ts";
import type { AttachedDevices } from "./devices.ts";

/** The guest broke the ABI (bad pointer, bad port, corrupt ring): it ends with this message. */
export class GuestFault extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GuestFault";
  }
}

/** How a hypercall ended. */
export type HypercallResult =
  | { kind: "continue" }
  | {
    kind: "halt";
    status: number;
    /** The decoded trap frame when the guest passed a cookie (abort after a trap). */
    trap?: Record<(typeof X86_TRAP_REGS)[number], bigint>;
  }
  /** The host asked the VM to stop while the guest waited in poll. */
  | { kind: "stopped" };

/** What poll waits with (the vCPU's control block in the machine). */
export interface PollWaiter {
  /** Sleeps up to `ms` or until woken; returns false when the host wants the vCPU back. */
  wait(ms: number): boolean;
}

/** What the hypercalls need. */
export interface HypercallContext {
  memory: GuestMemory;
  /** Bytes the guest owns, from 0; pointers must stay below. */
  guestBytes: number;
  devices: AttachedDevices;
  /** Console output (PUTS). */
  output: (bytes: Uint8Array) => void;
  /** Monotonic ns (poll timeouts). */
  nowNs: () => number;
  /** Wall-clock ns since the epoch (WALLTIME). */
  wallNs?: () => bigint;
  waiter: PollWaiter;
  /** Where the network ring lives, when one is offered. */
  ringGpa?: number;
  log?: RateLimitedLog;
}

/** Longest single wait inside poll: network input is looked for at least this often. */
export const POLL_SLICE_MS = 1;

const hex = (n: number | bigint) => "0x" + n.toString(16);

/** Wall-clock time in ns with sub-millisecond resolution. */
export function wallClockNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

/** Serves hypercalls for one guest. */
export class Hypercalls {
  readonly ctx: HypercallContext;
  readonly #log: RateLimitedLog;
  #call = "";
  /** Counts, for the summary. */
  readonly counts: Map<string, number> = new Map();

  constructor(ctx: HypercallContext) {
    this.ctx = ctx;
    this.#log = ctx.log ?? guestLog;
  }

  /** `[gpa, gpa+len)` of guest memory, checked; throws GuestFault. */
  #slice(gpa: bigint | number, len: bigint | number, what: string): Uint8Array {
    const g = BigInt(gpa);
    const l = BigInt(len);
    if (g < 0n || l < 0n || g + l > BigInt(this.ctx.guestBytes)) {
      throw new GuestFault(
        `Invalid guest access in ${this.#call}: ${what} of ${l} bytes at ${hex(g)} is outside ` +
          `guest memory (${hex(this.ctx.guestBytes)} bytes)`,
      );
    }
    try {
      return this.ctx.memory.slice(Number(g), Number(l));
    } catch (e) {
      if (e instanceof GuestMemoryError) {
        throw new GuestFault(`Invalid guest access in ${this.#call}: ${e.message}`);
      }
      throw e;
    }
  }

  /** A little-endian view of the argument structure at `gpa`. */
  #args(gpa: number, bytes: number): DataView {
    const s = this.#slice(gpa, bytes, "argument structure");
    return new DataView(s.buffer, s.byteOffset, s.byteLength);
  }

  /**
   * Runs hypercall `nr` with its argument at `gpa` (the 32-bit value the
   * guest wrote to the port). Throws GuestFault for an unknown call or a
   * bad pointer.
   */
  handle(nr: number, gpa: number): HypercallResult {
    const name = HYPERCALL_NAMES[nr];
    this.#call = name ?? `hypercall ${nr}`;
    if (!name) throw new GuestFault(`Invalid guest hypercall ${nr} (argument at ${hex(gpa)})`);
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    switch (nr) {
      case HVT_HYPERCALL.WALLTIME:
        this.#args(gpa, HC.walltime.BYTES).setBigUint64(
          HC.walltime.NSECS,
          (this.ctx.wallNs ?? wallClockNs)(),
          true,
        );
        return { kind: "continue" };
      case HVT_HYPERCALL.PUTS: {
        const a = this.#args(gpa, HC.puts.BYTES);
        const data = a.getBigUint64(HC.puts.DATA, true);
        const len = a.getBigUint64(HC.puts.LEN, true);
        this.ctx.output(this.#slice(data, len, "string").slice());
        return { kind: "continue" };
      }
      case HVT_HYPERCALL.POLL:
        return this.#poll(gpa);
      case HVT_HYPERCALL.BLOCK_READ:
      case HVT_HYPERCALL.BLOCK_WRITE:
        this.#block(gpa, nr === HVT_HYPERCALL.BLOCK_WRITE);
        return { kind: "continue" };
      case HVT_HYPERCALL.NET_READ:
        this.#netRead(gpa);
        return { kind: "continue" };
      case HVT_HYPERCALL.NET_WRITE:
        this.#netWrite(gpa);
        return { kind: "continue" };
      case HVT_HYPERCALL.HALT:
        return this.#halt(gpa);
    }
    throw new GuestFault(`Invalid guest hypercall ${nr}`);
  }

  #halt(gpa: number): HypercallResult {
    const a = this.#args(gpa, HC.halt.BYTES);
    const cookie = a.getBigUint64(HC.halt.COOKIE, true);
    const status = a.getInt32(HC.halt.EXIT_STATUS, true);
    if (cookie === 0n) return { kind: "halt", status };
    const c = this.#slice(cookie, HVT_HALT_COOKIE_MAX, "halt cookie");
    const v = new DataView(c.buffer, c.byteOffset, c.byteLength);
    const trap = Object.fromEntries(
      X86_TRAP_REGS.map((r, i) => [r, v.getBigUint64(i * 8, true)]),
    ) as Record<(typeof X86_TRAP_REGS)[number], bigint>;
    return { kind: "halt", status, trap };
  }

  #poll(gpa: number): HypercallResult {
    const a = this.#args(gpa, HC.poll.BYTES);
    const timeoutNs = a.getBigUint64(HC.poll.TIMEOUT_NSECS, true);
    const nets = this.ctx.devices.nets;
    const deadline = this.ctx.nowNs() + Number(timeoutNs);
    for (;;) {
      let ready = 0n;
      let count = 0;
      for (const [index, net] of nets) {
        if (net.ready()) {
          ready |= 1n << BigInt(index);
          count++;
        }
      }
      const now = this.ctx.nowNs();
      if (count > 0 || now >= deadline) {
        // Re-read the view: the guest memory did not move, but keep one code path.
        const out = this.#args(gpa, HC.poll.BYTES);
        out.setBigUint64(HC.poll.READY_SET, ready, true);
        out.setInt32(HC.poll.RET, count, true);
        return { kind: "continue" };
      }
      const waitMs = Math.min((deadline - now) / 1e6, nets.size > 0 ? POLL_SLICE_MS : Infinity);
      if (!this.ctx.waiter.wait(waitMs)) return { kind: "stopped" };
    }
  }

  #block(gpa: number, write: boolean): void {
    const a = this.#args(gpa, HC.block.BYTES);
    const handle = a.getBigUint64(HC.block.HANDLE, true);
    const offset = a.getBigUint64(HC.block.OFFSET, true);
    const data = a.getBigUint64(HC.block.DATA, true);
    const len = a.getBigUint64(HC.block.LEN, true);
    const dev = handle < 64n ? this.ctx.devices.blocks.get(Number(handle)) : undefined;
    const fail = (ret: number) => a.setInt32(HC.block.RET, ret, true);
    if (!dev) return fail(SOLO5_R_EINVAL);
    const sector = BigInt(dev.sectorBytes);
    const cap = BigInt(dev.capacityBytes);
    if (
      offset >= cap || len > cap - offset || offset % sector !== 0n || len % sector !== 0n
    ) {
      return fail(SOLO5_R_EINVAL);
    }
    const buf = this.#slice(data, len, write ? "write buffer" : "read buffer");
    try {
      if (write) dev.image.write(Number(offset), buf);
      else dev.image.read(Number(offset), buf);
    } catch (e) {
      if (!(e instanceof DiskError)) throw e;
      this.#log.log(`solo5: block "${dev.name}": ${e.message}`);
      return fail(SOLO5_R_EUNSPEC);
    }
    fail(SOLO5_R_OK);
  }

  #netWrite(gpa: number): void {
    const a = this.#args(gpa, HC.net.BYTES);
    const handle = a.getBigUint64(HC.net.HANDLE, true);
    const data = a.getBigUint64(HC.net.DATA, true);
    const len = a.getBigUint64(HC.net.LEN, true);
    a.setInt32(HC.net.RET, this.#sendFrame(handle, data, len), true);
  }

  #sendFrame(handle: bigint, data: bigint, len: bigint): number {
    const dev = handle < 64n ? this.ctx.devices.nets.get(Number(handle)) : undefined;
    if (!dev || len > BigInt(TAP_MAX_FRAME_BYTES)) return SOLO5_R_EINVAL;
    const frame = this.#slice(data, len, "frame");
    if (!dev.tap.write(frame)) {
      this.#log.log(
        `solo5: net "${dev.name}": tap "${dev.tap.name}" is full or down; frame dropped`,
      );
    }
    return SOLO5_R_OK;
  }

  #netRead(gpa: number): void {
    const a = this.#args(gpa, HC.net.BYTES);
    const handle = a.getBigUint64(HC.net.HANDLE, true);
    const data = a.getBigUint64(HC.net.DATA, true);
    const len = a.getBigUint64(HC.net.LEN, true);
    const r = this.#receiveFrame(handle, data, len);
    a.setBigUint64(HC.net.LEN, BigInt(r.len), true);
    a.setInt32(HC.net.RET, r.ret, true);
  }

  #receiveFrame(handle: bigint, data: bigint, len: bigint): { ret: number; len: number } {
    const dev = handle < 64n ? this.ctx.devices.nets.get(Number(handle)) : undefined;
    if (!dev) return { ret: SOLO5_R_EINVAL, len: 0 };
    const buf = this.#slice(data, len, "receive buffer");
    const frame = dev.take();
    if (!frame) return { ret: SOLO5_R_AGAIN, len: 0 };
    // A frame longer than the buffer is cut, as read(2) on a tap cuts it.
    const n = Math.min(frame.length, buf.length);
    buf.set(frame.subarray(0, n));
    return { ret: SOLO5_R_OK, len: n };
  }

  /** Prepares the ring: the host asks to be kicked after every submission. */
  initRing(): void {
    const r = this.ctx.ringGpa;
    if (r === undefined) return;
    this.ctx.memory.writeU32(r + HVT_RING.NEEDS_KICK, 1);
  }

  /**
   * Serves every submitted ring entry (the guest rang the doorbell). Done
   * synchronously on the vCPU: `needs_kick` stays 1, so the guest kicks
   * after each submission and finds its read completed when the kick
   * returns (solo5-hvt serves the ring from a polling host thread instead).
   */
  serveRing(): void {
    const r = this.ctx.ringGpa;
    if (r === undefined) throw new GuestFault("Ring doorbell rung but no ring is offered");
    this.#call = "the network ring";
    const mem = this.ctx.memory;
    const tail = mem.readU32(r + HVT_RING.ENT_TAIL);
    let head = mem.readU32(r + HVT_RING.ENT_HEAD);
    const pending = (tail - head) >>> 0;
    if (pending > HVT_RING.SIZE) {
      throw new GuestFault(
        `Corrupt network ring: ${pending} entries pending (head ${head}, tail ${tail}, at most ` +
          `${HVT_RING.SIZE})`,
      );
    }
    const mask = HVT_RING.SIZE - 1;
    while (head !== tail) {
      const e = r + HVT_RING.ENTRIES + (head & mask) * HVT_RING.ENTRY_BYTES;
      const op = mem.readU32(e + HVT_RING.E_OPERATION);
      const handle = BigInt(mem.readU32(e + HVT_RING.E_HANDLE));
      const data = mem.readU64(e + HVT_RING.E_DATA);
      const len = BigInt(mem.readU32(e + HVT_RING.E_LEN));
      if (op === HVT_RING.OP_NET_WRITE) {
        this.#sendFrame(handle, data, len);
      } else if (op === HVT_RING.OP_NET_READ) {
        const result = this.#receiveFrame(handle, data, len);
        const comTail = mem.readU32(r + HVT_RING.COM_TAIL);
        const c = r + HVT_RING_COMMITS + (comTail & mask) * HVT_RING.COMMIT_BYTES;
        mem.writeU32(c + HVT_RING.C_ID, mem.readU32(e + HVT_RING.E_ID));
        mem.writeU32(c + HVT_RING.C_RET, result.ret);
        mem.writeU32(c + HVT_RING.C_LEN, result.len);
        mem.writeU32(r + HVT_RING.COM_TAIL, (comTail + 1) >>> 0);
      } else {
        this.#log.log(`solo5: network ring entry with unknown operation ${op} skipped`);
      }
      head = (head + 1) >>> 0;
      mem.writeU32(r + HVT_RING.ENT_HEAD, head);
    }
  }

  /** "PUTS 3, HALT 1". */
  describeCounts(): string {
    return [...this.counts].map(([k, v]) => `${k} ${v}`).join(", ");
  }
}
