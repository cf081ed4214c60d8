/**
 * Hostile kernel files through the whole loading path (file read, format
 * detection, loader), in a child process so its peak RSS can be bounded.
 */
import assert from "node:assert/strict";
import { createGzip } from "node:zlib";
import { le32, writeElf } from "../../loaders/test_helpers.ts";

const GiB = 2 ** 30;
const CHILD = new URL("./gzip_child.ts", import.meta.url).pathname;

/** gzip (one member, streamed) of `head` followed by `zeroBytes` zero bytes. */
async function gzipWithZeros(head: Uint8Array, zeroBytes: number): Promise<Uint8Array> {
  const z = createGzip({ level: 9 });
  const chunks: Uint8Array[] = [];
  z.on("data", (c: Uint8Array) => chunks.push(c));
  const done = new Promise((r) => z.on("end", r));
  z.write(head);
  const zero = new Uint8Array(2 ** 20);
  for (let left = zeroBytes; left > 0; left -= zero.length) {
    z.write(left >= zero.length ? zero : zero.subarray(0, left));
  }
  z.end();
  await done;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) out.set(c, (o += c.length) - c.length);
  return out;
}

async function loadInChild(data: Uint8Array) {
  const path = await Deno.makeTempFile({ prefix: "guest-gzip-kernel-" });
  try {
    await Deno.writeFile(path, data);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", CHILD, path],
      stdout: "piped",
    }).output();
    assert.ok(out.success);
    return JSON.parse(new TextDecoder().decode(out.stdout)) as {
      message: string;
      ms: number;
      peakRssBytes: number;
    };
  } finally {
    await Deno.remove(path);
  }
}

/** Peak RSS allowed: the 64 MiB cap (output doubling), Deno itself; before the fix it was > 2 GiB. */
const RSS_BOUND = 400 * 2 ** 20;

Deno.test("a 1 MB gzip of zeros (1 GiB inside) is refused at detection, never inflated whole", async () => {
  const gz = await gzipWithZeros(new Uint8Array(0), GiB);
  assert.ok(gz.length < 1.1e6 && gz.length > 0.9e6, String(gz.length));
  const r = await loadInChild(gz);
  assert.match(
    r.message,
    /^kernel "k": not a bzImage, ELF or Multiboot v1 image \(first bytes: 1f 8b/,
  );
  assert.ok(r.peakRssBytes < RSS_BOUND, `peak RSS ${r.peakRssBytes}`);
});

Deno.test("a gzipped OpenBSD-looking kernel that inflates past guest RAM is cut at guest RAM", async () => {
  const elf = writeElf({
    elfClass: 64,
    entry: 0x1001000n,
    segments: [{ vaddr: 0x1001000n, paddr: 0x1001000n, data: new Uint8Array(64).fill(0xf4) }],
    notes: [{ name: "OpenBSD", type: 1, desc: le32(0) }],
  });
  const gz = await gzipWithZeros(elf, GiB / 4);
  const r = await loadInChild(gz);
  assert.equal(
    r.message,
    'kernel "k": gzip data decompresses to more than guest RAM (64M); refused',
  );
  assert.ok(r.peakRssBytes < RSS_BOUND, `peak RSS ${r.peakRssBytes}`);
});
