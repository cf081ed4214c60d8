import assert from "node:assert/strict";
import { relative } from "node:path";
import { parse } from "smol-toml";
import { formatConfigError, loadConfigFile, parseConfig } from "./parse.ts";
import { normalizedJson, normalizedToml } from "./normalize.ts";
import { suggestName } from "./suggest.ts";
import type { VmConfig } from "./schema.ts";

const TESTDATA = new URL("./testdata", import.meta.url).pathname.replace(/\/$/, "");

function golden(name: string): string {
  return Deno.readTextFileSync(`${TESTDATA}/${name}`).replaceAll("{{DIR}}", TESTDATA);
}

function parseTestdata(name: string) {
  const source = `${TESTDATA}/${name}`;
  return parseConfig(Deno.readTextFileSync(source), { baseDir: TESTDATA, source });
}

const tomlFiles = [...Deno.readDirSync(TESTDATA)]
  .filter((e) => e.isFile && e.name.endsWith(".toml"))
  .map((e) => e.name)
  .sort();

Deno.test("golden: the testdata folder has both kinds of cases", () => {
  assert.ok(tomlFiles.filter((n) => n.startsWith("pass-")).length >= 5);
  assert.ok(tomlFiles.filter((n) => n.startsWith("fail-")).length >= 30);
  for (const name of tomlFiles) assert.match(name, /^(pass|fail)-/);
});

for (const name of tomlFiles.filter((n) => n.startsWith("pass-"))) {
  Deno.test(`golden: ${name} parses to ${name.replace(".toml", ".json")}`, () => {
    const { config, errors } = parseTestdata(name);
    assert.deepEqual(errors.map(formatConfigError), []);
    assert.ok(config !== undefined);
    assert.equal(normalizedJson(config), golden(name.replace(".toml", ".json")).trimEnd());
  });

  Deno.test(`golden: ${name} survives normalizedToml and back`, () => {
    const { config } = parseTestdata(name);
    assert.ok(config !== undefined);
    const text = normalizedToml(config);
    // Parsed from another folder: every path in the normalized text is absolute.
    const again = parseConfig(text, { baseDir: "/", source: config.source });
    assert.deepEqual(again.errors.map(formatConfigError), []);
    assert.deepEqual(again.config, config);
    assert.equal(normalizedToml(again.config!), text);
  });
}

for (const name of tomlFiles.filter((n) => n.startsWith("fail-"))) {
  Deno.test(`golden: ${name} fails with ${name.replace(".toml", ".txt")}`, () => {
    const { config, errors } = parseTestdata(name);
    const expected = golden(name.replace(".toml", ".txt")).trimEnd().split("\n");
    assert.deepEqual(errors.map(formatConfigError), expected);
    assert.equal(config, undefined);
  });
}

Deno.test("formatConfigError: with and without a line", () => {
  assert.equal(
    formatConfigError({ path: "vm.memory", line: 3, message: 'cannot parse size "512Q"' }),
    'vm.memory (line 3): cannot parse size "512Q"',
  );
  assert.equal(
    formatConfigError({ path: "boot.kernel", message: "required" }),
    "boot.kernel: required",
  );
});

Deno.test("parseConfig: defaults are the schema's", () => {
  const { config } = parseConfig('[vm]\nname = "d"\n[boot]\nkernel = "k"\n', {
    baseDir: "/base",
    checkFiles: false,
  });
  assert.deepEqual(
    config,
    {
      vm: { name: "d", memoryBytes: 256 * 1024 * 1024, vcpus: 1, accel: "auto", irqchip: "user" },
      boot: { kernel: "/base/k", cmdline: "" },
      disks: [],
      interfaces: [],
      console: { serial: "stdio" },
      debug: {},
    } satisfies VmConfig,
  );
});

