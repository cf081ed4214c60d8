import assert from "node:assert/strict";
import { findKeyLines, formatPath } from "./key_lines.ts";

Deno.test("formatPath: keys, indices and quoted keys", () => {
  assert.equal(formatPath(["vm", "memory"]), "vm.memory");
  assert.equal(formatPath(["disk", 1, "path"]), "disk[1].path");
  assert.equal(formatPath(["disk", 0]), "disk[0]");
  assert.equal(formatPath(["vm", "a b"]), 'vm."a b"');
  assert.equal(formatPath(["vm", "a.b"]), 'vm."a.b"');
  assert.equal(formatPath(["exit_port"]), "exit_port");
  assert.equal(formatPath([]), "");
});

Deno.test("findKeyLines: tables, keys and arrays of tables", () => {
  const text = [
    "# comment [not] a header", // 1
    "[vm]", // 2
    'name = "x" # trailing [comment]', // 3
    "", // 4
    "[[disk]]", // 5
    'path = "a"', // 6
    "[[disk]]", // 7
    "  path = 'b'", // 8
    "readonly = true", // 9
    "[ console ]", // 10
    '"serial" = "pty"', // 11
  ].join("\n");
  const lines = findKeyLines(text);
  assert.deepEqual(Object.fromEntries(lines), {
    "vm": 2,
    "vm.name": 3,
    "disk": 5,
    "disk[0]": 5,
    "disk[0].path": 6,
    "disk[1]": 7,
    "disk[1].path": 8,
    "disk[1].readonly": 9,
    "console": 10,
    "console.serial": 11,
  });
});

Deno.test("findKeyLines: dotted keys, inline tables and arrays", () => {
  const text = [
    'vm = { name = "x", vcpus = 2 }', // 1
    'boot.kernel = "k"', // 2
    "disk = [", // 3
    '  { path = "a" },', // 4
    "  # a comment between entries", // 5
    '  { path = "b", format = "raw" },', // 6
    "]", // 7
    "[debug]", // 8
    "x.y.z = [1, [2, 3]]", // 9
  ].join("\n");
  const lines = findKeyLines(text);
  assert.equal(lines.get("vm"), 1);
  assert.equal(lines.get("vm.name"), 1);
  assert.equal(lines.get("vm.vcpus"), 1);
  assert.equal(lines.get("boot"), 2);
  assert.equal(lines.get("boot.kernel"), 2);
  assert.equal(lines.get("disk"), 3);
  assert.equal(lines.get("disk[0]"), 4);
  assert.equal(lines.get("disk[0].path"), 4);
  assert.equal(lines.get("disk[1]"), 6);
  assert.equal(lines.get("disk[1].format"), 6);
  assert.equal(lines.get("debug.x.y"), 9);
  assert.equal(lines.get("debug.x.y.z"), 9);
  assert.equal(lines.get("debug.x.y.z[1][0]"), 9);
});

Deno.test("findKeyLines: strings that look like TOML do not confuse it", () => {
  const text = [
    "[boot]", // 1
    'cmdline = """', // 2
    "[vm]", // 3
    'name = "inside"', // 4
    '"""', // 5
    "initrd = '''", // 6
    "[[disk]]'''", // 7
    'kernel = "a \\" [x] # y"', // 8
    "[vm]", // 9
    'name = """q"""""', // 10
    'owner = "o"', // 11
  ].join("\r\n");
  const lines = findKeyLines(text);
  assert.equal(lines.get("boot.cmdline"), 2);
  assert.equal(lines.get("boot.initrd"), 6);
  assert.equal(lines.get("boot.kernel"), 8);
  assert.equal(lines.get("vm"), 9);
  assert.equal(lines.get("vm.name"), 10);
  assert.equal(lines.get("vm.owner"), 11);
  assert.equal(lines.has("disk"), false);
});

Deno.test("findKeyLines: sub-tables of an array entry and nested arrays of tables", () => {
  const text = [
    "[[disk]]", // 1
    "[[disk]]", // 2
    "[disk.extra]", // 3
    "a = 1", // 4
    "[[disk.parts]]", // 5
    "[[disk.parts]]", // 6
    "b = 2", // 7
  ].join("\n");
  const lines = findKeyLines(text);
  assert.equal(lines.get("disk[1].extra"), 3);
  assert.equal(lines.get("disk[1].extra.a"), 4);
  assert.equal(lines.get("disk[1].parts[0]"), 5);
  assert.equal(lines.get("disk[1].parts[1].b"), 7);
});

Deno.test("findKeyLines: text that is not TOML gives what was found, no exception", () => {
  const lines = findKeyLines('[vm]\nname = "x"\n= broken\nvcpus = 1\n');
  assert.equal(lines.get("vm.name"), 2);
  assert.equal(lines.has("vm.vcpus"), false);
  assert.deepEqual(findKeyLines('a = "unterminated'), new Map([["a", 1]]));
  assert.deepEqual(findKeyLines(""), new Map());
});
