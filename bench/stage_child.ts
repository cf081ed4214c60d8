/**
 * The boot-stage probe, run as its own process by the start-up benchmark:
 * `deno run --allow-all bench/stage_child.ts CONFIG.toml`. It does what
 * `vmmctl up` does (parse the config, start a vCPU Worker, build the machine,
 * run the loop) with a timestamp at each stage, and prints them as JSON on
 * one line: `{ timeOriginMs, stages: [{ name, atMs }], outcome }`, `atMs`
 * being ms since this process's `performance.timeOrigin`.
 *
 * @module
 */

import { formatConfigError, loadConfigFile } from "../config/parse.ts";
import type { Outcome } from "../machine/machine.ts";
import type { StageReply, StageRequest } from "./stage_worker.ts";

const moduleRunningMs = performance.now();

/** One named point in time (ms since the probe's time origin). */
export interface Stage {
  name: string;
  atMs: number;
}

/** What the probe prints. */
export interface StageReport {
  timeOriginMs: number;
  stages: Stage[];
  outcome: Outcome;
}

async function probe(path: string): Promise<StageReport> {
  const stages: Stage[] = [{ name: "main module running", atMs: moduleRunningMs }];
  const loaded = loadConfigFile(path);
  if (!loaded.config) throw new Error(loaded.errors.map(formatConfigError).join("; "));
  stages.push({ name: "config parsed", atMs: performance.now() });
  const worker = new Worker(new URL("./stage_worker.ts", import.meta.url), { type: "module" });
  const reply = await new Promise<StageReply>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<StageReply>) => resolve(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      reject(new Error(`stage worker crashed: ${e.message}`));
    };
    const req: StageRequest = { config: loaded.config!, originMs: performance.timeOrigin };
    worker.postMessage(req);
  });
  worker.terminate();
  stages.push(...reply.stages, { name: "outcome on the main thread", atMs: performance.now() });
  stages.sort((a, b) => a.atMs - b.atMs);
  return { timeOriginMs: performance.timeOrigin, stages, outcome: reply.outcome };
}

if (import.meta.main) {
  console.log(JSON.stringify(await probe(Deno.args[0])));
}
