; bench_idle: for the memory benchmark, a guest that stays up doing nothing.
; Prints one line, then halts forever with interrupts on, woken by the PIT
; at 100 Hz through the PIC (the handler only acknowledges). It never exits:
; the benchmark stops the VMM.

%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

PIT_DIVISOR equ 11932                 ; 1193182 / 11932 = 100.0 Hz

main:
    call pic_init
    mov al, PIC1_VECTOR
    mov ebx, irq0_handler
    call idt32_set_gate
    mov ax, PIT_DIVISOR
    call pit_set_periodic
    mov ax, 0xFFFE                    ; unmask IRQ0 only
    call pic_set_masks
    PRINTLN "bench_idle guest: halting with 100 Hz timer interrupts"
.idle:
    sti
    hlt
    jmp .idle

irq0_handler:
    inc dword [ticks]
    PIC_EOI_MASTER
    IRQ_RETURN

%include "serial.inc"

section .bss
ticks: resd 1
section .text

GUEST_END
