import assert from "node:assert/strict";
import { compileAndRun, cProgram, NO_CC_MESSAGE } from "../tests/cc.ts";
import { BOOT_INFO, HVT_RING_BYTES, MFT_ENTRY, MFT_ENTRY_BYTES, MFT_HEADER_BYTES } from "./abi.ts";

const header = new URL("./tests/guests/hvt_guest.h", import.meta.url).pathname;

Deno.test("abi: boot info, manifest and ring offsets match the C layouts gcc computes", async () => {
  const expected: Record<string, number> = {
    bi_size: BOOT_INFO.BYTES,
    bi_mem_size: BOOT_INFO.MEM_SIZE,
    bi_kernel_end: BOOT_INFO.KERNEL_END,
    bi_cpu_cycle_freq: BOOT_INFO.CPU_CYCLE_FREQ,
    bi_cmdline: BOOT_INFO.CMDLINE,
    bi_mft: BOOT_INFO.MFT,
    bi_host_features: BOOT_INFO.HOST_FEATURES,
    bi_net_ring: BOOT_INFO.NET_RING,
    mft_header: MFT_HEADER_BYTES,
    entry_size: MFT_ENTRY_BYTES,
    entry_type: MFT_ENTRY.TYPE,
    entry_capacity: MFT_ENTRY.BLOCK_CAPACITY,
    entry_block_size: MFT_ENTRY.BLOCK_SIZE,
    entry_mac: MFT_ENTRY.NET_MAC,
    entry_mtu: MFT_ENTRY.NET_MTU,
    entry_attached: MFT_ENTRY.ATTACHED,
    note_mft: 24,
    ring_size: HVT_RING_BYTES,
  };
  const source = cProgram(
    [
      `#include "${header}"`,
      // The ring as the net test unikernel declares it.
      "struct ring_entry { u32 op, handle; u64 data; u32 len, id; u64 reserved; };",
      "struct ring_commit { u32 id; int ret; u32 len, reserved; };",
      "struct ring { volatile u32 a, b; u8 p0[56]; volatile u32 c, d, e; u8 p1[52];",
      "  struct ring_entry en[1024]; struct ring_commit co[1024]; };",
    ],
    [
      'P("bi_size", sizeof(struct boot_info));',
      'P("bi_mem_size", offsetof(struct boot_info, mem_size));',
      'P("bi_kernel_end", offsetof(struct boot_info, kernel_end));',
      'P("bi_cpu_cycle_freq", offsetof(struct boot_info, cpu_cycle_freq));',
      'P("bi_cmdline", offsetof(struct boot_info, cmdline));',
      'P("bi_mft", offsetof(struct boot_info, mft));',
      'P("bi_host_features", offsetof(struct boot_info, host_features));',
      'P("bi_net_ring", offsetof(struct boot_info, net_ring));',
      'P("mft_header", offsetof(struct mft, e));',
      'P("entry_size", sizeof(struct mft_entry));',
      'P("entry_type", offsetof(struct mft_entry, type));',
      'P("entry_capacity", offsetof(struct mft_entry, u.blk.capacity));',
      'P("entry_block_size", offsetof(struct mft_entry, u.blk.block_size));',
      'P("entry_mac", offsetof(struct mft_entry, u.net.mac));',
      'P("entry_mtu", offsetof(struct mft_entry, u.net.mtu));',
      'P("entry_attached", offsetof(struct mft_entry, attached));',
      'P("note_mft", offsetof(struct mft_note1, m));',
      'P("ring_size", sizeof(struct ring));',
    ],
  );
  const out = await compileAndRun(source, ["-Wno-unused-function"]);
  if (out === undefined) {
    console.warn(NO_CC_MESSAGE);
    return;
  }
  const got = Object.fromEntries(
    out.trim().split("\n").map((l) => l.split(" ")).map(([k, v]) => [k, Number(v)]),
  );
  assert.deepEqual(got, expected);
});
