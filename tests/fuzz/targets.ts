/**
 * Every fuzz target of tests/fuzz/, by name. A new target (a new device
 * family) is one more entry here: main.ts and targets_fuzz_test.ts (so
 * `deno task fuzz` and the default suite) pick it up.
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
