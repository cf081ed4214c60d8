/*
 * net.c: vmmctl's network hvt test unikernel (manifest: network device
 * "service"). Asks "who has 10.77.0.1? tell 10.77.0.2" every 100 ms and
 * waits in poll for the answer; exits 0 when an ARP reply for its own MAC
 * from 10.77.0.1 arrives, 1 after 200 tries. With command line "ring" it
 * uses the shared network ring the tender offers instead of the NET_READ
 * and NET_WRITE hypercalls (exit 3 when no ring is offered).
 */
#include "hvt_guest.h"
#include "common_start.h"

DECLARE_ABI_NOTE
DECLARE_MANIFEST_ONE("service", 2)

struct ring_entry { u32 op, handle; u64 data; u32 len, id; u64 reserved; };
struct ring_commit { u32 id; int ret; u32 len, reserved; };
struct ring {
    volatile u32 ent_tail, com_head;
    u8 pad0[56];
    volatile u32 ent_head, com_tail, needs_kick;
    u8 pad1[52];
    struct ring_entry e[1024];
    struct ring_commit c[1024];
};

static struct ring *ring;
static u32 ring_id;
static u8 frame[2048] __attribute__((aligned(16)));
static u8 rx[2048] __attribute__((aligned(16)));

static void ring_submit(u32 op, unsigned h, void *data, u32 len)
{
    struct ring_entry *e = &ring->e[ring->ent_tail & 1023];
    e->op = op;
    e->handle = h;
    e->data = (u64)data;
    e->len = len;
    e->id = ring_id++;
    __asm__ __volatile__("" ::: "memory");
    ring->ent_tail++;
    __asm__ __volatile__("mfence" ::: "memory");
    if (ring->needs_kick)
        __asm__ __volatile__("outl %0, %1" ::"a"(0), "d"((u16)0x600) : "memory");
}

static int net_write(unsigned h, void *data, u64 len)
{
    if (ring) {
        ring_submit(1, h, data, len);
        return R_OK;
    }
    volatile struct { u64 handle, data, len; int ret; } a = {h, (u64)data, len, -1};
    hypercall(HC_NET_WRITE, &a);
    return a.ret;
}

static int net_read(unsigned h, void *data, u64 size, u64 *len)
{
    if (ring) {
        ring_submit(2, h, data, size);
        while (ring->com_head == ring->com_tail)
            __asm__ __volatile__("pause" ::: "memory");
        struct ring_commit *c = &ring->c[ring->com_head & 1023];
        int ret = c->ret;
        *len = c->len;
        ring->com_head++;
        return ret;
    }
    volatile struct { u64 handle, data, len; int ret; } a = {h, (u64)data, size, -1};
    hypercall(HC_NET_READ, &a);
    *len = a.len;
    return a.ret;
}

static const u8 my_ip[4] = {10, 77, 0, 2}, peer_ip[4] = {10, 77, 0, 1};

void guest_main(const struct boot_info *bi)
{
    unsigned h = find_device(bi, "service", 2);
    if (!h)
        halt(10, 0);
    const struct mft_entry *e = &((const struct mft *)bi->mft)->e[h];
    const u8 *mac = e->u.net.mac;
    if (str_eq((const char *)bi->cmdline, "ring")) {
        if (!(bi->host_features & 1) || !bi->net_ring)
            halt(3, 0);
        ring = (struct ring *)bi->net_ring;
        put("net: using the ring\n");
    }
    /* ARP request: broadcast, ethertype 0x0806, Ethernet/IPv4, op 1. */
    for (int i = 0; i < 6; i++) {
        frame[i] = 0xff;
        frame[6 + i] = mac[i];
        frame[22 + i] = mac[i];
        frame[32 + i] = 0;
    }
    const u8 hdr[10] = {0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1};
    for (int i = 0; i < 10; i++)
        frame[12 + i] = hdr[i];
    for (int i = 0; i < 4; i++) {
        frame[28 + i] = my_ip[i];
        frame[38 + i] = peer_ip[i];
    }
    for (int tries = 0; tries < 200; tries++) {
        if (net_write(h, frame, 60) != R_OK)
            halt(4, 0);
        u64 ready = 0;
        poll_ns(100000000, &ready);
        if (!(ready & (1UL << h)))
            continue;
        for (;;) {
            u64 len = 0;
            int r = net_read(h, rx, sizeof rx, &len);
            if (r == R_AGAIN)
                break;
            if (r != R_OK)
                halt(5, 0);
            int ok = len >= 42 && rx[12] == 0x08 && rx[13] == 0x06 && rx[21] == 2;
            for (int i = 0; ok && i < 6; i++)
                ok = rx[i] == mac[i] && rx[32 + i] == mac[i];
            for (int i = 0; ok && i < 4; i++)
                ok = rx[28 + i] == peer_ip[i];
            if (ok) {
                put("net: arp reply from ");
                for (int i = 0; i < 6; i++) {
                    put_hex(rx[22 + i]);
                    put(i < 5 ? ":" : "");
                }
                put(" after ");
                put_dec(tries + 1);
                put(" request(s)\n");
                halt(0, 0);
            }
        }
    }
    halt(1, 0);
}
