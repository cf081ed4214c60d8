import assert from "node:assert/strict";
import { desEncryptBlock, vncKey, vncResponse } from "./vnc_auth.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => Uint8Array.from(s.match(/../g)!, (x) => parseInt(x, 16));

Deno.test("vnc auth: DES of the textbook example block", () => {
  assert.equal(
    hex(desEncryptBlock(unhex("133457799bbcdff1"), unhex("0123456789abcdef"))),
    "85e813540f0ab405",
  );
});

Deno.test("vnc auth: DES agrees with OpenSSL on random keys and blocks", async (t) => {
  const probe = new Deno.Command("openssl", { args: ["version"] }).outputSync();
  if (!probe.success) {
    return void (await t.step({ name: "openssl missing", ignore: true, fn() {} }));
  }
  for (let i = 0; i < 8; i++) {
    const key = crypto.getRandomValues(new Uint8Array(8));
    const block = crypto.getRandomValues(new Uint8Array(8));
    const child = new Deno.Command("openssl", {
      args: [
        "enc",
        "-des-ecb",
        "-provider",
        "legacy",
        "-provider",
        "default",
        "-K",
        hex(key),
        "-nopad",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(block);
    await w.close();
    const out = await child.output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.equal(hex(desEncryptBlock(key, block)), hex(out.stdout), `key ${hex(key)}`);
  }
});

Deno.test("vnc auth: the key is the password's bytes bit-reversed, 8 at most", () => {
  assert.equal(hex(vncKey("a")), "8600000000000000");
  assert.equal(hex(vncKey("123456789")), hex(vncKey("12345678")));
  const challenge = new Uint8Array(16).map((_, i) => i);
  const r = vncResponse("secret", challenge);
  assert.equal(r.length, 16);
  assert.equal(
    hex(r.subarray(0, 8)),
    hex(desEncryptBlock(vncKey("secret"), challenge.subarray(0, 8))),
  );
});
