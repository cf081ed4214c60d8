/**
 * The backing-file policy: a VM owner cannot read host files through a
 * backing file name, formats are never probed, loops and FIFOs are refused
 * at once, chains are bounded.
 */
import assert from "node:assert/strict";
import { DiskFormatError, DiskOpenError } from "./errors.ts";
import { backingPolicyFor, openDiskImage } from "./image.ts";
import { mayRead, userCredentials } from "./owner_access.ts";
import { QCOW2_MAX_BACKING_CHAIN } from "./qcow2_backing.ts";
import { QCOW2_EXT_BACKING_FORMAT, QCOW2_HDR_HEADER_LENGTH } from "./qcow2_format.ts";
import { HAVE_QEMU_TOOLS, readAll, run, withTempDir } from "./test_helpers.ts";

const ignore = !HAVE_QEMU_TOOLS;
const IS_ROOT = Deno.uid() === 0;
/** A user who is not root; the tests make files only root may read. */
const OTHER = userCredentials("nobody") ?? { name: "nobody", uid: 65534, gids: [65534] };

function overlay(path: string, backing: string, format?: string): void {
  const args = ["create", "-q", "-f", "qcow2", "-u", "-b", backing];
  if (format !== undefined) args.push("-F", format);
  run("qemu-img", [...args, path, "1M"]);
}

/** Turns the image's backing format extension into an unknown one, which readers skip. */
function dropBackingFormat(path: string): void {
  const bytes = Deno.readFileSync(path);
  const v = new DataView(bytes.buffer);
  let at = v.getUint32(QCOW2_HDR_HEADER_LENGTH);
  while (v.getUint32(at) !== QCOW2_EXT_BACKING_FORMAT) {
    at += 8 + Math.ceil(v.getUint32(at + 4) / 8) * 8;
  }
  v.setUint32(at, 0x1badcafe);
  Deno.writeFileSync(path, bytes);
}

function openError(path: string, owner?: string): Error {
  const started = performance.now();
  try {
    openDiskImage(path, {
      format: "qcow2",
      readonly: false,
      backing: backingPolicyFor(owner === undefined ? undefined : { user: owner }),
    }).close();
  } catch (e) {
    assert.ok(performance.now() - started < 2000, "refused at once");
    return e as Error;
  }
  assert.fail(`${path} opened`);
}

Deno.test({
  name: "backing repro: a VM owner cannot read a root-only file (the /etc/shadow hole)",
  ignore: ignore || !IS_ROOT,
  fn: withTempDir((dir) => {
    Deno.chmodSync(dir, 0o755);
    const secret = `${dir}/shadow`;
    Deno.writeTextFileSync(secret, "root:*:19000:0:99999:7:::\n".padEnd(512, "\n"));
    Deno.chownSync(secret, 0, 0);
    Deno.chmodSync(secret, 0o600);
    overlay(`${dir}/ov.qcow2`, secret, "raw");
    // Without an owner (root's own VM) it opens, and reads the file: root could anyway.
    const disk = openDiskImage(`${dir}/ov.qcow2`, { format: "qcow2", readonly: true });
    assert.match(new TextDecoder().decode(readAll(disk).subarray(0, 4)), /root/);
    disk.close();
    const e = openError(`${dir}/ov.qcow2`, OTHER.name);
    assert.ok(e instanceof DiskOpenError, String(e));
    assert.match(e.message, /owner could not read it/);
    assert.match(e.message, new RegExp(`cannot read ${secret}`));
    // Readable by others: opens. Behind a folder the owner cannot search: refused.
    Deno.chmodSync(secret, 0o644);
    openDiskImage(`${dir}/ov.qcow2`, {
      format: "qcow2",
      readonly: true,
      backing: backingPolicyFor({ user: OTHER.name }),
    }).close();
    Deno.mkdirSync(`${dir}/private`, { mode: 0o700 });
    Deno.renameSync(secret, `${dir}/private/shadow`);
    overlay(`${dir}/ov2.qcow2`, `${dir}/private/shadow`, "raw");
    assert.match(openError(`${dir}/ov2.qcow2`, OTHER.name).message, /cannot search .*private/);
    // A symbolic link the owner can read does not help: the target is checked.
    Deno.symlinkSync(`${dir}/private/shadow`, `${dir}/link`);
    overlay(`${dir}/ov3.qcow2`, `${dir}/link`, "raw");
    assert.match(openError(`${dir}/ov3.qcow2`, OTHER.name).message, /cannot search .*private/);
    // An allow-list entry overrides the owner's permissions.
    openDiskImage(`${dir}/ov2.qcow2`, {
      format: "qcow2",
      readonly: true,
      backing: backingPolicyFor({ user: OTHER.name }, [`${dir}/private`]),
    }).close();
  }),
});

