/**
 * The vCPU thread of the boot-stage probe (bench/stage_child.ts): the same
 * work as machine/vcpu_worker.ts, with timestamps taken around the KVM
 * ioctls (through a recording Libc wrapper), the first serial byte, the
 * first POST code and the exit-port write.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { KvmAccel } from "../accel/kvm/kvm.ts";
import type { VmConfig } from "../config/schema.ts";
import type { BusDevice } from "../core/device.ts";
import { type IoctlArg, type IoctlRequest, type Libc, openLibc } from "../ffi/libc.ts";
import { VcpuControl } from "../machine/vcpu_channel.ts";
import { Machine, type Outcome } from "../machine/machine.ts";
import { runLoop } from "../machine/run_loop.ts";
import type { Stage } from "./stage_child.ts";

/** Probe -> worker. */
export interface StageRequest {
  config: VmConfig;
  originMs: number;
}

/** Worker -> probe. */
export interface StageReply {
  stages: Stage[];
  outcome: Outcome;
}

/** Which ioctl marks which stage, and whether its first or last call counts. */
const IOCTL_STAGES: Record<string, { name: string; when: "before" | "after"; last?: boolean }> = {
  KVM_CREATE_VM: { name: "VM created", when: "after" },
  KVM_SET_USER_MEMORY_REGION: { name: "guest memory mapped", when: "after", last: true },
  KVM_CREATE_VCPU: { name: "vCPU created", when: "after" },
  KVM_RUN: { name: "first KVM_RUN (first guest instruction)", when: "before" },
};

/** A Libc that notes the time of the ioctls in {@link IOCTL_STAGES}. */
export function recordingLibc(inner: Libc, note: (name: string, last: boolean) => void): Libc {
  const wrap = <A extends unknown[]>(
    call: (fd: number, request: IoctlRequest, ...rest: A) => number,
  ) =>
  (fd: number, request: IoctlRequest, ...rest: A): number => {
    const s = IOCTL_STAGES[request.name];
    if (s?.when === "before") note(s.name, s.last ?? false);
    const r = call(fd, request, ...rest);
    if (s?.when === "after") note(s.name, s.last ?? false);
    return r;
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === "ioctl") {
        return wrap((fd, req, arg?: IoctlArg) => target.ioctl(fd, req, arg));
      }
      if (prop === "ioctlTry") {
        return wrap((fd, req, arg: IoctlArg, accept: readonly string[]) =>
          target.ioctlTry(fd, req, arg, accept)
        );
      }
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

self.onmessage = (event: MessageEvent<StageRequest>) => {
  const req = event.data;
  const shift = performance.timeOrigin - req.originMs;
  const now = () => performance.now() + shift;
  const stages = new Map<string, number>();
  const note = (name: string, last = false) => {
    if (last || !stages.has(name)) stages.set(name, now());
  };
  note("worker running");
  let outcome: Outcome;
  let machine: Machine | undefined;
  try {
    const accel = new KvmAccel(recordingLibc(openLibc(), note));
    note("KVM opened");
    machine = new Machine({
      config: req.config,
      accel,
      serialOut: () => note("first serial byte"),
      clock: { nowNs: () => now() * 1e6 },
    });
    note("machine built (kernel loaded, devices attached)");
    const port = req.config.debug.exitPort;
    const exit = port === undefined ? undefined : machine.pio.find(port, 1);
    if (exit) {
      const inner = exit.device;
      const timed: BusDevice = {
        name: `${inner.name} (timed)`,
        read: (o, d) => inner.read(o, d),
        write: (o, d) => {
          note("exit-port write");
          inner.write(o, d);
        },
      };
      machine.pio.remove(inner, exit.base);
      machine.pio.insert(exit.base, exit.length, timed);
    }
    outcome = runLoop(machine, new VcpuControl());
    note("run loop returned");
    const post = machine.post.entries();
    if (post.length) stages.set("first POST code", post[0].atNs / 1e6);
  } catch (e) {
    outcome = { kind: "failed", reason: e instanceof Error ? e.message : String(e) };
  }
  machine?.close();
  self.postMessage(
    {
      stages: [...stages].map(([name, atMs]) => ({ name, atMs })),
      outcome,
    } satisfies StageReply,
  );
};
