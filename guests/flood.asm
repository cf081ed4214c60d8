; flood: a guest that writes to its serial console as fast as it can, for the
; load tests: "flood N" lines without end; a 'q' received on COM1 powers the
; machine off (the test's graceful stop), everything else is ignored.

%include "boot.inc"
%include "rt32.inc"

main:
    PRINTLN "flood guest"
    mov dword [lines], 0
.loop:
    inc dword [lines]
    PRINT "flood "
    PRINT_DEC [lines]
    call serial_newline
    mov dx, COM1 + UART_LSR
    in al, dx
    test al, UART_LSR_DR
    jz .loop
    mov dx, COM1 + UART_RBR
    in al, dx
    cmp al, 'q'
    jne .loop
    PRINTLN "flood: power off requested"
    mov dx, PM1A_CNT_PORT
    mov ax, PM1_SLP_EN
    out dx, ax
.hang:
    hlt
    jmp .hang

section .bss
lines:
    resd 1
section .text

%include "serial.inc"
GUEST_END