Deno.test("owner_access: mode bits by owner, group, others, like the kernel", () => {
  const dir = Deno.makeTempDirSync({ prefix: "disk-access-" });
  try {
    Deno.chmodSync(dir, 0o711);
    const f = `${dir}/f`;
    Deno.writeTextFileSync(f, "x");
    const info = Deno.statSync(f);
    const owner = { name: "o", uid: info.uid!, gids: [] as number[] };
    const group = { name: "g", uid: info.uid! + 1, gids: [info.gid!] };
    const other = { name: "x", uid: info.uid! + 1, gids: [] as number[] };
    const cases: [number, boolean, boolean, boolean][] = [
      [0o400, true, false, false],
      [0o040, false, true, false],
      [0o004, false, false, true],
      [0o044, false, true, true], // the owner's own bits deny even if others may
    ];
    for (const [mode, o, g, x] of cases) {
      Deno.chmodSync(f, mode);
      if (owner.uid !== 0) assert.equal(mayRead(f, owner), o, `owner, mode ${mode.toString(8)}`);
      assert.equal(mayRead(f, group), g, `group, mode ${mode.toString(8)}`);
      assert.equal(mayRead(f, other), x, `other, mode ${mode.toString(8)}`);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("owner_access: users and their groups come from passwd and group files", () => {
  const dir = Deno.makeTempDirSync({ prefix: "disk-access-" });
  try {
    Deno.writeTextFileSync(
      `${dir}/passwd`,
      "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/:/bin/sh\n",
    );
    Deno.writeTextFileSync(`${dir}/group`, "alice:x:1001:\nvmm:x:1500:bob,alice\nother:x:7:bob\n");
    const files = { passwd: `${dir}/passwd`, group: `${dir}/group` };
    assert.deepEqual(userCredentials("alice", files), {
      name: "alice",
      uid: 1001,
      gids: [1001, 1500],
    });
    assert.equal(userCredentials("mallory", files), undefined);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test({
  name: "backing repro: an A -> B -> A loop is refused at once, naming the chain",
  ignore,
  fn: withTempDir((dir) => {
    run("qemu-img", ["create", "-q", "-f", "qcow2", `${dir}/b.qcow2`, "1M"]);
    overlay(`${dir}/a.qcow2`, "b.qcow2", "qcow2");
    run("qemu-img", ["rebase", "-u", "-F", "qcow2", "-b", "a.qcow2", `${dir}/b.qcow2`]);
    const e = openError(`${dir}/a.qcow2`);
    assert.ok(e instanceof DiskFormatError, String(e));
    assert.match(e.message, /loops \(".*a\.qcow2" -> ".*b\.qcow2" -> ".*a\.qcow2"\)/);
    // A hard link is the same file: found by identity, not by name.
    Deno.linkSync(`${dir}/a.qcow2`, `${dir}/a2.qcow2`);
    run("qemu-img", ["rebase", "-u", "-F", "qcow2", "-b", "a2.qcow2", `${dir}/b.qcow2`]);
    assert.match(openError(`${dir}/a.qcow2`).message, /loops/);
  }),
});

Deno.test({
  name: "backing repro: a FIFO backing file is refused at once, before it is opened",
  ignore,
  fn: withTempDir((dir) => {
    run("mkfifo", [`${dir}/fifo`]);
    overlay(`${dir}/top.qcow2`, "fifo", "raw");
    const e = openError(`${dir}/top.qcow2`);
    assert.ok(e instanceof DiskOpenError, String(e));
    assert.match(e.message, /is a FIFO: backing files must be regular files/);
    overlay(`${dir}/dev.qcow2`, "/dev/zero", "raw");
    assert.match(openError(`${dir}/dev.qcow2`).message, /character device/);
  }),
});

Deno.test({
  name: "backing files are never probed: no recorded format reads raw, a qcow2 header is refused",
  ignore,
  fn: withTempDir((dir) => {
    const base = new Uint8Array(1024 * 1024).fill(0x61);
    Deno.writeFileSync(`${dir}/base.raw`, base);
    overlay(`${dir}/top.qcow2`, "base.raw", "raw");
    dropBackingFormat(`${dir}/top.qcow2`);
    const disk = openDiskImage(`${dir}/top.qcow2`, { format: "qcow2", readonly: true });
    assert.deepEqual(readAll(disk), base);
    disk.close();
    // A "raw" base whose first bytes a guest made into a qcow2 header naming /etc/passwd.
    run("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-b",
      "/etc/passwd",
      "-F",
      "raw",
      `${dir}/evil`,
    ]);
    overlay(`${dir}/top2.qcow2`, "evil", "raw");
    dropBackingFormat(`${dir}/top2.qcow2`);
    const e = openError(`${dir}/top2.qcow2`);
    assert.ok(e instanceof DiskFormatError, String(e));
    assert.match(e.message, /never probed/);
    assert.match(e.message, /qemu-img rebase -u -F qcow2/);
  }),
});

Deno.test({
  name: `backing chains longer than ${QCOW2_MAX_BACKING_CHAIN} images are refused`,
  ignore,
  fn: withTempDir((dir) => {
    run("qemu-img", ["create", "-q", "-f", "qcow2", `${dir}/0.qcow2`, "1M"]);
    for (let i = 1; i <= QCOW2_MAX_BACKING_CHAIN; i++) {
      overlay(`${dir}/${i}.qcow2`, `${i - 1}.qcow2`, "qcow2");
    }
    const top = QCOW2_MAX_BACKING_CHAIN - 1;
    openDiskImage(`${dir}/${top}.qcow2`, { format: "qcow2", readonly: true }).close();
    const e = openError(`${dir}/${QCOW2_MAX_BACKING_CHAIN}.qcow2`);
    assert.match(e.message, new RegExp(`longer than ${QCOW2_MAX_BACKING_CHAIN}`));
  }),
});
