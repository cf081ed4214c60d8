/**
 * The memory a VGA shares between the vCPU thread (the device model) and
 * the display thread (renderer, console servers): the register file, the
 * VRAM, and a ring of input events going the other way. All of it lives in
 * SharedArrayBuffers made by the host before the vCPU thread starts.
 *
 * The VRAM is also mapped into the guest as its linear framebuffer, so it
 * starts on a page boundary inside its buffer: the host finds that offset
 * once (it needs the buffer's address) and both sides use it.
 *
 * @module
 */

import { EventRing } from "../../core/event_ring.ts";
import { VGA_STATE_BYTES, VgaState } from "./state.ts";

/** VRAM of the standard VGA: 16 MiB, as QEMU's default `-vga std`. */
export const VGA_VRAM_BYTES = 16 << 20;
/** Int32 values per input event: kind, a, b, c. */
export const INPUT_EVENT_WIDTH = 4;
/** Input event kinds. */
export const INPUT = { KEY: 1, MOUSE: 2 } as const;

/** What crosses from the host to the vCPU thread (structured-clonable). */
export interface VgaShared {
  state: SharedArrayBuffer;
  vram: SharedArrayBuffer;
  /** Byte offset of the page-aligned VRAM inside `vram`. */
  vramOffset: number;
  /** Host address of the VRAM's first byte (for mapping it into the guest). */
  vramAddress: bigint;
  vramBytes: number;
  input: SharedArrayBuffer;
}

/** Views over {@link VgaShared} on either side. */
export interface VgaViews {
  state: VgaState;
  vram: Uint8Array;
  input: EventRing;
}

/**
 * Makes the shared buffers. `addressOf` gives the host address of a buffer's
 * first byte (FFI), so the VRAM can start on a page.
 */
export function createVgaShared(
  addressOf: (bytes: Uint8Array) => bigint,
  vramBytes = VGA_VRAM_BYTES,
): VgaShared {
  const vram = new SharedArrayBuffer(vramBytes + 4096);
  const address = addressOf(new Uint8Array(vram));
  const vramOffset = Number((4096n - (address % 4096n)) % 4096n);
  const input = new EventRing(INPUT_EVENT_WIDTH, 512);
  return {
    state: new SharedArrayBuffer(VGA_STATE_BYTES),
    vram,
    vramOffset,
    vramAddress: address + BigInt(vramOffset),
    vramBytes,
    input: input.buffer,
  };
}

/** Opens views over shared buffers (either thread). */
export function openVgaShared(s: VgaShared): VgaViews {
  return {
    state: new VgaState(s.state),
    vram: new Uint8Array(s.vram, s.vramOffset, s.vramBytes),
    input: new EventRing(INPUT_EVENT_WIDTH, 512, s.input),
  };
}
