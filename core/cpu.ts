/**
 * The x86 architectural state as plain data: segment, general and special
 * registers. Loaders build it, back-ends load it into a vCPU and read it
 * back, failure reports print it; none of them needs the others for that.
 *
 * @module
 */

/** A segment register in the form both back-ends can express. */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  /** Descriptor type field (4 bits). */
  type: number;
  present: boolean;
  dpl: number;
  /** D/B bit: 32-bit default operand size. */
  db: boolean;
  /** S bit: code/data (true) or system (false). */
  s: boolean;
  /** L bit: 64-bit code segment. */
  l: boolean;
  /** G bit: limit in pages. */
  g: boolean;
  avl: boolean;
  unusable: boolean;
}

/** GDTR / IDTR. */
export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** General-purpose registers, RIP and RFLAGS. */
export interface Registers {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
  rsi: bigint;
  rdi: bigint;
  rsp: bigint;
  rbp: bigint;
  r8: bigint;
  r9: bigint;
  r10: bigint;
  r11: bigint;
  r12: bigint;
  r13: bigint;
  r14: bigint;
  r15: bigint;
  rip: bigint;
  rflags: bigint;
}

/** General-purpose register number (x86 encoding order: ModRM, REX) -> field of {@link Registers}. */
export const GPR_FIELDS = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
] as const satisfies readonly (keyof Registers)[];

/** Segment, control and mode registers. */
export interface SpecialRegisters {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
}

/** The whole architectural state a loader sets and a failure report shows. */
export interface CpuState {
  regs: Registers;
  sregs: SpecialRegisters;
}
