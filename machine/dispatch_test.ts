import assert from "node:assert/strict";
import { handleExit } from "./dispatch.ts";
import { Bus } from "../core/bus.ts";
import { RateLimitedLog } from "../core/device.ts";
import type { BusDevice } from "../core/device.ts";

function recorder(name: string, fill = 0x5a) {
  const calls: string[] = [];
  const dev: BusDevice = {
    name,
    read: (off, data) => {
      calls.push(`r${off}/${data.length}`);
      data.fill(fill);
    },
    write: (off, data) => calls.push(`w${off}=${[...data].join(",")}`),
  };
  return { dev, calls };
}

function setup() {
  const lines: string[] = [];
  const log = new RateLimitedLog(100, 1000, (l) => lines.push(l));
  const pio = new Bus("pio");
  const mmio = new Bus("mmio");
  const uart = recorder("uart");
  const mm = recorder("mm", 0x11);
  pio.insert(0x3f8, 8, uart.dev);
  mmio.insert(0xd000_0000, 0x1000, mm.dev);
  return { ctx: { pio, mmio, log }, uart, mm, lines };
}

Deno.test("dispatch: port I/O goes to the device at its offset, REP I/O once per element", () => {
  const { ctx, uart } = setup();
  const data = new Uint8Array(3);
  assert.deepEqual(
    handleExit({ kind: "io-in", port: 0x3fd, size: 1, count: 3, data }, ctx),
    { action: "complete" },
  );
  assert.deepEqual([...data], [0x5a, 0x5a, 0x5a]);
  handleExit(
    { kind: "io-out", port: 0x3f8, size: 1, count: 2, data: new Uint8Array([65, 66]) },
    ctx,
  );
  assert.deepEqual(uart.calls, ["r5/1", "r5/1", "r5/1", "w0=65", "w0=66"]);
});

Deno.test("dispatch: unmapped IN reads all ones, unmapped MMIO reads zeros, both logged", () => {
  const { ctx, lines } = setup();
  const pioData = new Uint8Array(4);
  handleExit({ kind: "io-in", port: 0x1234, size: 4, count: 1, data: pioData }, ctx);
  assert.deepEqual([...pioData], [0xff, 0xff, 0xff, 0xff]);
  const mmData = new Uint8Array(8).fill(7);
  handleExit({ kind: "mmio-read", gpa: 0xfee0_0000, data: mmData }, ctx);
  assert.deepEqual([...mmData], [0, 0, 0, 0, 0, 0, 0, 0]);
  handleExit({ kind: "mmio-write", gpa: 0x1, data: new Uint8Array(1) }, ctx);
  handleExit({ kind: "io-out", port: 0x1, size: 2, count: 1, data: new Uint8Array(2) }, ctx);
  assert.equal(lines.length, 4);
  assert.match(lines[0], /unmapped port 0x1234/);
  assert.match(lines[1], /unmapped MMIO 0xfee00000/);
});

Deno.test("dispatch: an access straddling the end of a device is not routed", () => {
  const { ctx, uart } = setup();
  const data = new Uint8Array(2);
  handleExit({ kind: "io-in", port: 0x3ff, size: 2, count: 1, data }, ctx);
  assert.deepEqual([...data], [0xff, 0xff]);
  assert.equal(uart.calls.length, 0);
});

Deno.test("dispatch: MMIO reaches the device, control exits map to actions", () => {
  const { ctx, mm } = setup();
  const data = new Uint8Array(4);
  handleExit({ kind: "mmio-read", gpa: 0xd000_0010, data }, ctx);
  assert.deepEqual([...data], [0x11, 0x11, 0x11, 0x11]);
  assert.deepEqual(mm.calls, ["r16/4"]);
  assert.deepEqual(handleExit({ kind: "halt" }, ctx), { action: "halt" });
  assert.deepEqual(handleExit({ kind: "interrupt-window" }, ctx), { action: "continue" });
  assert.deepEqual(handleExit({ kind: "interrupted" }, ctx), { action: "continue" });
  assert.deepEqual(handleExit({ kind: "shutdown", reason: "triple-fault" }, ctx), {
    action: "stop",
    reason: "triple-fault",
  });
  assert.deepEqual(handleExit({ kind: "fail", reason: "boom", raw: 17 }, ctx), {
    action: "fail",
    reason: "boom",
  });
});
