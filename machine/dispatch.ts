/**
 * The pure exit handler: routes a decoded {@link VcpuExit} to the port-I/O
 * or MMIO bus and tells the run loop what to do next. It never throws for
 * anything a guest does: unmapped port reads return all ones, unmapped MMIO
 * reads return zeros, and both are logged rate-limited.
 *
 * @example
 * ```ts
 * import { handleExit } from "./dispatch.ts";
 * import { Bus } from "../core/bus.ts";
 * const data = new Uint8Array(1);
 * handleExit({ kind: "io-in", port: 0x3f8, size: 1, count: 1, data },
 *   { pio: new Bus("pio"), mmio: new Bus("mmio") });
 * data[0]; // 0xff: nothing there
 * ```
 * @module
 */

import type { Bus } from "../core/bus.ts";
import { guestLog, type RateLimitedLog } from "../core/device.ts";
import type { VcpuExit } from "../accel/types.ts";

/** What the run loop does after an exit. */
export type ExitAction =
  /** The access was served: complete it on the vCPU and run again. */
  | { action: "complete" }
  /** Nothing to complete: run again (after injecting pending interrupts). */
  | { action: "continue" }
  /** The guest halted: sleep until an interrupt or timer is due. */
  | { action: "halt" }
  /** The VM is over. */
  | { action: "stop"; reason: string }
  /** The vCPU cannot go on; `reason` says why (with registers, by the caller). */
  | { action: "fail"; reason: string };

/** The buses an exit can be routed to. */
export interface ExitContext {
  pio: Bus;
  mmio: Bus;
  log?: RateLimitedLog;
}

const hex = (n: number) => "0x" + n.toString(16);

/** Routes one exit; pure apart from the device accesses it makes. */
export function handleExit(exit: VcpuExit, ctx: ExitContext): ExitAction {
  const log = ctx.log ?? guestLog;
  switch (exit.kind) {
    case "io-in": {
      for (let i = 0; i < exit.count; i++) {
        const chunk = exit.data.subarray(i * exit.size, (i + 1) * exit.size);
        if (!ctx.pio.read(exit.port, chunk)) {
          chunk.fill(0xff);
          log.log(() => `guest read ${exit.size} byte(s) from unmapped port ${hex(exit.port)}`);
        }
      }
      return { action: "complete" };
    }
    case "io-out": {
      for (let i = 0; i < exit.count; i++) {
        const chunk = exit.data.subarray(i * exit.size, (i + 1) * exit.size);
        if (!ctx.pio.write(exit.port, chunk)) {
          log.log(() => `guest wrote ${exit.size} byte(s) to unmapped port ${hex(exit.port)}`);
        }
      }
      return { action: "complete" };
    }
    case "mmio-read":
      if (!ctx.mmio.read(exit.gpa, exit.data)) {
        exit.data.fill(0);
        log.log(() => `guest read ${exit.data.length} byte(s) from unmapped MMIO ${hex(exit.gpa)}`);
      }
      return { action: "complete" };
    case "mmio-write":
      if (!ctx.mmio.write(exit.gpa, exit.data)) {
        log.log(() => `guest wrote ${exit.data.length} byte(s) to unmapped MMIO ${hex(exit.gpa)}`);
      }
      return { action: "complete" };
    case "halt":
      return { action: "halt" };
    case "interrupt-window":
    case "interrupted":
      return { action: "continue" };
    case "shutdown":
      return { action: "stop", reason: exit.reason };
    case "fail":
      return { action: "fail", reason: exit.reason };
    default: {
      const never: never = exit;
      throw new Error(`Unhandled vCPU exit ${JSON.stringify(never)}`);
    }
  }
}
