/**
 * Loads the kernel file named by argv[0] into a 64 MiB guest (no hypervisor:
 * the loaders write through an anonymous GuestMemory) and prints, as JSON,
 * the error it got and the process's peak RSS, so a test can bound the
 * memory a hostile gzip kernel costs.
 *
 * @module
 */

import { GuestMemory } from "../../core/guest_memory.ts";
import { memoryLayout } from "../../core/layout.ts";
import { loadKernel } from "../../loaders/detect.ts";
import { readImageFile } from "../../loaders/image_file.ts";

const RAM = 64 * 2 ** 20;
const { ram, e820 } = memoryLayout(RAM);
let message = "loaded";
const t0 = performance.now();
try {
  const data = readImageFile(Deno.args[0], RAM, "kernel");
  loadKernel(data, { memory: GuestMemory.anonymous(ram), e820, cmdline: "", name: "k" });
} catch (e) {
  message = e instanceof Error ? e.message : String(e);
}
const ms = performance.now() - t0;
const hwm = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
console.log(JSON.stringify({ message, ms, peakRssBytes: Number(hwm?.[1]) * 1024 }));
