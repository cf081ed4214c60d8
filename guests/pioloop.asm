; pioloop: for benchmarks. From 64-bit ring 3 (so the loop itself runs
; natively on this host and only the port writes exit), writes N bytes to
; POST port 0x80 with `out dx, al`: N = 100000 or "n=N" from the command line.
; Then returns to ring 0 with a deliberate #GP (HLT at CPL 3), prints "done"
; from there and exits with v=0x16.

%define IOPB_ALLOW_POST 1
%include "boot.inc"
%include "long.inc"
%include "cmdline.inc"

DEFAULT_COUNT equ 100000

main64:
    PRINTLN "pioloop guest"
    mov esi, key_n
    call cmdline_find_uint
    jnc .have_count
    mov eax, DEFAULT_COUNT
.have_count:
    mov [count], rax
    mov rax, back_in_ring0
    mov [ring3_hlt_handler], rax
    ENTER_RING3 ring3_main

key_n:
    db "n=", 0

ring3_main:
    PRINT "n="
    PRINT_DEC [count]
    call serial_newline
    mov rcx, [count]
    mov dx, POST_PORT
    test rcx, rcx
    jz .done
.write:
    mov al, cl
    out dx, al
    dec rcx
    jnz .write
.done:
    hlt                               ; #GP at CPL 3: back to ring 0

back_in_ring0:
    mov ax, cs
    and eax, 3
    PRINT "back in ring "
    PRINT_DEC rax
    call serial_newline
    PRINTLN "done"
    DEBUG_EXIT 0x16

%include "serial.inc"

section .bss
count: resq 1
section .text

GUEST_END
