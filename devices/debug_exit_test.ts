import assert from "node:assert/strict";
import { inN, outb, outN } from "./fakes.ts";
import { DebugExit } from "./debug_exit.ts";

function setup() {
  const codes: number[] = [];
  return { port: new DebugExit((c) => codes.push(c)), codes };
}

Deno.test("debug-exit: a byte write v exits with (v << 1) | 1", () => {
  const { port, codes } = setup();
  outb(port, 0, 0x00);
  outb(port, 0, 0x10);
  outb(port, 0, 0xff);
  assert.deepEqual(codes, [1, 0x21, 0x1ff]);
});

Deno.test("debug-exit: any width and offset; the value is the access's value", () => {
  const { port, codes } = setup();
  outN(port, 0, 2, 0x1234);
  outN(port, 2, 2, 0x0001);
  outN(port, 0, 4, 0x7fffffff);
  outN(port, 0, 4, 0xffffffff);
  assert.deepEqual(codes, [0x2469, 3, 0xffffffff, 0xffffffff]);
});

Deno.test("debug-exit: reads return 0 and do not exit", () => {
  const { port, codes } = setup();
  assert.equal(inN(port, 0, 4), 0);
  assert.deepEqual(codes, []);
});
