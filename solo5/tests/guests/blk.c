/*
 * blk.c: vmmctl's block-device hvt test unikernel (manifest: block device
 * "storage"). Reads sector 0, writes its bitwise complement to the last
 * sector, reads that back and compares, then checks the tender refuses
 * out-of-range, misaligned and wrong-handle requests. Exit status 0 when
 * everything behaved; otherwise the number of the failed check.
 */
#include "hvt_guest.h"
#include "common_start.h"

DECLARE_ABI_NOTE
DECLARE_MANIFEST_ONE("storage", 1)

static u64 buf[4096 / 8] __attribute__((aligned(16)));
static u64 buf2[4096 / 8] __attribute__((aligned(16)));

static int blk(int nr, u64 handle, u64 offset, void *data, u64 len)
{
    volatile struct { u64 handle, offset, data, len; int ret; } a = {
        handle, offset, (u64)data, len, -1};
    hypercall(nr, &a);
    return a.ret;
}

void guest_main(const struct boot_info *bi)
{
    unsigned h = find_device(bi, "storage", 1);
    if (!h)
        halt(10, 0);
    const struct mft_entry *e = &((const struct mft *)bi->mft)->e[h];
    u64 bs = e->u.blk.block_size, cap = e->u.blk.capacity;
    if (!e->attached || bs > sizeof buf || bs < 512)
        halt(11, 0);
    put("blk: sector=");
    put_dec(bs);
    put(" capacity=");
    put_dec(cap);
    if (blk(HC_BLOCK_READ, h, 0, buf, bs) != R_OK)
        halt(12, 0);
    put(" first=[");
    put_n((const char *)buf, 16);
    put("]\n");
    for (u64 i = 0; i < bs / 8; i++)
        buf[i] = ~buf[i];
    if (blk(HC_BLOCK_WRITE, h, cap - bs, buf, bs) != R_OK)
        halt(13, 0);
    if (blk(HC_BLOCK_READ, h, cap - bs, buf2, bs) != R_OK)
        halt(14, 0);
    for (u64 i = 0; i < bs / 8; i++)
        if (buf2[i] != buf[i])
            halt(15, 0);
    put("blk: readback ok\n");
    if (blk(HC_BLOCK_READ, h, cap, buf, bs) != R_EINVAL)
        halt(16, 0);
    if (blk(HC_BLOCK_READ, h, bs / 2, buf, bs) != R_EINVAL)
        halt(17, 0);
    if (blk(HC_BLOCK_READ, 0, 0, buf, bs) != R_EINVAL)
        halt(18, 0);
    if (blk(HC_BLOCK_WRITE, h, cap - bs, buf, 2 * bs) != R_EINVAL)
        halt(19, 0);
    if (blk(HC_BLOCK_READ, h, (u64)-bs, buf, bs) != R_EINVAL)
        halt(20, 0);
    put("blk: errors ok\n");
    halt(0, 0);
}
