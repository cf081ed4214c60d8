/**
 * Opt-in (VMMCTL_TEST_LINUX=1): boots a real Debian kernel with
 * `earlyprintk=serial` until its "Linux version" banner. On a host whose KVM
 * cannot run it (a software-nested KVM without protected-mode IRET, see
 * docs/ARCHITECTURE.md, "The build host") the VM must instead end quickly with the reason: the
 * failing instruction's bytes at RIP, never a hang.
 */
import assert from "node:assert/strict";
import { bootGuest, kvmAvailable } from "./boot.ts";
import { debianKernel, LINUX_TESTS_ENABLED } from "./debian_kernel.ts";

Deno.test({
  name: "linux: a Debian kernel prints its banner, or fails fast naming the bytes at RIP",
  ignore: !LINUX_TESTS_ENABLED || !kvmAvailable(),
  async fn() {
    const kernel = debianKernel();
    const r = await bootGuest({
      kernel,
      cmdline: "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1",
      memoryBytes: 512 * 1024 * 1024,
      exitPort: null,
      timeoutMs: 30_000,
    });
    const banner = /Linux version \d+\.\d+/.test(r.serial);
    console.log(`linux: ${banner ? "banner seen" : "no banner"} after ${r.wallMs.toFixed(0)} ms`);
    if (banner) return;
    // No banner: the VM failed (emulation failure) or was stopped by the timeout while its
    // CPL-0 code crawled through the instruction emulator. Either way the report must say
    // where the guest was, with the bytes at RIP.
    const where = r.outcome.kind === "failed"
      ? r.outcome.reason
      : r.outcome.kind === "stopped"
      ? r.outcome.detail ?? ""
      : "";
    console.log(`linux: ${r.outcome.kind}: ${where.split("\n")[0]}`);
    assert.match(where, /at RIP 0x[0-9a-f]+ \(CS base 0x[0-9a-f]+\): ([0-9a-f]{2} ?)+/);
    assert.ok(r.wallMs < 60_000, `took ${r.wallMs} ms to end`);
  },
});