Deno.test("parseConfig: checkFiles false skips file checks but still resolves paths", () => {
  const text = [
    '[vm]\nname = "nofiles"',
    '[boot]\nkernel = "missing/vmlinuz"\ninitrd = "../initrd"',
    '[[disk]]\npath = "/nonexistent/disk.img"',
    '[console]\nserial = "file:no/such/folder/log"',
  ].join("\n");
  const checked = parseConfig(text, { baseDir: "/srv/vm" });
  assert.equal(checked.errors.length, 4);
  const { config, errors } = parseConfig(text, { baseDir: "/srv/vm", checkFiles: false });
  assert.deepEqual(errors, []);
  assert.equal(config?.boot.kernel, "/srv/vm/missing/vmlinuz");
  assert.equal(config?.boot.initrd, "/srv/initrd");
  assert.equal(config?.disks[0].path, "/nonexistent/disk.img");
  assert.deepEqual(config?.console, { serial: "file", path: "/srv/vm/no/such/folder/log" });
  assert.equal(config?.source, undefined);
});

Deno.test("parseConfig: errors carry path, line and message separately", () => {
  const { errors } = parseConfig('[vm]\nname = "x"\nvcpus = 65\n', {
    baseDir: "/",
    checkFiles: false,
  });
  assert.deepEqual(errors, [
    { path: "vm.vcpus", line: 3, message: "must be between 1 and 64, got 65" },
  ]);
});

Deno.test("parseConfig: memory limit follows accel, for both vmm(4) names", () => {
  for (const accel of ["openbsd", "openbsd-on-kvm"]) {
    const text = `[vm]\nname = "m"\naccel = "${accel}"\nmemory = "256G"\n[boot]\nkernel = "k"`;
    const { errors } = parseConfig(text, { baseDir: "/", checkFiles: false });
    assert.deepEqual(errors.map(formatConfigError), [
      `vm.memory (line 4): must be at most 128G with accel "${accel}" ` +
      `(vmm(4)'s VMM_MAX_VM_MEM_SIZE), got 256G`,
    ]);
  }
  for (const accel of ["kvm", "auto"]) {
    const text = `[vm]\nname = "m"\naccel = "${accel}"\nmemory = "256G"\n[boot]\nkernel = "k"`;
    const { config } = parseConfig(text, { baseDir: "/", checkFiles: false });
    assert.equal(config?.vm.memoryBytes, 256 * 1024 ** 3);
  }
});

Deno.test("parseConfig: memory as an integer byte count", () => {
  const text = '[vm]\nname = "m"\nmemory = 33554432\n[boot]\nkernel = "k"';
  const { config } = parseConfig(text, { baseDir: "/", checkFiles: false });
  assert.equal(config?.vm.memoryBytes, 32 * 1024 * 1024);
});

