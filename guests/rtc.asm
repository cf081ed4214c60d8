; rtc: MC146818 registers and CMOS memory, then the periodic interrupt at
; 1024 Hz (IRQ8 on the slave PIC, through the cascade) until 8 arrived.
; Prints only values that do not depend on the wall clock. Exits v=0x12.

%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

IRQS_WANTED   equ 8
RTC_A_1024HZ  equ 0x26                ; 32.768 kHz time base, rate 6 = 1024 Hz

main:
    PRINTLN "rtc guest"
    ; Register A without UIP, which comes and goes with the seconds.
    mov al, RTC_REG_A
    call cmos_read
    and al, 0x7F
    movzx eax, al
    PRINT "regA="
    PRINT_HEX eax, 2
    call serial_newline
    mov al, RTC_REG_B
    call cmos_read
    movzx eax, al
    mov [reg_b], al
    PRINT "regB="
    PRINT_HEX eax, 2
    call serial_newline
    mov al, RTC_REG_D
    call cmos_read
    movzx eax, al
    PRINT "regD="
    PRINT_HEX eax, 2
    call serial_newline
    ; Base memory size in KiB, CMOS 0x15 (low) and 0x16 (high).
    mov al, CMOS_BASE_MEM_HI
    call cmos_read
    mov ah, al
    mov al, CMOS_BASE_MEM_LO
    call cmos_read
    movzx eax, ax
    PRINT "base="
    PRINT_DEC eax
    call serial_newline
    call check_time

    ; Periodic interrupt: vector 0x28 (IRQ8), master IRQ2 (cascade) open.
    call pic_init
    mov al, PIC2_VECTOR
    mov ebx, irq8_handler
    call idt32_set_gate
    mov al, RTC_REG_A
    mov ah, RTC_A_1024HZ
    call cmos_write
    mov al, RTC_REG_C                 ; drop any stale flags
    call cmos_read
    mov dword [periodic_irqs], 0
    mov byte [first_c], 0
    mov ah, [reg_b]
    or ah, RTC_B_PIE
    mov al, RTC_REG_B
    call cmos_write
    mov ax, 0xFEFB                    ; master: IRQ2 open; slave: IRQ8 open
    call pic_set_masks
.wait:
    sti
    hlt
    cli
    cmp dword [periodic_irqs], IRQS_WANTED
    jb .wait
    mov ax, 0xFFFF
    call pic_set_masks
    mov ah, [reg_b]                   ; periodic interrupt off again
    mov al, RTC_REG_B
    call cmos_write
    mov al, RTC_REG_C
    call cmos_read

    PRINT "rtc-periodic="
    PRINT_DEC [periodic_irqs]
    call serial_newline
    ; IRQF and PF of the first acknowledged interrupt (AF and UF vary).
    movzx eax, byte [first_c]
    and al, RTC_C_IRQF | RTC_C_PF
    PRINT "regC="
    PRINT_HEX eax, 2
    call serial_newline
    DEBUG_EXIT 0x12

; Reading register C acknowledges the interrupt and lowers IRQ8.
irq8_handler:
    push eax
    mov al, RTC_REG_C
    call cmos_read
    test al, RTC_C_PF
    jz .not_periodic
    cmp byte [first_c], 0
    jne .counted
    mov [first_c], al
.counted:
    inc dword [periodic_irqs]
.not_periodic:
    PIC_EOI_SLAVE
    pop eax
    IRQ_RETURN

; Reads the time once no update is in progress and checks every field is a
; valid value in the format register B announces; prints "time valid".
check_time:
    call rtc_wait_uip_clear
    mov bl, [reg_b]
    mov esi, time_fields
.field:
    mov al, [esi]                     ; register index, 0xFF ends the table
    cmp al, 0xFF
    je .done
    call cmos_read
    test bl, RTC_B_DM_BINARY
    jnz .binary
    cmp byte [esi], RTC_HOURS         ; 12-hour BCD: bit 7 is PM
    jne .bcd_digits
    test bl, RTC_B_24H
    jnz .bcd_digits
    and al, 0x7F
.bcd_digits:
    mov ah, al
    and ah, 0x0F
    cmp ah, 9
    ja .bad
    cmp al, 0x9F
    ja .bad
    call rtc_to_binary
.binary:
    cmp byte [esi], RTC_HOURS
    jne .range
    test bl, RTC_B_24H
    jnz .range
    and al, 0x7F                      ; 12-hour binary: bit 7 is PM
.range:
    cmp al, [esi + 1]
    jb .bad
    cmp al, [esi + 2]
    ja .bad
    add esi, 3
    jmp .field
.done:
    PRINTLN "time valid"
    ret
.bad:
    movzx eax, byte [esi]
    PRINT "FAIL: RTC register "
    PRINT_HEX eax, 2
    PRINTLN " out of range"
    DEBUG_EXIT EXIT_CHECK_FAILED

; register, minimum, maximum (binary). Hours allow both 12- and 24-hour.
time_fields:
    db RTC_SECONDS, 0, 59
    db RTC_MINUTES, 0, 59
    db RTC_HOURS, 0, 23
    db RTC_DAY, 1, 31
    db RTC_MONTH, 1, 12
    db RTC_YEAR, 0, 99
    db 0xFF

%include "rtc.inc"
%include "serial.inc"

section .bss
periodic_irqs: resd 1
reg_b:         resb 1
first_c:       resb 1
section .text

GUEST_END
