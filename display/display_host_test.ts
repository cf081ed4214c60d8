import assert from "node:assert/strict";
import { DisplayHost } from "./display_host.ts";
import { parseListenAddress } from "./listen.ts";
import { INPUT, openVgaShared } from "../devices/vga/shared.ts";
import { Vga } from "../devices/vga/vga.ts";
import { setTextMode3 } from "../devices/vga/text_mode.ts";
import { keyByCode } from "../devices/ps2_keymap.ts";

Deno.test("display host: listen addresses", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1:5900"), {
    kind: "tcp",
    hostname: "127.0.0.1",
    port: 5900,
    loopback: true,
  });
  assert.deepEqual(parseListenAddress("[::1]:80"), {
    kind: "tcp",
    hostname: "::1",
    port: 80,
    loopback: true,
  });
  assert.equal((parseListenAddress("0.0.0.0:5900") as { loopback: boolean }).loopback, false);
  assert.deepEqual(parseListenAddress("/run/vm.vnc"), { kind: "unix", path: "/run/vm.vnc" });
  assert.throws(() => parseListenAddress("5900"), /HOST:PORT/);
  assert.throws(() => parseListenAddress("h:70000"), /at most 65535/);
});

Deno.test("display host: renders what the device wrote, and queues input for the vCPU thread", () => {
  let wakes = 0;
  const host = new DisplayHost({ type: "vga", serial: false }, "t", () => wakes++, () => {});
  assert.equal(host.shared.vramAddress % 4096n, 0n, "VRAM starts on a page");
  // The vCPU side: a VGA over the same shared memory.
  const views = openVgaShared(host.shared);
  const vga = new Vga({ vram: views.vram, state: views.state });
  setTextMode3(vga);
  vga.window.write(0x18000, new TextEncoder().encode("O\x07K\x07"));
  assert.equal(host.screendumpText(), "OK\n");
  assert.deepEqual([host.frame().width, host.frame().height], [720, 400]);
  const png = host.screendumpPng();
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  host.input.key(keyByCode("KeyK")!, true);
  host.input.pointer(10, 10, 4); // right button (RFB bit 2) is PS/2 bit 1
  const events: number[][] = [];
  views.input.drain((e) => events.push([...e]));
  assert.deepEqual(events, [
    [INPUT.KEY, keyByCode("KeyK")!.index, 1, 0],
    [INPUT.MOUSE, 10, -10, 2],
  ]);
  assert.equal(wakes, 2);
});
