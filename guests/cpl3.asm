; cpl3: long mode, then 64-bit ring 3 (entered with SYSEXIT), where a
; dependent LCG loop runs natively on this host: x = x * 6364136223846793005
; + 1442695040888963407 (mod 2^64) from x = 1, N times (N = 10,000,000 or
; "iters=N" from the command line). Ring 3 prints N and x through the COM1
; ports (granted by the TSS I/O bitmap) and exits through port 0xF4 with
; v=0x15 itself.

%include "boot.inc"
%include "long.inc"
%include "cmdline.inc"

DEFAULT_ITERS equ 10000000
LCG_MUL       equ 6364136223846793005
LCG_INC       equ 1442695040888963407
LCG_SEED      equ 1

main64:
    PRINTLN "cpl3 guest"
    mov esi, key_iters
    call cmdline_find_uint
    jnc .have_count
    mov eax, DEFAULT_ITERS
.have_count:
    mov [iters], rax
    ENTER_RING3 ring3_main

key_iters:
    db "iters=", 0

ring3_main:
    mov ax, cs
    and eax, 3
    PRINT "cpl="
    PRINT_DEC rax
    call serial_newline
    PRINT "iters="
    PRINT_DEC [iters]
    call serial_newline
    mov rcx, [iters]
    mov rax, LCG_SEED
    mov rbx, LCG_MUL
    mov rsi, LCG_INC
    test rcx, rcx
    jz .done
.step:
    imul rax, rbx
    add rax, rsi
    dec rcx
    jnz .step
.done:
    PRINT "lcg="
    PRINT_HEX rax, 16
    call serial_newline
    PRINTLN "exit from ring 3"
    DEBUG_EXIT 0x15

%include "serial.inc"

section .bss
iters: resq 1
section .text

GUEST_END
