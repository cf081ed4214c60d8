/**
 * The guest-physical memory ranges of a vmm(4) VM: the machine's RAM as
 * VM_MEM_RAM, the rest below 4 GiB as VM_MEM_MMIO, checked the way the
 * kernel's `vm_create_check_mem_ranges` checks them.
 *
 * @module
 */

import { PCI_HOLE_BASE } from "../../core/layout.ts";
import * as abi from "./abi.ts";

/** 4 GiB: the PCI hole ends here. */
const FOUR_GIB = 2 ** 32;
const PAGE = 4096;

/** "0x..." for messages. */
export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/** One range passed to VMM_IOC_CREATE. */
export interface VmmMemRange {
  gpa: number;
  size: number;
  type: number;
}

/**
 * The ranges a VM gets: the RAM ranges, plus everything below 4 GiB from
 * the end of low RAM (or `holeBase`, the PCI hole, if RAM reaches it) that
 * no RAM covers, and the gaps between low RAM ranges, as VM_MEM_MMIO:
 * accesses there exit as MMIO and reach the
 * machine's MMIO bus (vmm(4) fails the RUN for addresses in no range at
 * all, so the gap between a small VM's RAM and the PCI hole is MMIO too).
 * Checked as vmm(4) checks them (page aligned, ascending, not overlapping,
 * ending at most at 128 GiB, at most 16), with messages that name the
 * offending range.
 */
export function vmmMemRanges(
  ram: readonly { gpa: number; size: number; reserved?: boolean }[],
  holeBase: number = PCI_HOLE_BASE,
): VmmMemRange[] {
  const ranges: VmmMemRange[] = ram.map((r) => ({
    gpa: r.gpa,
    size: r.size,
    type: r.reserved ? abi.VM_MEM_RESERVED : abi.VM_MEM_RAM,
  }));
  // Gaps inside low RAM (the VGA window at 0xA0000) are MMIO too.
  const sorted = [...ram].sort((a, b) => a.gpa - b.gpa);
  for (let i = 1; i < sorted.length; i++) {
    const end = sorted[i - 1].gpa + sorted[i - 1].size;
    if (sorted[i].gpa > end && sorted[i].gpa < Math.min(holeBase, FOUR_GIB)) {
      ranges.push({ gpa: end, size: sorted[i].gpa - end, type: abi.VM_MEM_MMIO });
    }
  }
  // Low RAM's end, not the BIOS flash copy's (which ends at 4 GiB inside the hole).
  const lowEnd = ram.filter((r) => r.gpa < FOUR_GIB && !r.reserved)
    .reduce((end, r) => Math.max(end, Math.min(r.gpa + r.size, FOUR_GIB)), 0);
  // Holes between RAM inside [min(low RAM end, holeBase), 4 GiB).
  let cursor = Math.min(holeBase, Math.ceil(lowEnd / PAGE) * PAGE);
  for (const r of [...ram].sort((a, b) => a.gpa - b.gpa)) {
    if (r.gpa + r.size <= cursor || r.gpa >= FOUR_GIB) continue;
    if (r.gpa > cursor) ranges.push({ gpa: cursor, size: r.gpa - cursor, type: abi.VM_MEM_MMIO });
    cursor = Math.max(cursor, r.gpa + r.size);
  }
  if (cursor < FOUR_GIB) {
    ranges.push({ gpa: cursor, size: FOUR_GIB - cursor, type: abi.VM_MEM_MMIO });
  }
  ranges.sort((a, b) => a.gpa - b.gpa);
  checkMemRanges(ranges);
  return ranges;
}

/** vmm(4)'s vm_create_check_mem_ranges, with messages. */
export function checkMemRanges(ranges: readonly VmmMemRange[]): void {
  if (ranges.length === 0) throw new Error("A VM needs at least one memory range");
  if (ranges.length > abi.VMM_MAX_MEM_RANGES) {
    throw new Error(
      `vmm(4) takes at most ${abi.VMM_MAX_MEM_RANGES} memory ranges, this VM needs ` +
        `"${ranges.length}"`,
    );
  }
  let prevEnd = 0;
  ranges.forEach((r, i) => {
    const what = `Memory range ${i} at "${hex(r.gpa)}" of "${hex(r.size)}" bytes`;
    if (!Number.isSafeInteger(r.gpa) || !Number.isSafeInteger(r.size) || r.gpa < 0) {
      throw new Error(`${what} is not a valid address range`);
    }
    if (r.gpa % PAGE !== 0 || r.size % PAGE !== 0 || r.size === 0) {
      throw new Error(`${what} is not page aligned (vmm(4) needs 4 KiB pages)`);
    }
    if (r.gpa + r.size > abi.VMM_MAX_VM_MEM_SIZE) {
      throw new Error(`${what} ends beyond vmm(4)'s limit of 128 GiB (VMM_MAX_VM_MEM_SIZE)`);
    }
    if (i > 0 && r.gpa < prevEnd) {
      throw new Error(`${what} overlaps the previous range or is not in ascending order`);
    }
    prevEnd = r.gpa + r.size;
  });
}
