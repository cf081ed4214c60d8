/**
 * Register dumps for failure reports (triple faults, emulation failures).
 *
 * @module
 */

import type { CpuState, Segment } from "./types.ts";

const hex = (v: bigint | number, width = 16) => v.toString(16).padStart(width, "0");

function seg(name: string, s: Segment): string {
  const flags = [
    s.present ? "P" : "-",
    s.s ? "S" : "-",
    s.l ? "L" : "-",
    s.db ? "D" : "-",
    s.g ? "G" : "-",
    s.unusable ? "U" : "-",
  ].join("");
  return `${name.toUpperCase().padEnd(3)}=${hex(s.selector, 4)} base=${hex(s.base)} ` +
    `limit=${hex(s.limit, 8)} type=${s.type.toString(16)} dpl=${s.dpl} ${flags}`;
}

/** A multi-line register dump in the style of QEMU's `info registers`. */
export function formatCpuState({ regs: r, sregs: s }: CpuState): string {
  return [
    `RAX=${hex(r.rax)} RBX=${hex(r.rbx)} RCX=${hex(r.rcx)} RDX=${hex(r.rdx)}`,
    `RSI=${hex(r.rsi)} RDI=${hex(r.rdi)} RBP=${hex(r.rbp)} RSP=${hex(r.rsp)}`,
    `R8 =${hex(r.r8)} R9 =${hex(r.r9)} R10=${hex(r.r10)} R11=${hex(r.r11)}`,
    `R12=${hex(r.r12)} R13=${hex(r.r13)} R14=${hex(r.r14)} R15=${hex(r.r15)}`,
    `RIP=${hex(r.rip)} RFL=${hex(r.rflags, 8)}`,
    ...(["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const).map((k) => seg(k, s[k])),
    `GDT=${hex(s.gdt.base)} ${hex(s.gdt.limit, 4)} IDT=${hex(s.idt.base)} ${hex(s.idt.limit, 4)}`,
    `CR0=${hex(s.cr0, 8)} CR2=${hex(s.cr2)} CR3=${hex(s.cr3)} CR4=${hex(s.cr4, 8)} ` +
    `EFER=${hex(s.efer, 8)}`,
  ].join("\n");
}
