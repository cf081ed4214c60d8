/*
 * common_start.h: entry point of the test unikernels: switch to a stack in
 * .bss (so a trap frame passed as the abort cookie has HVT_HALT_COOKIE_MAX
 * bytes of guest memory after it) and call guest_main(boot_info).
 */
__attribute__((used, aligned(16))) static u8 stack_area[16384 + 1024];

__asm__(".section .text.start, \"ax\"\n"
        ".global _start\n"
        "_start:\n"
        "  lea stack_area+16384(%rip), %rsp\n"
        "  call guest_main\n"
        "1: jmp 1b\n"
        ".text\n");

void guest_main(const struct boot_info *bi);