Deno.test("parseConfig: a file that is not readable", {
  // root reads everything, so this can only be shown as another user.
  ignore: Deno.uid() === 0,
}, () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/vmlinuz`, "k");
    Deno.chmodSync(`${dir}/vmlinuz`, 0o000);
    Deno.writeTextFileSync(`${dir}/disk.img`, "d");
    Deno.chmodSync(`${dir}/disk.img`, 0o444);
    const text = '[vm]\nname = "r"\n[boot]\nkernel = "vmlinuz"\n[[disk]]\npath = "disk.img"\n';
    const { errors } = parseConfig(text, { baseDir: dir });
    assert.deepEqual(errors.map(formatConfigError), [
      `boot.kernel (line 4): file "${dir}/vmlinuz" is not readable`,
      `disk[0].path (line 6): file "${dir}/disk.img" is not writable`,
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("loadConfigFile: resolves paths against the file's folder and records the source", () => {
  const { config, errors } = loadConfigFile(`${TESTDATA}/pass-minimal.toml`);
  assert.deepEqual(errors, []);
  assert.equal(config?.source, `${TESTDATA}/pass-minimal.toml`);
  assert.equal(config?.boot.kernel, `${TESTDATA}/files/vmlinuz`);
});

Deno.test("loadConfigFile: relative to the current directory", () => {
  const path = relative(Deno.cwd(), `${TESTDATA}/pass-minimal.toml`);
  assert.ok(!path.startsWith("/"));
  const { config } = loadConfigFile(path);
  assert.equal(config?.source, `${TESTDATA}/pass-minimal.toml`);
});

Deno.test("loadConfigFile: files that cannot be read are one (file) error", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeFileSync(`${dir}/bad.toml`, new Uint8Array([0x5b, 0x76, 0x6d, 0x5d, 0x0a, 0xff]));
    assert.deepEqual(loadConfigFile(`${dir}/missing.toml`), {
      errors: [{ path: "(file)", message: `file "${dir}/missing.toml" does not exist` }],
    });
    assert.deepEqual(loadConfigFile(dir), {
      errors: [{ path: "(file)", message: `file "${dir}" is a directory` }],
    });
    assert.deepEqual(loadConfigFile(`${dir}/bad.toml`), {
      errors: [{ path: "(file)", message: `file "${dir}/bad.toml" is not valid UTF-8` }],
    });
    assert.equal(
      formatConfigError(loadConfigFile(`${dir}/missing.toml`).errors[0]),
      `(file): file "${dir}/missing.toml" does not exist`,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("normalizedJson: schema key order whatever the input order", () => {
  const text = [
    "[console]",
    'serial = "pty"',
    "[boot]",
    'cmdline = "c"',
    'kernel = "k"',
    "[vm]",
    'irqchip = "kernel"',
    'owner = "bob"',
    'name = "order"',
  ].join("\n");
  const { config } = parseConfig(text, { baseDir: "/x", checkFiles: false });
  assert.ok(config);
  const json = normalizedJson(config);
  assert.deepEqual(Object.keys(JSON.parse(json)), [
    "vm",
    "boot",
    "disks",
    "interfaces",
    "console",
    "debug",
  ]);
  assert.deepEqual(Object.keys(JSON.parse(json).vm), [
    "name",
    "memoryBytes",
    "vcpus",
    "accel",
    "irqchip",
    "owner",
  ]);
  assert.deepEqual(Object.keys(JSON.parse(json).boot), ["kernel", "cmdline"]);
  assert.ok(json.startsWith('{\n  "vm": {\n    "name": "order",\n'));
});

Deno.test("normalizedToml: awkward strings round-trip", () => {
  const config: VmConfig = {
    vm: {
      name: "awkward",
      memoryBytes: 1024 * 1024 + 4096,
      vcpus: 2,
      accel: "openbsd",
      irqchip: "user",
      owner: { user: "alice", group: "staff" },
    },
    boot: {
      kernel: '/dir with spaces/"quoted"\\back',
      initrd: "/tab\there",
      cmdline: "line1\nline2 \x7f \u00e9 \u{1f600} #not-a-comment",
    },
    disks: [{ path: "/d'1", format: "qcow2", readonly: true, name: "d-1" }],
    interfaces: [{ tap: "tap_0.1", lladdr: "02:00:00:00:00:01", name: "n_1" }],
    console: { serial: "file", path: "/log s/c.log" },
    debug: { exitPort: 0 },
  };
  const text = normalizedToml(config);
  assert.ok(text.includes('memory = "1028K"\n'), text);
  assert.ok(text.includes("exit_port = 0x0\n"), text);
  const again = parseConfig(text, { baseDir: "/elsewhere", checkFiles: false });
  assert.deepEqual(again.errors, []);
  assert.deepEqual(again.config, config);
  // And it is TOML any parser takes, not just ours.
  assert.equal((parse(text) as { boot: { cmdline: string } }).boot.cmdline, config.boot.cmdline);
});

Deno.test("suggestName: case, aliases and distance", () => {
  const keys = ["name", "memory", "vcpus", "accel", "irqchip", "owner"];
  assert.equal(suggestName("memroy", keys), "memory");
  assert.equal(suggestName("memry", keys), "memory");
  assert.equal(suggestName("MEMORY", keys), "memory");
  assert.equal(suggestName("vcpu", keys), "vcpus");
  assert.equal(suggestName("acel", keys), "accel");
  assert.equal(suggestName("colour", keys), undefined);
  assert.equal(suggestName("x", ["vm"]), undefined);
  assert.equal(suggestName("mac", ["tap", "lladdr", "name"]), undefined);
  assert.equal(suggestName("mac", ["tap", "lladdr", "name"], { mac: "lladdr" }), "lladdr");
  assert.equal(suggestName("MAC", ["tap", "lladdr", "name"], { mac: "lladdr" }), "lladdr");
  assert.equal(suggestName("constructor", keys, {}), undefined);
  assert.equal(suggestName("vmm", ["vm", "boot"]), "vm");
});
