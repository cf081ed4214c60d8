/**
 * The vCPU lifecycle, one transition table shared by every back-end.
 *
 * ```
 * created -> configured -> running -> exited | awaiting-io -> running ...
 *                          running <-> paused
 *                          any live state -> stopped -> destroyed
 * ```
 * `awaiting-io` is an exit whose access the device has not completed yet
 * (io-in, mmio-read: the result must reach the vCPU before it runs again).
 *
 * @example
 * ```ts
 * import { Lifecycle } from "./lifecycle.ts";
 * const l = new Lifecycle();
 * l.to("configured");
 * l.to("running");
 * l.to("destroyed"); // throws: Illegal vCPU transition from "running" to "destroyed"
 * ```
 * @module
 */

/** The states of a vCPU. */
export type VcpuState =
  | "created"
  | "configured"
  | "running"
  | "exited"
  | "awaiting-io"
  | "paused"
  | "stopped"
  | "destroyed";

/** Every legal transition: from -> the states it may go to. */
export const VALID_TRANSITIONS: Readonly<Record<VcpuState, readonly VcpuState[]>> = {
  created: ["configured", "stopped"],
  configured: ["running", "paused", "stopped"],
  running: ["exited", "awaiting-io", "paused", "stopped"],
  exited: ["running", "paused", "stopped"],
  "awaiting-io": ["exited", "stopped"],
  paused: ["running", "stopped"],
  stopped: ["destroyed", "configured"],
  destroyed: [],
};

/** An attempt at a transition the table does not allow: a bug of ours. */
export class IllegalTransitionError extends Error {
  readonly from: VcpuState;
  readonly to: VcpuState;
  constructor(from: VcpuState, to: VcpuState) {
    super(`Illegal vCPU transition from "${from}" to "${to}"`);
    this.name = "IllegalTransitionError";
    this.from = from;
    this.to = to;
  }
}

/** Whether `from -> to` is allowed. */
export function canTransition(from: VcpuState, to: VcpuState): boolean {
  return VALID_TRANSITIONS[from].includes(to);
}

/** A vCPU's current state, changed only through the table. */
export class Lifecycle {
  #state: VcpuState = "created";
  readonly #onChange?: (from: VcpuState, to: VcpuState) => void;

  constructor(onChange?: (from: VcpuState, to: VcpuState) => void) {
    this.#onChange = onChange;
  }

  get state(): VcpuState {
    return this.#state;
  }

  /** Moves to `next`; throws {@link IllegalTransitionError} naming both states. */
  to(next: VcpuState): void {
    const from = this.#state;
    if (!canTransition(from, next)) throw new IllegalTransitionError(from, next);
    this.#state = next;
    this.#onChange?.(from, next);
  }

  /** Whether the vCPU still exists (not stopped or destroyed). */
  get live(): boolean {
    return this.#state !== "stopped" && this.#state !== "destroyed";
  }
}
