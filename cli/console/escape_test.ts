import assert from "node:assert/strict";
import { EscapeReader } from "./escape.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("escape: ~. at the start of a line detaches, elsewhere it is data", () => {
  const e = new EscapeReader();
  let r = e.feed(enc("echo a~.b\r"));
  assert.equal(dec(r.forward), "echo a~.b\r");
  assert.equal(r.detach, false);
  r = e.feed(enc("~.ignored"));
  assert.equal(dec(r.forward), "");
  assert.equal(r.detach, true);
});

Deno.test("escape: the first byte of the session is a line start; ~~ sends one tilde", () => {
  const e = new EscapeReader();
  assert.equal(dec(e.feed(enc("~~x")).forward), "~x");
  const f = new EscapeReader();
  assert.equal(dec(f.feed(enc("~a")).forward), "~a");
});

Deno.test("escape: a tilde split across reads still works", () => {
  const e = new EscapeReader();
  assert.equal(e.feed(enc("x\n~")).detach, false);
  const r = e.feed(enc("."));
  assert.equal(r.detach, true);
  assert.equal(r.forward.length, 0);
});

Deno.test("escape: ~^D detaches too; ~? and ~# are reported, not sent", () => {
  const e = new EscapeReader();
  const help = e.feed(enc("~?ls\r~#"));
  assert.equal(dec(help.forward), "ls\r");
  assert.equal(help.help, true);
  assert.equal(help.brk, true);
  assert.equal(help.detach, false);
  const d = e.feed(enc("\r~\x04rest"));
  assert.equal(dec(d.forward), "\r");
  assert.equal(d.detach, true);
});
