/*
 * hvt_guest.h: a tiny freestanding binding for vmmctl's Solo5 hvt test
 * unikernels (written for vmmctl; the layouts follow the hvt ABI version 2
 * that solo5/abi.ts describes).
 */
#ifndef HVT_GUEST_H
#define HVT_GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

#define HC_WALLTIME 1
#define HC_PUTS 2
#define HC_POLL 3
#define HC_BLOCK_WRITE 4
#define HC_BLOCK_READ 5
#define HC_NET_WRITE 6
#define HC_NET_READ 7
#define HC_HALT 8

#define R_OK 0
#define R_AGAIN 1
#define R_EINVAL 2

struct boot_info {
    u64 mem_size, kernel_end, cpu_cycle_freq, cmdline, mft;
    u32 host_features, guest_features;
    u64 net_ring;
};

struct mft_entry {
    char name[68];
    u32 type;
    union {
        struct { u64 capacity; u16 block_size; } blk;
        struct { u8 mac[6]; u16 mtu; } net;
    } u;
    u64 backing;
    _Bool attached;
};

struct mft {
    u32 version, entries;
    struct mft_entry e[];
};

/* The notes: header "Solo5\0" padded to 8, then the descriptor. */
struct note_hdr {
    u32 namesz, descsz, type;
    char name[8];
};

#define DECLARE_ABI_NOTE                                                       \
    __attribute__((section(".note.solo5.abi"), aligned(4), used))             \
    const struct { struct note_hdr h; u32 target, version, r0, r1; }          \
        abi_note = { { 6, 16, 0x31494241, "Solo5" }, 1, 2, 0, 0 };

/* A manifest with entry 0 (reserved) and up to one device of TYPE named NAME. */
struct mft_note1 {
    struct note_hdr h;
    struct { u32 version, entries; struct mft_entry e[2]; } m;
};
#define DECLARE_MANIFEST_NONE                                                  \
    __attribute__((section(".note.solo5.manifest"), aligned(8), used))        \
    const struct { struct note_hdr h; struct { u32 version, entries;          \
        struct mft_entry e[1]; } m; } mft_note = {                            \
        { 6, sizeof(mft_note) - sizeof(struct note_hdr), 0x3154464d, "Solo5" },\
        { 1, 1, { { .name = "", .type = 1u << 30 } } } };
#define DECLARE_MANIFEST_ONE(NAME, TYPE)                                       \
    __attribute__((section(".note.solo5.manifest"), aligned(8), used))        \
    const struct mft_note1 mft_note = {                                       \
        { 6, sizeof(mft_note) - sizeof(struct note_hdr), 0x3154464d, "Solo5" },\
        { 1, 2, { { .name = "", .type = 1u << 30 },                           \
                  { .name = NAME, .type = TYPE } } } };

static inline void hypercall(int nr, volatile void *arg)
{
    __asm__ __volatile__("outl %0, %1"
                         :
                         : "a"((u32)(u64)arg), "d"((u16)(0x500 + nr))
                         : "memory");
}

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static u64 len_of(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

static void put_n(const char *s, u64 n)
{
    volatile struct { u64 data, len; } a = { (u64)s, n };
    hypercall(HC_PUTS, &a);
}

static void put(const char *s) { put_n(s, len_of(s)); }

static void put_hex(u64 v)
{
    char b[19];
    b[0] = '0';
    b[1] = 'x';
    int n = 2;
    int started = 0;
    for (int sh = 60; sh >= 0; sh -= 4) {
        int d = (v >> sh) & 0xf;
        if (d || started || sh == 0) {
            b[n++] = "0123456789abcdef"[d];
            started = 1;
        }
    }
    put_n(b, n);
}

static void put_dec(u64 v)
{
    char b[21];
    int n = 21;
    do {
        b[--n] = '0' + v % 10;
        v /= 10;
    } while (v);
    put_n(b + n, 21 - n);
}

static __attribute__((noreturn)) void halt(int status, void *cookie)
{
    volatile struct { u64 cookie; int status; } a = { (u64)cookie, status };
    hypercall(HC_HALT, &a);
    for (;;)
        ;
}

static int starts_with(const char *s, const char *p)
{
    while (*p)
        if (*s++ != *p++)
            return 0;
    return 1;
}

static int str_eq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static u64 walltime(void)
{
    volatile struct { u64 ns; } a = { 0 };
    hypercall(HC_WALLTIME, &a);
    return a.ns;
}

/* Returns the poll's ret; *ready gets the ready set. */
static int poll_ns(u64 timeout, u64 *ready)
{
    volatile struct { u64 timeout, ready; int ret; } a = { timeout, 0, -1 };
    hypercall(HC_POLL, &a);
    if (ready)
        *ready = a.ready;
    return a.ret;
}

/* Index of the manifest device NAME of TYPE, or 0 when absent. */
static unsigned find_device(const struct boot_info *bi, const char *name, u32 type)
{
    const struct mft *m = (const struct mft *)bi->mft;
    for (unsigned i = 1; i < m->entries; i++)
        if (m->e[i].type == type && str_eq(m->e[i].name, name))
            return i;
    return 0;
}

#endif
