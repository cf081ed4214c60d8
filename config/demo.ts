/**
 * The built-in demo VM that `vmmctl up` boots when no config is given: the
 * demo guest (guests/demo.asm, shipped inside the program) with 64 MiB.
 *
 * @module
 */

import type { VmConfig } from "./schema.ts";

/** The demo VM's config; its kernel image comes from `guests/images.ts`. */
export function demoConfig(): VmConfig {
  return {
    vm: { name: "demo", memoryBytes: 64 * 1024 * 1024, vcpus: 1, accel: "auto", irqchip: "user" },
    boot: { kernel: "(built-in demo guest)", cmdline: "" },
    disks: [],
    interfaces: [],
    console: { serial: "stdio" },
    debug: { exitPort: 0xf4 },
  };
}
