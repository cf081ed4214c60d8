/**
 * `vmmctl import [-o DIR] [--force] FILE`: convert vmd's vm.conf(5) into one
 * vmmctl config per `vm` block (`DIR/NAME.toml`), warning on stderr about
 * everything vm.conf says that vmmctl cannot express.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { type Command, EXIT_FAILURE, UsageError } from "../command.ts";
import { importVmConf } from "../../config/vmconf/convert.ts";

export const importCommand: Command = {
  name: "import",
  summary: "convert an OpenBSD vm.conf into one vmmctl config per VM (DIR/NAME.toml)",
  args: "FILE",
  description: [
    "Every vm block becomes NAME.toml (vm.conf's default memory, 512M, when none is given).",
    "What has no vmmctl equivalent (switches, cdrom, boot device, rdomain, instances,",
    "local interfaces, ...) is named in a warning on stderr and a comment in the file.",
    "Then `vmmctl load DIR` makes the VMs known to `start` and `status`.",
  ].join("\n"),
  flags: {
    output: {
      type: "string",
      short: "o",
      value: "DIR",
      description: "where to write NAME.toml (default: the current directory)",
    },
    force: { type: "boolean", short: "f", description: "overwrite existing NAME.toml files" },
  },
  run(positionals, flags) {
    if (positionals.length !== 1) throw new UsageError("import needs one vm.conf FILE");
    const path = resolve(positionals[0]);
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (e) {
      console.error(`vmmctl: cannot read "${path}": ${e instanceof Error ? e.message : e}`);
      return Promise.resolve(EXIT_FAILURE);
    }
    const result = importVmConf(text, { path });
    for (const w of result.warnings) console.error(`vmmctl: warning: ${w}`);
    for (const e of result.errors) console.error(`vmmctl: ${e}`);
    const dir = resolve((flags.output as string | undefined) ?? ".");
    Deno.mkdirSync(dir, { recursive: true });
    let status = result.errors.length ? EXIT_FAILURE : 0;
    for (const vm of result.vms) {
      const out = join(dir, `${vm.name}.toml`);
      try {
        Deno.writeTextFileSync(out, vm.toml, { createNew: flags.force !== true });
        console.log(`vmmctl: wrote ${out}`);
      } catch (e) {
        if (e instanceof Deno.errors.AlreadyExists) {
          console.error(`vmmctl: "${out}" exists; use --force to overwrite it`);
        } else {
          console.error(`vmmctl: cannot write "${out}": ${e instanceof Error ? e.message : e}`);
        }
        status = EXIT_FAILURE;
      }
    }
    return Promise.resolve(status);
  },
};
