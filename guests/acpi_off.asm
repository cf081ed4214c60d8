; acpi_off: an ACPI guest in miniature. Reads the SCI and the PM1a blocks
; from the FADT (RSDP by the standard scan, then the RSDT), routes the SCI
; through the I/O APIC as the MADT says (level, active high), enables the
; fixed power button and waits; when the host presses the button (vmmctl
; stop) the SCI handler clears PWRBTN_STS and the guest enters S5 through
; PM1a_CNT (SLP_TYP 0, as the DSDT's _S5 says). Powers off (status 0).

%define IDT32_ENTRIES 0x60
%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

LAPIC_SVR       equ 0xFEE000F0
LAPIC_EOI       equ 0xFEE000B0
IOAPIC_SEL      equ 0xFEC00000
IOAPIC_WIN      equ 0xFEC00010
VEC_SCI         equ 0x51
VEC_SPURIOUS    equ 0x5F
PWRBTN          equ 1 << 8

main:
    PRINTLN "acpi power button guest"
    call pic_init
    mov al, VEC_SCI
    mov ebx, sci_handler
    call idt32_set_gate
    mov al, VEC_SPURIOUS
    mov ebx, spurious_handler
    call idt32_set_gate
    call find_fadt
    movzx eax, word [ebx + 46]
    mov [sci], eax
    mov eax, [ebx + 56]
    mov [pm1a_evt], eax
    mov eax, [ebx + 64]
    mov [pm1a_cnt], eax
    PRINT "sci="
    PRINT_DEC [sci]
    PRINT " pm1a_evt="
    PRINT_HEX [pm1a_evt], 4
    PRINT " pm1a_cnt="
    PRINT_HEX [pm1a_cnt], 4
    call serial_newline

    mov dword [LAPIC_SVR], 0x100 | VEC_SPURIOUS
    mov al, 0x70                      ; IMCR: APIC mode
    out 0x22, al
    mov al, 1
    out 0x23, al
    mov eax, [sci]                    ; redirection entry SCI: level, active high, to APIC 0
    lea eax, [0x11 + eax * 2]
    mov [IOAPIC_SEL], eax
    mov dword [IOAPIC_WIN], 0
    dec eax
    mov [IOAPIC_SEL], eax
    mov dword [IOAPIC_WIN], (1 << 15) | VEC_SCI
    mov edx, [pm1a_evt]
    add edx, 2
    mov ax, PWRBTN                    ; PM1_EN: the power button
    out dx, ax
    PRINTLN "waiting for the power button"
.wait:
    cli
    cmp dword [pressed], 0
    jne .pressed
    sti
    hlt
    jmp .wait
.pressed:
    PRINTLN "power button pressed: entering S5"
    mov edx, [pm1a_cnt]
    mov ax, PM1_SLP_EN                ; SLP_TYP 0
    out dx, ax
    PRINTLN "FAIL: still running after S5"
    DEBUG_EXIT EXIT_CHECK_FAILED

; EBX = the FADT, found from the RSDP's RSDT.
find_fadt:
    mov esi, 0xE0000
.scan:
    cmp dword [esi], "RSD "
    jne .next
    cmp dword [esi + 4], "PTR "
    je .found
.next:
    add esi, 16
    cmp esi, 0x100000
    jb .scan
    PRINTLN "FAIL: no RSDP"
    DEBUG_EXIT EXIT_CHECK_FAILED
.found:
    mov esi, [esi + 16]
    mov ecx, [esi + 4]
    sub ecx, 36
    shr ecx, 2
    lea edi, [esi + 36]
.table:
    mov ebx, [edi]
    cmp dword [ebx], "FACP"
    je .done
    add edi, 4
    loop .table
    PRINTLN "FAIL: no FADT"
    DEBUG_EXIT EXIT_CHECK_FAILED
.done:
    ret

sci_handler:
    push eax
    push edx
    mov edx, [pm1a_evt]
    in ax, dx                         ; PM1_STS
    test ax, PWRBTN
    jz .eoi
    mov dword [pressed], 1
    mov ax, PWRBTN                    ; write one to clear: the SCI drops
    out dx, ax
.eoi:
    mov dword [LAPIC_EOI], 0
    pop edx
    pop eax
    IRQ_RETURN

spurious_handler:
    IRQ_RETURN

%include "serial.inc"

section .bss
alignb 4
sci:       resd 1
pm1a_evt:  resd 1
pm1a_cnt:  resd 1
pressed:   resd 1

GUEST_END
