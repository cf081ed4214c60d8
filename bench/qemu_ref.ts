/**
 * QEMU as the reference VMM: the argument lists the benchmarks use (same
 * Multiboot image, COM1 on stdout, isa-debug-exit at 0xF4).
 *
 * @module
 */

import { QEMU_BINARY, qemuArgs } from "../tests/qemu.ts";

/** A QEMU configuration the benchmarks compare with. */
export type QemuFlavour = "microvm-kvm" | "pc-kvm" | "microvm-tcg" | "pc-tcg";

/** All of them, in table order. */
export const QEMU_FLAVOURS: readonly QemuFlavour[] = [
  "microvm-kvm",
  "pc-kvm",
  "microvm-tcg",
  "pc-tcg",
];

/** microvm with the legacy devices the test guests use, and no PCI. */
export const MICROVM_MACHINE = "microvm,pic=on,pit=on,rtc=on,isa-serial=on";

/** How a flavour is named in the table. */
export function qemuLabel(f: QemuFlavour): string {
  const [machine, accel] = f.split("-");
  return `QEMU ${machine} ${accel.toUpperCase()}`;
}

/** qemu-system-x86_64's arguments for `kernel` under flavour `f` (the tests' {@link qemuArgs}). */
export function qemuBenchArgs(
  f: QemuFlavour,
  o: { kernel: string; cmdline?: string; memoryMiB: number },
): string[] {
  return qemuArgs({ ...o, ...FLAVOUR_MACHINE[f] });
}

const FLAVOUR_MACHINE: Record<QemuFlavour, { machine: string; accel: "kvm" | "tcg" }> = {
  "microvm-kvm": { machine: MICROVM_MACHINE, accel: "kvm" },
  "pc-kvm": { machine: "pc", accel: "kvm" },
  "microvm-tcg": { machine: MICROVM_MACHINE, accel: "tcg" },
  "pc-tcg": { machine: "pc", accel: "tcg" },
};

/** The QEMU binary. */
export const QEMU = QEMU_BINARY;

/**
 * Why a guest cannot run on a flavour, or undefined. microvm's CPU has a
 * LAPIC the test guests never program, so interrupts from the 8259 never
 * reach it: guests that wait for timer ticks hang there.
 */
export function qemuUnsupported(
  f: QemuFlavour,
  guestNeedsPicInterrupts: boolean,
): string | undefined {
  if (guestNeedsPicInterrupts && f.startsWith("microvm")) {
    return "microvm delivers no 8259 interrupts to a guest that leaves the LAPIC alone";
  }
  return undefined;
}
