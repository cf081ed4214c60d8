/**
 * Tap devices: Ethernet frames between the host kernel and a virtio-net card.
 *
 * Linux: open `/dev/net/tun` and `TUNSETIFF` with IFF_TAP | IFF_NO_PI (frames
 * without a packet-info prefix). A name of `"auto"` asks the kernel for
 * `vmmctl%d`; any other name attaches to that tap (or creates it). We never
 * set TUNSETPERSIST, so a tap we created disappears when its fd closes.
 * OpenBSD: `/dev/tapN` (`"auto"` takes the first free one).
 *
 * The fd is non-blocking: {@link TapDevice.read} returns `undefined` when no
 * frame is waiting, so the vCPU thread can poll it.
 *
 * @example
 * ```ts ignore
 * import { openTap } from "./tap.ts";
 * const tap = openTap("auto"); // needs CAP_NET_ADMIN
 * console.log(tap.name); // "vmmctl0"
 * tap.close();
 * ```
 * @module
 */

import { type Libc, openLibc } from "../ffi/libc.ts";
import { linuxIow } from "../ffi/ioctl.ts";
import { SyscallError } from "../ffi/errno.ts";

/** The clone device on Linux. */
export const TUN_CLONE_PATH = "/dev/net/tun";
/** ifreq flag: a tap (Ethernet) device. */
export const IFF_TAP = 0x0002;
/** ifreq flag: no packet-information prefix. */
export const IFF_NO_PI = 0x1000;
/** Interface name size including the NUL (IFNAMSIZ). */
export const IFNAMSIZ = 16;
/** sizeof(struct ifreq) on Linux x86-64. */
export const IFREQ_BYTES = 40;
/** TUNSETIFF = _IOW('T', 202, int). */
export const TUNSETIFF = { name: "TUNSETIFF", value: linuxIow(0x54, 202, 4) } as const;
/** Largest frame we read: 64 KiB plus an Ethernet header (GSO-free taps stay far below). */
export const TAP_MAX_FRAME_BYTES = 65536 + 14;
/** The name pattern of taps we create. */
export const TAP_AUTO_PATTERN = "vmmctl%d";

/** An open tap device. */
export interface TapDevice {
  /** The interface name (what `ip link` shows). */
  readonly name: string;
  /** Reads one frame into `into`; returns its length, or `undefined` when none is waiting. */
  read(into: Uint8Array): number | undefined;
  /** Writes one frame; returns false when the kernel would block (the frame is dropped). */
  write(frame: Uint8Array): boolean;
  close(): void;
}

function isWouldBlock(e: unknown): boolean {
  return e instanceof SyscallError && (e.code === "EAGAIN" || e.code === "EWOULDBLOCK");
}

/** A tap on an fd opened through `libc`. */
export class FdTap implements TapDevice {
  readonly name: string;
  readonly #libc: Libc;
  #fd: number;

  constructor(libc: Libc, fd: number, name: string) {
    this.#libc = libc;
    this.#fd = fd;
    this.name = name;
  }

  read(into: Uint8Array): number | undefined {
    if (this.#fd < 0) return undefined;
    try {
      return this.#libc.read(this.#fd, into);
    } catch (e) {
      if (isWouldBlock(e)) return undefined;
      throw e;
    }
  }

  write(frame: Uint8Array): boolean {
    if (this.#fd < 0) return false;
    try {
      this.#libc.write(this.#fd, frame);
      return true;
    } catch (e) {
      // Full (EAGAIN) or down (EIO): the frame is lost, as on a real wire.
      if (e instanceof SyscallError) return false;
      throw e;
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#libc.close(fd);
  }
}

/**
 * Opens tap `name` (`"auto"` for a new one). Throws a clear error when the
 * clone device is missing or we lack the privilege.
 */
export function openTap(name: string, libc: Libc = openLibc()): TapDevice {
  if (libc.os === "openbsd") return openOpenbsdTap(name, libc);
  const request = name === "auto" ? TAP_AUTO_PATTERN : name;
  const encoded = new TextEncoder().encode(request);
  if (encoded.length >= IFNAMSIZ) {
    throw new RangeError(`Tap name "${name}" is longer than ${IFNAMSIZ - 1} bytes`);
  }
  let fd: number;
  try {
    fd = libc.open(
      TUN_CLONE_PATH,
      libc.consts.O_RDWR | libc.consts.O_NONBLOCK | libc.consts.O_CLOEXEC,
    );
  } catch (e) {
    throw new Error(
      `Cannot open "${TUN_CLONE_PATH}" for tap "${name}": ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
  try {
    const ifr = new Uint8Array(IFREQ_BYTES);
    ifr.set(encoded);
    new DataView(ifr.buffer).setUint16(IFNAMSIZ, IFF_TAP | IFF_NO_PI, true);
    libc.ioctl(fd, TUNSETIFF, ifr);
    const end = ifr.indexOf(0);
    const actual = new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end));
    return new FdTap(libc, fd, actual);
  } catch (e) {
    libc.close(fd);
    throw new Error(
      `Cannot attach tap "${name}" (needs CAP_NET_ADMIN, and an existing "${name}" must be a tap): ` +
        (e instanceof Error ? e.message : String(e)),
      { cause: e },
    );
  }
}

/** OpenBSD: `/dev/tapN`; "auto" tries tap0..tap255 for one not in use. */
function openOpenbsdTap(name: string, libc: Libc): TapDevice {
  const flags = libc.consts.O_RDWR | libc.consts.O_NONBLOCK | libc.consts.O_CLOEXEC;
  const candidates = name === "auto" ? Array.from({ length: 256 }, (_, i) => `tap${i}`) : [name];
  let last: unknown;
  for (const candidate of candidates) {
    try {
      return new FdTap(libc, libc.open(`/dev/${candidate}`, flags), candidate);
    } catch (e) {
      last = e;
      if (!(e instanceof SyscallError && e.code === "EBUSY")) break;
    }
  }
  throw new Error(`Cannot open tap "${name}": ${last instanceof Error ? last.message : last}`, {
    cause: last,
  });
}
