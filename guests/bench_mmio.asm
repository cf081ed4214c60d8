; bench_mmio: for benchmarks, the MMIO twin of pioloop. From 64-bit ring 3
; (so only the accesses exit on this host), writes EAX to the MMIO address
; BENCH_MMIO_ADDR (no RAM there: each write is an MMIO exit) N times:
; N = 100000 or "n=N" from the command line. Then returns to ring 0 with a
; deliberate #GP (HLT at CPL 3), prints "done" and exits with v=0x17.
; The benchmark puts a trivial device there; without one the writes are
; ignored (QEMU: unassigned memory), so the guest ends the same way.

%include "boot.inc"
%include "long.inc"
%include "cmdline.inc"

DEFAULT_COUNT   equ 100000
; Inside the identity-mapped first GiB, far above the guest RAM of the tests.
BENCH_MMIO_ADDR equ 0x30000000

main64:
    PRINTLN "bench_mmio guest"
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
    mov ebx, BENCH_MMIO_ADDR
    test rcx, rcx
    jz .done
.write:
    mov eax, ecx
    mov [rbx], eax
    dec rcx
    jnz .write
.done:
    hlt                               ; #GP at CPL 3: back to ring 0

back_in_ring0:
    PRINTLN "done"
    DEBUG_EXIT 0x17

%include "serial.inc"

section .bss
count: resq 1
section .text

GUEST_END
