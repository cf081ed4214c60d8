/**
 * A virtio-blk request completed through MSI-X (guests/msix.asm): the guest
 * programs the table, enables MSI-X, takes the interrupt on its local APIC,
 * sees a masked vector's pending bit and the message after unmasking; with
 * our APICs (irqchip "user") and KVM's (KVM_SIGNAL_MSI, irqchip "kernel"),
 * and the same under QEMU's virtio-blk-pci (TCG) as the oracle.
 */
import assert from "node:assert/strict";
import { compareSerial, debugExitStatus, MSIX_LINES } from "../guests/expectations.ts";
import { guestPath } from "../guests/images.ts";
import { bootGuest, kvmAvailable, NO_KVM_MESSAGE } from "./boot.ts";
import { isQemuInstalled, QEMU_BINARY, qemuArgs } from "./qemu.ts";

const noKvm = !kvmAvailable();
if (noKvm) console.warn(`msix guest: ${NO_KVM_MESSAGE}`);
const STATUS = debugExitStatus(0x32);

async function image(): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "smp-msix-", suffix: ".img" });
  const bytes = new Uint8Array(128 * 512);
  bytes.set(new TextEncoder().encode("host sector zero"));
  await Deno.writeFile(path, bytes);
  return path;
}

for (const irqchip of ["user", "kernel"] as const) {
  Deno.test({
    name: `msix guest: virtio-blk completes through MSI-X, masking holds it (irqchip ${irqchip})`,
    ignore: noKvm,
    async fn() {
      const path = await image();
      try {
        const r = await bootGuest({
          kernel: guestPath("msix"),
          cmdline: "modern=1",
          irqchip,
          disks: [{ path, format: "raw", readonly: false }],
          timeoutMs: 60_000,
        });
        const diff = compareSerial(MSIX_LINES, r.serial);
        assert.equal(diff, undefined, `${diff}\n--- serial ---\n${r.serial}`);
        assert.equal(r.status, STATUS, JSON.stringify(r.outcome));
      } finally {
        await Deno.remove(path);
      }
    },
  });
}

Deno.test({
  name: "msix guest under QEMU (virtio-blk-pci, TCG) prints the same",
  ignore: !isQemuInstalled(),
  async fn() {
    const path = await image();
    try {
      const args = [
        ...qemuArgs({ kernel: guestPath("msix"), cmdline: "modern=1", accel: "tcg" }),
        "-drive",
        `file=${path},format=raw,if=none,id=d0`,
        "-device",
        "virtio-blk-pci,drive=d0",
      ];
      // QEMU completes requests on another thread while the guest polls for a bounded
      // time: on a loaded host one run can miss, so take the first of three that matches.
      let last = "";
      for (let attempt = 0; attempt < 3; attempt++) {
        const out = await new Deno.Command(QEMU_BINARY, {
          args,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        last = new TextDecoder().decode(out.stdout);
        if (compareSerial(MSIX_LINES, last) === undefined && out.code === STATUS) return;
      }
      assert.equal(compareSerial(MSIX_LINES, last), undefined, last);
    } finally {
      await Deno.remove(path);
    }
  },
});
