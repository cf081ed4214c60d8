; ticker: a guest that runs until asked to stop, for the managed-VM tests.
; PIT channel 0 at ~18.2 Hz (divisor 65536) through the PIC; on every tick
; it prints "tick N" and looks at COM1: a received 'q' powers the machine
; off through the ACPI PM1a control port (the test's graceful-stop request),
; an 'e' is echoed back as "echo e" (proof that console input arrives).
; Never exits on its own.

%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

main:
    PRINTLN "ticker guest"
    call pic_init
    mov al, PIC1_VECTOR
    mov ebx, irq0_handler
    call idt32_set_gate
    xor ax, ax                        ; divisor 0 = 65536: the slowest rate
    call pit_set_periodic
    mov dword [ticks], 0
    mov dword [printed], 0
    mov ax, 0xFFFE                    ; unmask IRQ0 only
    call pic_set_masks
.wait:
    sti
    hlt                               ; STI's shadow: no tick lost before HLT
    cli
    mov eax, [ticks]
    cmp eax, [printed]
    je .wait
    mov [printed], eax
    PRINT "tick "
    PRINT_DEC [printed]
    call serial_newline
    call poll_input
    jmp .wait

; Reads every byte waiting in the UART: 'q' powers off, 'e' is echoed.
poll_input:
    mov dx, COM1 + UART_LSR
    in al, dx
    test al, UART_LSR_DR
    jz .done
    mov dx, COM1 + UART_RBR
    in al, dx
    cmp al, 'q'
    je .power_off
    cmp al, 'e'
    jne poll_input
    PRINTLN "echo e"
    jmp poll_input
.power_off:
    PRINTLN "ticker: power off requested"
    mov dx, PM1A_CNT_PORT
    mov ax, PM1_SLP_EN
    out dx, ax
.hang:
    hlt                               ; only reached if power-off is missing
    jmp .hang
.done:
    ret

irq0_handler:
    inc dword [ticks]
    PIC_EOI_MASTER
    IRQ_RETURN

section .bss
ticks:
    resd 1
printed:
    resd 1
section .text

%include "serial.inc"
GUEST_END
