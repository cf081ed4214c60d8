; serial: drives COM1 like a driver probing a 16550A: scratch register,
; divisor latch, FIFO enable and IIR, loopback (bytes and modem lines, with
; string I/O: rep outsb into the loopback, rep insb out of the receive FIFO)
; and finally a rep outsb to the real transmitter. Prints "uart ok" or the
; first failed check. Exits v=0x14.

%include "boot.inc"
%include "rt32.inc"

; UART_OUT register, value
%macro UART_OUT 2
    mov dx, COM1 + %1
    mov al, %2
    out dx, al
%endmacro

; UART_EXPECT register, mask, value, "what": reads the register and jumps
; to uart_failed unless (read & mask) == value. Nothing may be printed while
; the UART is in loopback, so failures are reported after restoring it.
%macro UART_EXPECT 4
    mov dx, COM1 + %1
    in al, dx
    and al, %2
    cmp al, %3
    je %%ok
    mov [fail_got], al
    mov dword [fail_what], %%what
    jmp uart_failed
%%what:
    db %4, 0
%%ok:
%endmacro

LOOP_TEXT_LEN equ 4

main:
    PRINTLN "serial guest"
    ; Let the transmitter drain: bytes still shifting out would be lost when
    ; loopback starts.
    mov dx, COM1 + UART_LSR
.drain:
    in al, dx
    test al, UART_LSR_TEMT
    jz .drain

    ; Scratch register holds any byte.
    UART_OUT UART_SCR, 0x5A
    UART_EXPECT UART_SCR, 0xFF, 0x5A, "scratch 5a"
    UART_OUT UART_SCR, 0xA5
    UART_EXPECT UART_SCR, 0xFF, 0xA5, "scratch a5"

    ; Divisor latch: with DLAB set, offsets 0/1 are DLL/DLM, not RBR/IER.
    UART_OUT UART_IER, 0x00
    UART_OUT UART_LCR, UART_LCR_DLAB | UART_LCR_8N1
    UART_EXPECT UART_LCR, 0xFF, UART_LCR_DLAB | UART_LCR_8N1, "lcr with dlab"
    UART_OUT UART_DLL, 0x0C
    UART_OUT UART_DLM, 0x12
    UART_EXPECT UART_DLL, 0xFF, 0x0C, "divisor low"
    UART_EXPECT UART_DLM, 0xFF, 0x12, "divisor high"
    UART_OUT UART_DLL, 0x01           ; back to 115200
    UART_OUT UART_DLM, 0x00
    UART_OUT UART_LCR, UART_LCR_8N1
    UART_EXPECT UART_LCR, 0xFF, UART_LCR_8N1, "lcr"
    UART_EXPECT UART_IER, 0xFF, 0x00, "ier after divisor"

    ; IIR: bits 7:6 report the FIFOs, bit 0 set means nothing pending.
    UART_OUT UART_FCR, 0x00
    UART_EXPECT UART_IIR, 0xFF, 0x01, "iir without fifo"
    UART_OUT UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX
    UART_EXPECT UART_IIR, 0xFF, 0xC1, "iir with fifo"
    ; Enabling the THR-empty interrupt makes it pending at once; reading IIR
    ; while it is the reported cause clears it.
    UART_OUT UART_IER, UART_IER_THRI
    UART_EXPECT UART_IIR, 0xFF, 0xC2, "iir thr empty"
    UART_EXPECT UART_IIR, 0xFF, 0xC1, "iir after thr read"
    UART_OUT UART_IER, 0x00

    ; Loopback: MSR's upper nibble follows MCR (DTR->DSR, RTS->CTS,
    ; OUT1->RI, OUT2->DCD).
    UART_OUT UART_MCR, UART_MCR_LOOP | 0x0F
    UART_EXPECT UART_MSR, 0xF0, 0xF0, "msr all lines"
    UART_OUT UART_MCR, UART_MCR_LOOP | UART_MCR_DTR
    UART_EXPECT UART_MSR, 0xF0, 0x20, "msr dtr->dsr"
    UART_OUT UART_MCR, UART_MCR_LOOP | UART_MCR_RTS
    UART_EXPECT UART_MSR, 0xF0, 0x10, "msr rts->cts"
    UART_OUT UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1
    UART_EXPECT UART_MSR, 0xF0, 0x40, "msr out1->ri"
    UART_OUT UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2
    UART_EXPECT UART_MSR, 0xF0, 0x80, "msr out2->dcd"

    ; A byte written comes back in RBR.
    UART_OUT UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_RTS
    UART_EXPECT UART_LSR, UART_LSR_DR, 0, "lsr empty before loopback"
    UART_OUT UART_THR, 0x55
    UART_EXPECT UART_LSR, UART_LSR_DR, UART_LSR_DR, "lsr data ready"
    UART_EXPECT UART_RBR, 0xFF, 0x55, "loopback byte"
    UART_EXPECT UART_LSR, UART_LSR_DR, 0, "lsr empty after read"

    ; String I/O: rep outsb into the loopback fills the receive FIFO,
    ; rep insb drains it.
    UART_OUT UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX
    mov esi, loop_text
    mov ecx, LOOP_TEXT_LEN
    mov dx, COM1 + UART_THR
    rep outsb
    mov edi, loop_echo
    mov ecx, LOOP_TEXT_LEN
    mov dx, COM1 + UART_RBR
    rep insb
    mov esi, loop_text
    mov edi, loop_echo
    mov ecx, LOOP_TEXT_LEN
    repe cmpsb
    je .echo_ok
    mov al, [edi - 1]
    mov [fail_got], al
    mov dword [fail_what], .echo_what
    jmp uart_failed
.echo_what:
    db "rep insb loopback data", 0
.echo_ok:
    UART_EXPECT UART_LSR, UART_LSR_DR, 0, "lsr empty after rep insb"

    call uart_restore
    PRINTLN "uart ok"
    ; String output to the real transmitter: fits the 16-byte FIFO.
    mov dx, COM1 + UART_LSR
.wait_thre:
    in al, dx
    test al, UART_LSR_THRE
    jz .wait_thre
    mov esi, outs_text
    mov ecx, OUTS_TEXT_LEN
    mov dx, COM1 + UART_THR
    rep outsb
    DEBUG_EXIT 0x14

; Puts the UART back as serial_init left it.
uart_restore:
    UART_OUT UART_MCR, UART_MCR_DTR | UART_MCR_RTS
    UART_OUT UART_IER, 0x00
    UART_OUT UART_LCR, UART_LCR_DLAB | UART_LCR_8N1
    UART_OUT UART_DLL, 0x01
    UART_OUT UART_DLM, 0x00
    UART_OUT UART_LCR, UART_LCR_8N1
    UART_OUT UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX
    ret

uart_failed:
    call uart_restore
    PRINT "FAIL: "
    mov esi, [fail_what]
    call serial_puts
    movzx eax, byte [fail_got]
    PRINT " (read "
    PRINT_HEX eax, 2
    PRINTLN ")"
    DEBUG_EXIT EXIT_CHECK_FAILED

loop_text:
    db "vmm!"
outs_text:
    db "rep outsb ok", 13, 10
OUTS_TEXT_LEN equ $ - outs_text

%include "serial.inc"

section .bss
fail_what: resd 1
fail_got:  resb 1
loop_echo: resb LOOP_TEXT_LEN
section .text

GUEST_END
