import assert from "node:assert/strict";
import { inb, outb } from "./fakes.ts";
import { DebugCon, DEBUGCON_MAX_LINE } from "./debugcon.ts";

Deno.test("debugcon: reads 0xE9; lines reach the sink without CR; long lines are cut", () => {
  const lines: string[] = [];
  const con = new DebugCon((l) => lines.push(l));
  assert.equal(inb(con, 0), 0xe9);
  for (const c of "a\r\nbc\n") outb(con, 0, c.charCodeAt(0));
  assert.deepEqual(lines, ["a", "bc"]);
  for (let i = 0; i < DEBUGCON_MAX_LINE + 10; i++) outb(con, 0, 0x78);
  outb(con, 0, 0x0a);
  assert.equal(lines[2].length, DEBUGCON_MAX_LINE);
  outb(con, 0, 0x79);
  con.flush();
  assert.equal(lines[3], "y");
  const silent = new DebugCon();
  outb(silent, 0, 0x0a);
  silent.flush();
  assert.equal(inb(silent, 0), 0xe9);
});
