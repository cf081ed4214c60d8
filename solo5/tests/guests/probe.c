/*
 * probe.c: vmmctl's device-less hvt test unikernel. The first word of the
 * command line picks what it does:
 *   hello [exit=N] [...]  print the command line and boot info, exit N (0)
 *   output                write 16 blocks of 4096..4081 bytes, then "output: done"
 *   ud2 | pagefault       take a trap through its own IDT and abort (status 255,
 *                         the trap frame as the halt cookie)
 *   tripfault             take a trap with no IDT (the CPU shuts down)
 *   time                  walltime and poll (timeout 0 and 30 ms)
 *   badputs | badarg | badport | badcall | badcookie   break the ABI
 */
#include "hvt_guest.h"
#include "common_start.h"

DECLARE_ABI_NOTE
DECLARE_MANIFEST_NONE

#define X4(s) s s s s
#define X16(s) X4(X4(s))
/* 4096 bytes: 64 lines of 64 characters. */
static const char block[] = X16(X4("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"));

static u64 gdt[3] __attribute__((aligned(16))) = {
    0, 0x00af9b000000ffffUL, 0x00cf93000000ffffUL};
static u64 idt[2 * 32] __attribute__((aligned(16)));

void trap_ud(void);
void trap_pf(void);
__asm__(".text\n"
        "trap_ud:\n"
        "  pushq $0\n"
        "  jmp trap_common\n"
        "trap_pf:\n"
        "  jmp trap_common\n"
        "trap_common:\n"
        "  mov %cr2, %rax\n"
        "  push %rax\n"
        "  mov %rsp, %rdi\n"
        "  call trap_handler\n");

void trap_handler(u64 *regs)
{
    put("probe: trap at rip ");
    put_hex(regs[2]);
    put("\n");
    halt(255, regs);
}

static void set_gate(int vec, void (*fn)(void))
{
    u64 a = (u64)fn;
    idt[2 * vec] = (a & 0xffff) | (0x08UL << 16) | (0x8eUL << 40) | ((a >> 16 & 0xffff) << 48);
    idt[2 * vec + 1] = a >> 32;
}

static void install_idt(void)
{
    struct __attribute__((packed)) { u16 limit; u64 base; } g = {sizeof gdt - 1, (u64)gdt},
                                                              i = {sizeof idt - 1, (u64)idt};
    /* The tender's GDT is not mapped for the guest: exceptions need one it can read. */
    __asm__ __volatile__("lgdt %0" ::"m"(g));
    set_gate(6, trap_ud);
    set_gate(14, trap_pf);
    __asm__ __volatile__("lidt %0" ::"m"(i));
}

static u64 parse_dec(const char *s)
{
    u64 v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (u64)(*s++ - '0');
    return v;
}

void guest_main(const struct boot_info *bi)
{
    const char *cmd = (const char *)bi->cmdline;
    if (starts_with(cmd, "hello")) {
        const struct mft *m = (const struct mft *)bi->mft;
        put("hello: cmdline=[");
        put(cmd);
        put("]\nhello: mem_size=");
        put_hex(bi->mem_size);
        put(" kernel_end=");
        put_hex(bi->kernel_end);
        put(" tsc_hz=");
        put_dec(bi->cpu_cycle_freq);
        put(" mft_entries=");
        put_dec(m->entries);
        put(" features=");
        put_dec(bi->host_features);
        put("\n");
        int status = 0;
        for (const char *p = cmd; *p; p++)
            if (starts_with(p, "exit="))
                status = (int)parse_dec(p + 5);
        halt(status, 0);
    }
    if (str_eq(cmd, "output")) {
        for (int i = 0; i < 16; i++)
            put_n(block, sizeof block - 1 - i);
        put("output: done\n");
        halt(0, 0);
    }
    if (str_eq(cmd, "ud2")) {
        install_idt();
        __asm__ __volatile__("ud2");
    }
    if (str_eq(cmd, "pagefault")) {
        install_idt();
        u64 zero_page = 8;
        __asm__ __volatile__("" : "+r"(zero_page));
        *(volatile u64 *)zero_page = 1;
    }
    if (str_eq(cmd, "tripfault"))
        __asm__ __volatile__("ud2");
    if (str_eq(cmd, "time")) {
        u64 ready = 99;
        u64 t0 = rdtsc();
        u64 w0 = walltime();
        int r0 = poll_ns(0, &ready);
        u64 w1 = walltime();
        int r1 = poll_ns(30000000, &ready);
        u64 w2 = walltime();
        u64 t2 = rdtsc();
        put("time: wall_ns=");
        put_dec(w0);
        put(" poll0_ret=");
        put_dec((u64)r0);
        put(" poll0_ns=");
        put_dec(w1 - w0);
        put(" poll30_ret=");
        put_dec((u64)r1);
        put(" poll30_ns=");
        put_dec(w2 - w1);
        put(" ready=");
        put_dec(ready);
        put(" tsc_ns=");
        put_dec((t2 - t0) / (bi->cpu_cycle_freq / 1000000) * 1000);
        put("\n");
        halt(0, 0);
    }
    if (str_eq(cmd, "badputs"))
        put_n(block, bi->mem_size); /* runs past the end of guest memory */
    if (str_eq(cmd, "badarg"))
        hypercall(HC_PUTS, (void *)0xfffffff0UL);
    if (str_eq(cmd, "badport"))
        __asm__ __volatile__("outb %%al, %%dx" ::"a"(0), "d"(0x3f8));
    if (str_eq(cmd, "badcall"))
        hypercall(0, (void *)0x10000);
    if (str_eq(cmd, "badcookie"))
        halt(255, (void *)(bi->mem_size - 100));
    put("probe: unknown command [");
    put(cmd);
    put("]\n");
    halt(2, 0);
}
