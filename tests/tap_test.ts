/**
 * Real tap devices (needs root and /dev/net/tun): "auto" creates vmmctlN,
 * which disappears with its fd; frames written to a tap moved into a
 * network namespace reach that namespace's kernel, whose ARP reply comes
 * back. No traffic leaves the namespace.
 */
import assert from "node:assert/strict";
import { openTap, type TapDevice } from "../net/tap.ts";
import { arpRequest, ip, linkExists } from "./netns.ts";

function canRun(): string | undefined {
  try {
    Deno.openSync("/dev/net/tun", { read: true, write: true }).close();
  } catch {
    return "/dev/net/tun cannot be opened";
  }
  try {
    const r = new Deno.Command("ip", { args: ["netns", "list"] }).outputSync();
    if (!r.success) return "`ip netns` does not work here";
  } catch {
    return "`ip` is not installed";
  }
  return undefined;
}

const why = canRun();
if (why) console.warn(`tap tests skipped: ${why}`);

Deno.test({
  name: "tap: auto creates vmmctlN, non-persistent: it disappears when closed",
  ignore: why !== undefined,
  fn() {
    const tap = openTap("auto");
    try {
      assert.match(tap.name, /^vmmctl\d+$/);
      assert.ok(linkExists(tap.name));
      assert.equal(tap.read(new Uint8Array(2048)), undefined, "nothing to read: no block");
    } finally {
      tap.close();
    }
    assert.equal(linkExists(tap.name), false);
  },
});

Deno.test({
  name: "tap: an ARP request into a namespace gets the kernel's reply back",
  ignore: why !== undefined,
  async fn() {
    const ns = `vmmctl-tap-${Deno.pid}`;
    const name = `vmt${Deno.pid % 100000}`;
    ip("netns", "add", ns);
    let tap: TapDevice | undefined;
    try {
      tap = openTap(name);
      assert.equal(tap.name, name);
      ip("link", "set", "dev", name, "netns", ns);
      ip("-n", ns, "addr", "add", "10.77.0.1/24", "dev", name);
      ip("-n", ns, "link", "set", "dev", name, "up");
      const mac = Uint8Array.of(0xfe, 0xe1, 0xba, 0xd0, 0x00, 0x09);
      const buf = new Uint8Array(2048);
      let reply: Uint8Array | undefined;
      for (let i = 0; i < 100 && !reply; i++) {
        if (i % 10 === 0) assert.ok(tap.write(arpRequest(mac, [10, 77, 0, 2], [10, 77, 0, 1])));
        await new Promise((r) => setTimeout(r, 20));
        for (let n = tap.read(buf); n !== undefined; n = tap.read(buf)) {
          const f = buf.subarray(0, n);
          if (f[12] === 0x08 && f[13] === 0x06 && f[21] === 2) reply = f.slice();
        }
      }
      assert.ok(reply, "no ARP reply came back");
      assert.deepEqual([...reply.subarray(0, 6)], [...mac], "addressed to us");
      assert.deepEqual([...reply.subarray(28, 32)], [10, 77, 0, 1], "from the namespace's address");
      assert.match(
        ip("-n", ns, "neigh", "show", "dev", name),
        /10\.77\.0\.2 lladdr fe:e1:ba:d0:00:09/,
      );
    } finally {
      tap?.close();
      ip("netns", "del", ns);
    }
  },
});
