/**
 * An application processor's run loop (vCPU 1..N-1, each on its own
 * thread). It owns only its vCPU and, with irqchip "user", its local APIC;
 * every other device access goes to the device thread through its
 * {@link ExitMailbox}.
 *
 * irqchip "user": the AP starts in wait-for-SIPI. An INIT resets its APIC
 * and puts it back there; a start-up IPI with vector V starts it in real
 * mode at V:0000 (CS base V << 12), as the SDM's MP initialization
 * protocol says. HLT sleeps until the APIC has something or its timer is
 * due. irqchip "kernel": KVM's APIC does all that inside `run()`.
 *
 * @module
 */

import type { Vcpu, VcpuExit } from "../accel/types.ts";
import { type Clock, guestLog } from "../core/device.ts";
import { LAPIC_BASE, LAPIC_SIZE, type LocalApic } from "../devices/apic.ts";
import { realModeState } from "../loaders/cpu_state.ts";
import type { ExitMailbox } from "./exit_mailbox.ts";
import type { Outcome } from "./machine.ts";
import { Activity, Command, type VcpuControl } from "./vcpu_channel.ts";

const RFLAGS_IF = 0x200n;

/** What an AP's loop works with. */
export interface ApContext {
  index: number;
  vcpu: Vcpu;
  /** Its local APIC (irqchip "user"), else undefined. */
  lapic?: LocalApic;
  clock: Clock;
  control: VcpuControl;
  mailbox: ExitMailbox;
  /** Gets the device thread's attention (after posting to the mailbox). */
  wakeDeviceThread: () => void;
}

/** Runs the AP until the host or the device thread stops it, or it fails. */
export function runApLoop(ap: ApContext): Outcome {
  try {
    return loop(ap);
  } catch (e) {
    return { kind: "failed", reason: `vCPU ${ap.index}: ${e instanceof Error ? e.message : e}` };
  } finally {
    ap.control.activity = Activity.DONE;
  }
}

function loop(ap: ApContext): Outcome {
  const { vcpu, lapic, control } = ap;
  const stopping = () => control.command === Command.STOP;
  let waitingForSipi = lapic !== undefined;
  control.activity = Activity.IN_VMM;
  for (;;) {
    control.takeAttention();
    if (stopping()) return { kind: "stopped" };
    if (control.command === Command.PAUSE) {
      pause(ap);
      continue;
    }
    if (lapic) {
      const events = lapic.takeEvents();
      if (events?.init) {
        lapic.reset();
        waitingForSipi = true;
      }
      if (events?.nmi && !waitingForSipi) {
        if (vcpu.injectNmi) vcpu.injectNmi();
        else guestLog.log(`vCPU ${ap.index}: NMI dropped (the back-end cannot inject one)`);
      }
      if (events && events.startup >= 0 && waitingForSipi) {
        const state = realModeState(events.startup << 8, 0);
        vcpu.setSpecialRegisters(state.sregs);
        vcpu.setRegisters(state.regs);
        waitingForSipi = false;
      }
      if (waitingForSipi) {
        sleep(ap, Infinity);
        continue;
      }
      const now = ap.clock.nowNs();
      lapic.poll(now);
      control.publishDeadline(lapic.nextDeadlineNs() / 1e6);
      if (lapic.hasInterrupt()) {
        if (vcpu.readyForInterrupt()) {
          vcpu.injectInterrupt(lapic.acknowledge());
          vcpu.requestInterruptWindow(lapic.hasInterrupt());
        } else {
          vcpu.requestInterruptWindow(true);
        }
      } else {
        vcpu.requestInterruptWindow(false);
      }
    }
    const exit = vcpu.run();
    switch (exit.kind) {
      case "io-in":
      case "io-out":
      case "mmio-read":
      case "mmio-write":
        if (lapic && isLapicAccess(exit)) {
          const offset = exit.gpa - LAPIC_BASE;
          if (exit.kind === "mmio-read") lapic.read(offset, exit.data);
          else lapic.write(offset, exit.data);
        } else if (!ap.mailbox.forward(exit, ap.wakeDeviceThread, stopping)) {
          return { kind: "stopped" };
        }
        vcpu.completeIo();
        break;
      case "halt":
        if (lapic) halted(ap);
        break;
      case "interrupt-window":
      case "interrupted":
        break;
      case "shutdown":
        if (exit.reason === "triple-fault") {
          return { kind: "triple-fault", detail: `on vCPU ${ap.index}` };
        }
        return exit.reason === "reset" ? { kind: "reset" } : { kind: "poweroff" };
      case "fail":
        return { kind: "failed", reason: `vCPU ${ap.index}: ${exit.reason}` };
    }
  }
}

function isLapicAccess(exit: VcpuExit): exit is Extract<VcpuExit, { gpa: number }> {
  return (exit.kind === "mmio-read" || exit.kind === "mmio-write") &&
    exit.gpa >= LAPIC_BASE && exit.gpa < LAPIC_BASE + LAPIC_SIZE;
}

/** Sleeps until woken (an IPI, a command) or `deadlineNs` on the AP's clock. */
function sleep(ap: ApContext, deadlineNs: number): void {
  const seq = ap.control.wakeSeq;
  if (ap.control.wantsAttention || ap.control.command !== Command.RUN) return;
  ap.control.activity = Activity.HALTED;
  const ms = deadlineNs === Infinity ? Infinity : (deadlineNs - ap.clock.nowNs()) / 1e6;
  ap.control.sleep(seq, ms);
  ap.control.activity = Activity.IN_VMM;
}

/** HLT with our APIC: wait for an interrupt it can take (IF=0 only wakes for INIT/stop). */
function halted(ap: ApContext): void {
  const lapic = ap.lapic!;
  const ifSet = (ap.vcpu.getRegisters().rflags & RFLAGS_IF) !== 0n;
  for (;;) {
    ap.control.takeAttention();
    if (ap.control.command !== Command.RUN) return;
    if (lapic.regs.hasPending()) return; // INIT, SIPI, NMI: the loop looks
    lapic.poll(ap.clock.nowNs());
    if (ifSet && lapic.hasInterrupt()) return;
    sleep(ap, ifSet ? lapic.nextDeadlineNs() : Infinity);
  }
}

function pause(ap: ApContext): void {
  ap.vcpu.pause();
  ap.control.activity = Activity.PAUSED;
  ap.control.ackPause();
  while (ap.control.command === Command.PAUSE) {
    const seq = ap.control.wakeSeq;
    if (ap.control.command !== Command.PAUSE) break;
    ap.control.sleep(seq, Infinity);
  }
  ap.control.activity = Activity.IN_VMM;
}
