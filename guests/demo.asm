; demo: the guest built into vmmctl (`vmmctl` runs it when no kernel is
; given). Prints a banner, takes 10 PIT interrupts at 100 Hz through the PIC
; (a dot each), prints the RTC's date and time, then powers off through the
; PM1a control port (0x604, where QEMU's pc and q35 machines have it too);
; if the machine is still running 200 ms later it exits through the debug
; port with v=0x7f (QEMU status 255).

%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

TICKS_WANTED equ 10
PIT_DIVISOR  equ 11932                ; 1193182 / 11932 = 100.0 Hz
POWEROFF_GRACE_TICKS equ 20           ; 200 ms

main:
    PRINTLN "vmmctl demo guest: 10 timer ticks, the RTC, then power-off"
    call pic_init
    mov al, PIC1_VECTOR
    mov ebx, irq0_handler
    call idt32_set_gate
    mov ax, PIT_DIVISOR
    call pit_set_periodic
    mov dword [ticks], 0
    mov ax, 0xFFFE                    ; unmask IRQ0 only
    call pic_set_masks
.wait:
    sti
    hlt
    cli
    mov eax, [ticks]
    cmp eax, [ticks_shown]
    je .wait
    inc dword [ticks_shown]           ; one dot per tick, even if two came together
    mov al, '.'
    call serial_putc
    cmp dword [ticks_shown], TICKS_WANTED
    jb .wait
    call serial_newline
    mov ax, 0xFFFF
    call pic_set_masks

    call print_rtc
    PRINTLN "powering off"
    mov dx, PM1A_CNT_PORT
    mov ax, PM1_SLP_EN
    out dx, ax
    ; QEMU acts on the request asynchronously, so give it a few ticks
    ; before concluding that there is no power-off port.
    mov dword [ticks], 0
    mov ax, 0xFFFE
    call pic_set_masks
.linger:
    sti
    hlt
    cli
    cmp dword [ticks], POWEROFF_GRACE_TICKS
    jb .linger
    DEBUG_EXIT 0x7F

irq0_handler:
    inc dword [ticks]
    PIC_EOI_MASTER
    IRQ_RETURN

; Prints "RTC: YYYY-MM-DD HH:MM:SS", converting BCD and 12-hour values as
; register B says.
print_rtc:
    call rtc_wait_uip_clear
    mov al, RTC_REG_B
    call cmos_read
    mov bl, al
    mov al, RTC_SECONDS
    call cmos_read
    call rtc_to_binary
    mov [rtc_sec], al
    mov al, RTC_MINUTES
    call cmos_read
    call rtc_to_binary
    mov [rtc_min], al
    mov al, RTC_HOURS
    call cmos_read
    mov bh, al                        ; bit 7 is PM in 12-hour mode
    and al, 0x7F
    call rtc_to_binary
    test bl, RTC_B_24H
    jnz .hour_done
    cmp al, 12
    jne .not_twelve
    xor al, al                        ; 12 AM is 0, 12 PM becomes 12 below
.not_twelve:
    test bh, 0x80
    jz .hour_done
    add al, 12
.hour_done:
    mov [rtc_hour], al
    mov al, RTC_DAY
    call cmos_read
    call rtc_to_binary
    mov [rtc_day], al
    mov al, RTC_MONTH
    call cmos_read
    call rtc_to_binary
    mov [rtc_month], al
    mov al, RTC_YEAR
    call cmos_read
    call rtc_to_binary
    mov [rtc_year], al
    mov al, RTC_CENTURY
    call cmos_read
    call rtc_to_binary
    cmp al, 19                        ; no believable century register: assume 20xx
    jb .no_century
    cmp al, 99
    jbe .century_ok
.no_century:
    mov al, 20
.century_ok:
    movzx eax, al
    imul eax, eax, 100
    movzx ecx, byte [rtc_year]
    add eax, ecx
    PRINT "RTC: "
    PRINT_DEC eax, 4
    mov al, '-'
    call serial_putc
    movzx eax, byte [rtc_month]
    PRINT_DEC eax, 2
    mov al, '-'
    call serial_putc
    movzx eax, byte [rtc_day]
    PRINT_DEC eax, 2
    mov al, ' '
    call serial_putc
    movzx eax, byte [rtc_hour]
    PRINT_DEC eax, 2
    mov al, ':'
    call serial_putc
    movzx eax, byte [rtc_min]
    PRINT_DEC eax, 2
    mov al, ':'
    call serial_putc
    movzx eax, byte [rtc_sec]
    PRINT_DEC eax, 2
    call serial_newline
    ret

%include "rtc.inc"
%include "serial.inc"

section .bss
ticks:       resd 1
ticks_shown: resd 1
rtc_sec:     resb 1
rtc_min:     resb 1
rtc_hour:    resb 1
rtc_day:     resb 1
rtc_month:   resb 1
rtc_year:    resb 1
section .text

GUEST_END
