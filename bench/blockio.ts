/**
 * Block I/O through virtio-blk: not measured yet. The rows say why.
 *
 * @module
 */

import { type Row, skippedRow } from "./report.ts";

/** The block I/O rows (all skipped until a virtio-blk benchmark guest exists). */
export function benchBlockIo(): Row[] {
  const why = "virtio-blk not available (no benchmark guest drives it yet)";
  return [
    "4 KiB random read",
    "4 KiB random write",
    "128 KiB sequential read",
    "128 KiB sequential write",
  ].map((name) => skippedRow("blockio", `virtio-blk ${name}`, why));
}
