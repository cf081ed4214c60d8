import assert from "node:assert/strict";
import { openLibc } from "../../ffi/libc.ts";
import { guestResidentBytes } from "./status.ts";

Deno.test("status: CURMEM counts the resident pages of guest-RAM-like mappings only", () => {
  if (Deno.build.os !== "linux") return;
  const libc = openLibc();
  const c = libc.consts;
  const size = 8 * 1024 * 1024;
  const before = guestResidentBytes(Deno.pid, size) ?? 0;
  // Mapped the way the KVM back-end maps guest RAM; 100 pages touched.
  const m = libc.mmap(
    size,
    c.PROT_READ | c.PROT_WRITE,
    c.MAP_PRIVATE | c.MAP_ANONYMOUS | c.MAP_NORESERVE,
    -1,
    0,
  );
  try {
    for (let i = 0; i < 100; i++) m.bytes[i * 4096] = 1;
    const after = guestResidentBytes(Deno.pid, size)!;
    assert.ok(after - before >= 100 * 4096, `${before} -> ${after}`);
    assert.ok(after <= size);
  } finally {
    libc.munmap(m);
  }
  assert.equal(guestResidentBytes(2 ** 22 + 7, size), null, "no such process");
});
