/**
 * vmmctl: a virtual machine monitor for Linux KVM and OpenBSD vmm(4).
 *
 * `deno run --allow-all main.ts up vm.toml`; see README.md.
 *
 * @module
 */

import { main } from "./cli/main.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
