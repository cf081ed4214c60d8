/**
 * Child process of the crash test: writes and flushes region A, says so,
 * then keeps writing region C (flushing now and then) until it is killed.
 *
 * Usage: deno run --allow-read --allow-write crash_child.ts IMAGE FORMAT
 */
import { openDiskImage } from "../image.ts";
import { CRASH_REGION_A, CRASH_REGION_C, crashPattern } from "./crash_plan.ts";

const [path, format] = Deno.args;
const disk = openDiskImage(path, { format: format as "raw" | "qcow2", readonly: false });
for (const [offset, length] of CRASH_REGION_A) disk.write(offset, crashPattern(offset, length, 1));
disk.flush();
console.log("flushed");
let round = 0;
const deadline = Date.now() + 20_000; // never outlive a broken parent for long
while (Date.now() < deadline) {
  for (const [offset, length] of CRASH_REGION_C) {
    disk.write(offset + (round % 7) * 512, crashPattern(offset, length, round + 2));
  }
  if (round % 3 === 0) disk.flush();
  if (round === 2) console.log("busy");
  round++;
}
disk.close();
