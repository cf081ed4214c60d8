/**
 * The guest's TSC frequency, which the hvt ABI hands the unikernel in
 * `cpu_cycle_freq` (its monotonic clock is TSC ticks scaled by it).
 *
 * - KVM: `KVM_GET_TSC_KHZ` on the vCPU (what solo5-hvt does).
 * - vmm(4) emulated on KVM (`openbsd-on-kvm`): the vCPUs are KVM vCPUs at
 *   KVM's default TSC rate, so a throw-away KVM vCPU answers.
 * - OpenBSD: `sysctl machdep.tscfreq` (what solo5-hvt does there).
 *
 * @module
 */

import type { Vcpu } from "../accel/types.ts";
import { KvmVcpu } from "../accel/kvm/kvm.ts";
import * as kvm from "../accel/kvm/abi.ts";
import type { IoctlRequest, Libc } from "../ffi/libc.ts";
import { linuxIo } from "../ffi/ioctl.ts";

/** `KVM_GET_TSC_KHZ` (a vCPU ioctl; the result is the frequency in kHz). */
export const KVM_GET_TSC_KHZ: IoctlRequest = {
  name: "KVM_GET_TSC_KHZ",
  value: linuxIo(kvm.KVMIO, 0xa3),
};

function khzFromVcpuFd(libc: Libc, fd: number): number {
  const khz = libc.ioctl(fd, KVM_GET_TSC_KHZ, 0);
  if (khz <= 0) throw new Error(`KVM_GET_TSC_KHZ returned "${khz}"`);
  return khz * 1000;
}

/** The TSC frequency of a throw-away KVM vCPU. */
export function kvmDefaultTscHz(libc: Libc, devicePath = "/dev/kvm"): number {
  const kvmFd = libc.open(devicePath, libc.consts.O_RDWR | libc.consts.O_CLOEXEC);
  let vmFd = -1;
  let vcpuFd = -1;
  try {
    vmFd = libc.ioctl(kvmFd, kvm.KVM_CREATE_VM, 0);
    vcpuFd = libc.ioctl(vmFd, kvm.KVM_CREATE_VCPU, 0);
    return khzFromVcpuFd(libc, vcpuFd);
  } finally {
    if (vcpuFd >= 0) libc.close(vcpuFd);
    if (vmFd >= 0) libc.close(vmFd);
    libc.close(kvmFd);
  }
}

/** `sysctl -n machdep.tscfreq` on OpenBSD. */
function openbsdTscHz(): number {
  const out = new Deno.Command("sysctl", { args: ["-n", "machdep.tscfreq"] }).outputSync();
  const hz = Number(new TextDecoder().decode(out.stdout).trim());
  if (!out.success || !Number.isFinite(hz) || hz <= 0) {
    throw new Error(
      "Cannot read the TSC frequency (sysctl machdep.tscfreq); Solo5 guests need an invariant TSC",
    );
  }
  return hz;
}

/** The TSC frequency in Hz the guest on `vcpu` sees. */
export function guestTscHz(vcpu: Vcpu, libc: Libc): number {
  if (vcpu instanceof KvmVcpu) return khzFromVcpuFd(vcpu.vm.accel.libc, vcpu.fd);
  if (libc.os === "openbsd") return openbsdTscHz();
  return kvmDefaultTscHz(libc);
}
