/**
 * Every fuzz target, by name. A new target (qcow2 metadata, a new device
 * family) is one more entry here: `deno task fuzz` and the default-suite
 * run (fuzz_test.ts) pick it up.
 *
 * @module
 */

import { configsTarget, controlTarget, kernelsTarget } from "./input_fuzz.ts";
import { devicesTarget, virtqueuesTarget } from "./machine_fuzz.ts";
import type { FuzzTarget } from "./target.ts";

/** The targets, in the order a run takes them. */
export const TARGETS: readonly FuzzTarget[] = [
  devicesTarget,
  virtqueuesTarget,
  kernelsTarget,
  configsTarget,
  controlTarget,
];
