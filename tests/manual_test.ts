/**
 * The manual pages in man/: mdoc that mandoc's linter passes and `man -l`
 * renders, with every command of the CLI and every documented key in them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { COMMANDS } from "../cli/main.ts";

const MAN = new URL("../man/", import.meta.url).pathname;

function has(tool: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).outputSync().success;
  } catch {
    return false;
  }
}

async function render(page: string): Promise<string> {
  const out = await new Deno.Command("man", {
    args: ["-l", `${MAN}${page}`],
    env: { MANPAGER: "cat", PAGER: "cat", MANWIDTH: "100", LC_ALL: "C.UTF-8" },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  // Drop the formatter's overstrike bold and underline: "c BACKSPACE c".
  let text = "";
  for (const ch of new TextDecoder().decode(out.stdout)) {
    if (ch === "\b") text = text.slice(0, -1);
    else text += ch;
  }
  return text;
}

Deno.test({
  name: "manual: mandoc finds nothing to warn about in man/",
  ignore: !has("mandoc"),
  fn() {
    const out = new Deno.Command("mandoc", {
      args: ["-T", "lint", "-W", "warning", `${MAN}vmmctl.8`, `${MAN}vmmctl.toml.5`],
    }).outputSync();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(text, "");
    assert.equal(out.code, 0);
  },
});

Deno.test({
  name: "manual: man -l renders vmmctl(8) with every command, vmmctl.toml(5) with the keys",
  ignore: !has("man"),
  async fn() {
    const eight = await render("vmmctl.8");
    assert.match(eight, /^VMMCTL\(8\)/);
    assert.match(eight, /SYNOPSIS\n\s+vmmctl \[-v\] command \[arg \.\.\.\]/);
    // vmctl(8)'s commands, and vmmctl's own that the page describes.
    const verbs = [
      ...["console", "create", "load", "log", "pause", "receive", "reload", "reset", "send"],
      ...["start", "status", "stop", "unpause", "wait", "check", "reboot", "up", "help"],
    ];
    for (const name of verbs) {
      assert.ok(COMMANDS.some((c) => c.name === name) || name === "help", `no command ${name}`);
      assert.match(eight, new RegExp(`^\\s{5,}${name}\\b`, "m"), `command ${name}`);
    }
    assert.match(eight, /show is the same command/);
    assert.match(eight, /start name \[-cL\] \[-B device\] \[-b path\] \[-d disk\] \[-i count\]/);
    const five = await render("vmmctl.toml.5");
    for (
      const key of [
        "[vm]",
        "name",
        "memory",
        "vcpus",
        "accel",
        "irqchip",
        "owner",
        "[boot]",
        "kernel",
        "initrd",
        "cmdline",
        "[[disk]]",
        "path",
        "format",
        "readonly",
        "[[interface]]",
        "tap",
        "lladdr",
        "[console]",
        "serial",
        "[display]",
        "[debug]",
        "exit_port",
      ]
    ) {
      assert.ok(five.includes(key), `key ${key}`);
    }
  },
});
