import assert from "node:assert/strict";
import { DEMO_GUEST, GUEST_NAMES, guestPath } from "./images.ts";

const MB_HEADER_MAGIC = 0x1badb002;
const MB_FLAG_AOUT_KLUDGE = 1 << 16;
const LOAD_ADDR = 0x100000;

/** Finds and checks the Multiboot v1 header the way a loader does. */
function multibootHeader(image: Uint8Array) {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  for (let offset = 0; offset + 32 <= Math.min(image.length, 8192); offset += 4) {
    const magic = view.getUint32(offset, true);
    const flags = view.getUint32(offset + 4, true);
    const checksum = view.getUint32(offset + 8, true);
    if (magic !== MB_HEADER_MAGIC || ((magic + flags + checksum) >>> 0) !== 0) continue;
    const field = (i: number) => view.getUint32(offset + 12 + 4 * i, true);
    return {
      offset,
      flags,
      headerAddr: field(0),
      loadAddr: field(1),
      loadEndAddr: field(2),
      bssEndAddr: field(3),
      entryAddr: field(4),
    };
  }
  return undefined;
}

Deno.test("every guest image is a Multiboot a.out-kludge image loaded at 1 MiB", async () => {
  assert.ok(GUEST_NAMES.length >= 9);
  for (const name of GUEST_NAMES) {
    const image = await Deno.readFile(guestPath(name));
    const header = multibootHeader(image);
    assert.ok(header, `${name}: no Multiboot header`);
    assert.equal(header.flags, MB_FLAG_AOUT_KLUDGE, name);
    assert.equal(header.loadAddr, LOAD_ADDR, name);
    assert.equal(header.headerAddr - header.loadAddr, header.offset, name);
    assert.equal(header.loadEndAddr - header.loadAddr, image.length, `${name}: whole file loaded`);
    assert.ok(header.bssEndAddr >= header.loadEndAddr, name);
    assert.ok(
      header.entryAddr >= header.loadAddr && header.entryAddr < header.loadEndAddr,
      `${name}: entry inside the image`,
    );
  }
});

Deno.test("DEMO_GUEST is guests/bin/demo.bin", async () => {
  assert.deepEqual(DEMO_GUEST, await Deno.readFile(guestPath("demo")));
});

Deno.test("guestPath refuses names that are not plain guest names", () => {
  assert.throws(() => guestPath("../deno"), /Cannot name guest "..\/deno"/);
  assert.throws(() => guestPath(""), Error);
  assert.match(guestPath("hello"), /[/\\]guests[/\\]bin[/\\]hello\.bin$/);
});

function nasmInstalled(): boolean {
  try {
    return new Deno.Command("nasm", { args: ["-v"], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "guests/bin and images.ts are what build.sh makes from the sources",
  ignore: !nasmInstalled(),
  async fn() {
    const script = new URL("./build.sh", import.meta.url).pathname;
    const result = await new Deno.Command("bash", { args: [script, "--check"] }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    assert.equal(result.code, 0, stderr);
  },
});
