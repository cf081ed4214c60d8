/**
 * Helpers for tests that use network namespaces and taps: run `ip`, check
 * for a link, build an ARP request.
 *
 * @module
 */

/** Runs `ip ARGS`; throws with its stderr on failure. */
export function ip(...args: string[]): string {
  const r = new Deno.Command("ip", { args }).outputSync();
  if (!r.success) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(r.stderr)}`);
  }
  return new TextDecoder().decode(r.stdout);
}

/** Why tests that need taps and network namespaces cannot run here, if they cannot. */
export function netUnavailable(): string | undefined {
  try {
    Deno.openSync("/dev/net/tun", { read: true, write: true }).close();
    if (!new Deno.Command("ip", { args: ["netns", "list"] }).outputSync().success) {
      return "`ip netns` does not work";
    }
  } catch (e) {
    return `no tap or ip: ${e instanceof Error ? e.message : e}`;
  }
  return undefined;
}

/** Whether interface `name` exists in the current namespace. */
export function linkExists(name: string): boolean {
  return new Deno.Command("ip", { args: ["link", "show", "dev", name] }).outputSync().success;
}

/** A broadcast ARP request "who has `targetIp`, tell `senderIp`" from `mac`. */
export function arpRequest(mac: Uint8Array, senderIp: number[], targetIp: number[]): Uint8Array {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6);
  f.set(mac, 6);
  f.set([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1], 12);
  f.set(mac, 22);
  f.set(senderIp, 28);
  f.set(targetIp, 38);
  return f;
}
