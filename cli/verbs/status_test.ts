import assert from "node:assert/strict";
import { guestResidentBytes } from "./status.ts";

Deno.test("status: CURMEM counts the resident pages of guest-RAM-like mappings only", async () => {
  if (Deno.build.os !== "linux") return;
  // Measured in a process of its own: in the parallel test run, another test's guest RAM
  // (mapped with the same flags) can sit next to this mapping and merge with it.
  const script = `
    import { openLibc } from ${JSON.stringify(new URL("../../ffi/libc.ts", import.meta.url).href)};
    import { guestResidentBytes } from ${
    JSON.stringify(new URL("./status.ts", import.meta.url).href)
  };
    const libc = openLibc();
    const c = libc.consts;
    const size = 8 * 1024 * 1024;
    const before = guestResidentBytes(Deno.pid, size) ?? 0;
    // Mapped the way the KVM back-end maps guest RAM; 100 pages touched.
    const m = libc.mmap(size, c.PROT_READ | c.PROT_WRITE,
      c.MAP_PRIVATE | c.MAP_ANONYMOUS | c.MAP_NORESERVE, -1, 0);
    for (let i = 0; i < 100; i++) m.bytes[i * 4096] = 1;
    const after = guestResidentBytes(Deno.pid, size);
    libc.munmap(m);
    console.log(JSON.stringify({ before, after, size }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const { before, after, size } = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.ok(after - before >= 100 * 4096, `${before} -> ${after}`);
  assert.ok(after <= size);
  assert.equal(guestResidentBytes(2 ** 22 + 7, size), null, "no such process");
});
