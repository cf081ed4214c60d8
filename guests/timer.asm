; timer: PIT channel 0 at 1000 Hz through the PIC (IRQ0 -> vector 0x20),
; HLT until 50 ticks arrived; checks that latched counts decrease, the
; read-back status byte, and channel 2's OUT on port 0x61. Exits v=0x11.

%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

TICKS_WANTED equ 50
PIT_DIVISOR  equ 1193                 ; 1193182 / 1193 = 1000.15 Hz

main:
    PRINTLN "timer guest"
    call pic_init
    mov al, PIC1_VECTOR
    mov ebx, irq0_handler
    call idt32_set_gate
    mov ax, PIT_DIVISOR
    call pit_set_periodic

    call check_latch
    call check_readback
    call check_channel2

    mov dword [ticks], 0
    mov ax, 0xFFFE                    ; unmask IRQ0 only
    call pic_set_masks
.wait:
    sti
    hlt                               ; STI's shadow: no tick lost before HLT
    cli
    cmp dword [ticks], TICKS_WANTED
    jb .wait
    mov ax, 0xFFFF
    call pic_set_masks
    PRINT "ticks="
    PRINT_DEC [ticks]
    call serial_newline
    DEBUG_EXIT 0x11

irq0_handler:
    inc dword [ticks]
    PIC_EOI_MASTER
    IRQ_RETURN

; Latched counts: every value within 1..divisor, and consecutive samples
; must show the counter going down (a rise is a reload, allowed a few times).
check_latch:
    call pit_read_count
    mov bx, ax                        ; previous sample
    xor esi, esi                      ; decreases seen
    xor edi, edi                      ; rises (reloads) seen
    mov ecx, 100000                   ; sample budget
.sample:
    call pit_read_count
    test ax, ax
    jz .bad_range
    cmp ax, PIT_DIVISOR
    ja .bad_range
    cmp ax, bx
    je .next
    jb .down
    inc edi
    jmp .next
.down:
    inc esi
    cmp esi, 3
    jae .ok
.next:
    mov bx, ax
    loop .sample
    PRINTLN "FAIL: PIT count never decreased"
    DEBUG_EXIT EXIT_CHECK_FAILED
.ok:
    cmp edi, 2                        ; at most one reload per decrease
    ja .too_many_rises
    PRINTLN "pit latch ok"
    ret
.too_many_rises:
    PRINTLN "FAIL: PIT count rose more often than it fell"
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad_range:
    PRINT "FAIL: PIT count out of range: "
    PRINT_HEX eax, 4
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED

; Read-back command (latch status and count of channel 0): the status byte
; names the programmed mode (bit 7, the OUT pin, varies and is masked).
check_readback:
    mov al, 0xC2                      ; read-back, count + status, channel 0
    out PIT_MODE, al
    in al, PIT_CH0                    ; status first
    and al, 0x7F
    mov bl, al
    in al, PIT_CH0                    ; then the count, low byte first
    mov ah, al
    in al, PIT_CH0
    xchg al, ah
    PRINT "pit status="
    PRINT_HEX ebx, 2
    call serial_newline
    test ax, ax
    jz .bad
    cmp ax, PIT_DIVISOR
    ja .bad
    ret
.bad:
    PRINT "FAIL: read-back count out of range: "
    PRINT_HEX eax, 4
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED

; Channel 2 in mode 0 (interrupt on terminal count), gated through port 0x61:
; OUT2 (port 0x61 bit 5) is low while counting and rises at zero (~1 ms).
check_channel2:
    in al, PORT_61
    and al, 0xFC
    or al, 0x01                       ; gate 2 on, speaker data off
    out PORT_61, al
    mov al, 0xB0                      ; channel 2, lobyte/hibyte, mode 0
    out PIT_MODE, al
    mov al, PIT_DIVISOR & 0xFF
    out PIT_CH2, al
    mov al, PIT_DIVISOR >> 8
    out PIT_CH2, al
    in al, PORT_61
    test al, 0x20
    jnz .early
    mov ecx, 10000000
.poll:
    in al, PORT_61
    test al, 0x20
    jnz .fired
    loop .poll
    PRINTLN "FAIL: channel 2 OUT never rose"
    DEBUG_EXIT EXIT_CHECK_FAILED
.fired:
    in al, PORT_61
    and al, 0xFC                      ; gate off again
    out PORT_61, al
    PRINTLN "pit ch2 ok"
    ret
.early:
    PRINTLN "FAIL: channel 2 OUT high right after programming"
    DEBUG_EXIT EXIT_CHECK_FAILED

%include "serial.inc"

section .bss
ticks: resd 1
section .text

GUEST_END
