/**
 * ioctl request-number encoders for Linux and OpenBSD.
 *
 * Both return unsigned 32-bit numbers (JavaScript bit operators yield signed
 * ones, which FFI would sign-extend into a different 64-bit request).
 *
 * @example
 * ```ts
 * import { linuxIow, openbsdIowr } from "./ioctl.ts";
 * linuxIow(0xae, 0x46, 32); // KVM_SET_USER_MEMORY_REGION = 0x4020ae46
 * openbsdIowr(0x56, 2, 40); // VMM_IOC_RUN = 0xc0285602
 * ```
 * @module
 */

const LINUX_NRBITS = 8;
const LINUX_TYPEBITS = 8;
const LINUX_SIZEBITS = 14;
const LINUX_NRSHIFT = 0;
const LINUX_TYPESHIFT = LINUX_NRSHIFT + LINUX_NRBITS;
const LINUX_SIZESHIFT = LINUX_TYPESHIFT + LINUX_TYPEBITS;
const LINUX_DIRSHIFT = LINUX_SIZESHIFT + LINUX_SIZEBITS;

/** Linux _IOC direction bits (x86). */
export const LINUX_IOC_NONE = 0;
export const LINUX_IOC_WRITE = 1;
export const LINUX_IOC_READ = 2;

function check(value: number, bits: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new RangeError(`ioctl ${what} ${value} does not fit in ${bits} bits`);
  }
  return value;
}

/** Linux `_IOC(dir, type, nr, size)`. */
export function linuxIoc(dir: number, type: number, nr: number, size: number): number {
  return (
    check(dir, 2, "direction") * 2 ** LINUX_DIRSHIFT +
    check(size, LINUX_SIZEBITS, "size") * 2 ** LINUX_SIZESHIFT +
    check(type, LINUX_TYPEBITS, "type") * 2 ** LINUX_TYPESHIFT +
    check(nr, LINUX_NRBITS, "number")
  );
}
/** Linux `_IO(type, nr)`. */
export const linuxIo = (type: number, nr: number): number => linuxIoc(LINUX_IOC_NONE, type, nr, 0);
/** Linux `_IOR(type, nr, size)`. */
export const linuxIor = (type: number, nr: number, size: number): number =>
  linuxIoc(LINUX_IOC_READ, type, nr, size);
/** Linux `_IOW(type, nr, size)`. */
export const linuxIow = (type: number, nr: number, size: number): number =>
  linuxIoc(LINUX_IOC_WRITE, type, nr, size);
/** Linux `_IOWR(type, nr, size)`. */
export const linuxIowr = (type: number, nr: number, size: number): number =>
  linuxIoc(LINUX_IOC_READ | LINUX_IOC_WRITE, type, nr, size);

/** OpenBSD direction bits (sys/ioccom.h). */
export const OPENBSD_IOC_VOID = 0x20000000;
export const OPENBSD_IOC_OUT = 0x40000000;
export const OPENBSD_IOC_IN = 0x80000000;
export const OPENBSD_IOC_INOUT = OPENBSD_IOC_IN + OPENBSD_IOC_OUT;
const OPENBSD_IOCPARM_MASK = 0x1fff;

/** OpenBSD `_IOC(inout, group, num, len)`. */
export function openbsdIoc(inout: number, group: number, num: number, len: number): number {
  check(len, 13, "length");
  return inout + (len & OPENBSD_IOCPARM_MASK) * 0x10000 + check(group, 8, "group") * 0x100 +
    check(num, 8, "number");
}
/** OpenBSD `_IO(group, num)`. */
export const openbsdIo = (g: number, n: number): number => openbsdIoc(OPENBSD_IOC_VOID, g, n, 0);
/** OpenBSD `_IOR(group, num, len)`: the kernel writes the argument out. */
export const openbsdIor = (g: number, n: number, len: number): number =>
  openbsdIoc(OPENBSD_IOC_OUT, g, n, len);
/** OpenBSD `_IOW(group, num, len)`: the kernel reads the argument in. */
export const openbsdIow = (g: number, n: number, len: number): number =>
  openbsdIoc(OPENBSD_IOC_IN, g, n, len);
/** OpenBSD `_IOWR(group, num, len)`. */
export const openbsdIowr = (g: number, n: number, len: number): number =>
  openbsdIoc(OPENBSD_IOC_INOUT, g, n, len);

/** Formats a request number as `0x` + 8 hex digits for messages. */
export function hexRequest(request: number): string {
  return "0x" + request.toString(16).padStart(8, "0");
}
