/**
 * The vCPU run loop: run, route the exit, complete the access, inject a
 * pending interrupt when the vCPU can take one, run again.
 *
 * Interrupts (irqchip "user"): our PIC is authoritative. A vector is injected
 * only when the back-end says the vCPU is ready; otherwise the loop asks for
 * an interrupt-window exit. This is the model OpenBSD vmm(4) has, so the same
 * loop serves both back-ends.
 *
 * @module
 */

import { handleExit } from "./dispatch.ts";
import { guestLog } from "../core/device.ts";
import { formatCpuState } from "../accel/format.ts";
import { Activity, Command, type VcpuControl } from "./vcpu_channel.ts";
import type { Machine, Outcome } from "./machine.ts";

const RFLAGS_IF = 0x200n;

/** Runs vCPU 0 of `m` until the VM ends or the host asks it to stop. */
export function runLoop(m: Machine, control: VcpuControl): Outcome {
  try {
    return loop(m, control);
  } catch (e) {
    // A host failure (an ioctl that failed): stop cleanly with the reason.
    return { kind: "failed", reason: e instanceof Error ? e.message : String(e) };
  } finally {
    control.activity = Activity.DONE;
  }
}

function loop(m: Machine, control: VcpuControl): Outcome {
  const vcpu = m.vcpu;
  const pic = m.interrupts;
  const accept = (bytes: Uint8Array) => m.uart.receive(bytes);
  let deadlineNs = -Infinity;
  control.activity = Activity.IN_VMM;
  for (;;) {
    if (m.aps) {
      // Other vCPUs' accesses to the shared devices (this is the device thread).
      control.takeAttention();
      const o = m.aps.serve();
      if (o) return o;
    }
    const command = control.command;
    if (command === Command.STOP) {
      return { kind: "stopped", detail: m.vcpu.describeLocation?.() };
    }
    if (command === Command.PAUSE) {
      pause(m, control);
      continue;
    }
    control.drainInput(accept);
    // Reading the clock costs more than the rest of this loop: skip it while
    // nothing touched a timed device and the host (which watches the
    // deadline) has not said it passed.
    if (m.timersDirty || control.takeTimerDue()) {
      const now = m.clock.nowNs();
      if (m.timersDirty || now >= deadlineNs) {
        m.timersDirty = false;
        m.pollTimers(now);
        deadlineNs = m.nextDeadlineNs();
        control.publishDeadline(deadlineNs / 1e6);
      }
    }
    if (m.outcome) return m.outcome;
    if (pic) {
      if (pic.takeNmi()) injectNmi(m);
      if (pic.hasInterrupt()) {
        if (vcpu.readyForInterrupt()) {
          vcpu.injectInterrupt(pic.acknowledge());
          vcpu.requestInterruptWindow(pic.hasInterrupt());
        } else {
          vcpu.requestInterruptWindow(true);
        }
      } else {
        vcpu.requestInterruptWindow(false);
      }
    }
    const exit = vcpu.run();
    const action = handleExit(exit, m);
    switch (action.action) {
      case "complete":
        vcpu.completeIo();
        break;
      case "continue":
        // Kicked out of the guest (a deadline, input, a command): look at the timers.
        m.timersDirty = true;
        break;
      case "halt": {
        const o = halted(m, control);
        if (o) return o;
        break;
      }
      case "stop":
        if (action.reason === "triple-fault") {
          return { kind: "triple-fault", detail: cpuDump(m) };
        }
        if (action.reason === "reset") return { kind: "reset" };
        return { kind: "poweroff" };
      case "fail":
        return { kind: "failed", reason: `${action.reason}\n${cpuDump(m)}` };
    }
    if (m.outcome) return m.outcome;
  }
}

function injectNmi(m: Machine): void {
  if (m.vcpu.injectNmi) m.vcpu.injectNmi();
  else guestLog.log(`NMI dropped: accel "${m.accel.name}" cannot inject one`);
}

function cpuDump(m: Machine): string {
  try {
    return formatCpuState({
      regs: m.vcpu.getRegisters(),
      sregs: m.vcpu.getSpecialRegisters(),
    });
  } catch (e) {
    return `(registers unavailable: ${e instanceof Error ? e.message : e})`;
  }
}

/**
 * The guest executed HLT: sleep until an interrupt can wake it, a timer is
 * due, input arrives or the host sends a command. Never spins.
 */
function halted(m: Machine, control: VcpuControl): Outcome | undefined {
  const pic = m.interrupts;
  if (!pic) return undefined; // the in-kernel irqchip handles HLT itself
  if ((m.vcpu.getRegisters().rflags & RFLAGS_IF) === 0n) {
    return { kind: "halted", detail: `at RIP 0x${m.vcpu.getRegisters().rip.toString(16)}` };
  }
  const accept = (bytes: Uint8Array) => m.uart.receive(bytes);
  for (;;) {
    const seq = control.wakeSeq;
    if (control.command !== Command.RUN) return undefined;
    if (m.aps) {
      control.takeAttention();
      const o = m.aps.serve();
      if (o) return o;
    }
    control.drainInput(accept);
    const now = m.clock.nowNs();
    m.pollTimers(now);
    if (m.outcome || pic.hasInterrupt()) return undefined;
    const deadline = m.nextDeadlineNs();
    control.activity = Activity.HALTED;
    control.sleep(seq, deadline === Infinity ? Infinity : (deadline - now) / 1e6);
    control.activity = Activity.IN_VMM;
  }
}

function pause(m: Machine, control: VcpuControl): void {
  m.vcpu.pause();
  control.activity = Activity.PAUSED;
  control.ackPause();
  while (control.command === Command.PAUSE) {
    const seq = control.wakeSeq;
    if (control.command !== Command.PAUSE) break;
    // An AP may be waiting on a device access before it can see its own pause.
    m.aps?.serve();
    control.sleep(seq, m.aps ? 50 : Infinity);
  }
  control.activity = Activity.IN_VMM;
}
