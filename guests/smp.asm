; smp: finds the CPUs in the ACPI MADT (RSDP by the standard scan of
; 0xE0000-0xFFFFF), starts each AP with INIT + SIPI into a real-mode
; trampoline at 0x10000, has each AP print its APIC id from its own CPU,
; pings every AP with a fixed IPI (the AP answers with an IPI to the BSP),
; sends one all-but-self IPI, then runs the BSP's local APIC timer periodic
; (10 ticks) and one-shot, and routes the PIT through the I/O APIC (input 2,
; the MADT's override of IRQ 0) after switching the IMCR to APIC mode.
; One AP at a time prints, so the output is the same on every run.
; Exits v=0x31.

%define IDT32_ENTRIES 0x60
%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

LAPIC           equ 0xFEE00000
LAPIC_ID        equ LAPIC + 0x20
LAPIC_EOI       equ LAPIC + 0xB0
LAPIC_SVR       equ LAPIC + 0xF0
LAPIC_ICR_LO    equ LAPIC + 0x300
LAPIC_ICR_HI    equ LAPIC + 0x310
LAPIC_LVT_TIMER equ LAPIC + 0x320
LAPIC_TIMER_ICR equ LAPIC + 0x380
LAPIC_TIMER_CCR equ LAPIC + 0x390
LAPIC_TIMER_DCR equ LAPIC + 0x3E0
IOAPIC_SEL      equ 0xFEC00000
IOAPIC_WIN      equ 0xFEC00010

VEC_PING        equ 0x41            ; BSP -> AP
VEC_PONG        equ 0x42            ; AP -> BSP (also "I am up")
VEC_BCAST       equ 0x43            ; all-but-self
VEC_TIMER       equ 0x44
VEC_PIT         equ 0x45
VEC_ONESHOT     equ 0x46            ; its own vector: a periodic tick still in IRR is not it
VEC_SPURIOUS    equ 0x5F

TRAMPOLINE      equ 0x10000         ; SIPI vector 0x10
AP_STACK_BYTES  equ 4096
MAX_CPUS        equ 8

main:
    PRINTLN "smp guest"
    call pic_init                     ; all 8259 inputs masked: only APIC interrupts
    mov al, VEC_PONG
    mov ebx, pong_handler
    call idt32_set_gate
    mov al, VEC_PING
    mov ebx, ping_handler
    call idt32_set_gate
    mov al, VEC_BCAST
    mov ebx, bcast_handler
    call idt32_set_gate
    mov al, VEC_TIMER
    mov ebx, timer_handler
    call idt32_set_gate
    mov al, VEC_PIT
    mov ebx, timer_handler
    call idt32_set_gate
    mov al, VEC_ONESHOT
    mov ebx, oneshot_handler
    call idt32_set_gate
    mov al, VEC_SPURIOUS
    mov ebx, spurious_handler
    call idt32_set_gate
    mov al, 2                         ; NMI
    mov ebx, nmi_handler
    call idt32_set_gate

    call count_madt_cpus
    PRINT "madt cpus="
    PRINT_DEC [cpus]
    call serial_newline
    mov dword [LAPIC_SVR], 0x100 | VEC_SPURIOUS
    mov eax, [LAPIC_ID]
    shr eax, 24
    PRINT "bsp apic id="
    PRINT_DEC eax
    call serial_newline

    call start_aps
    call ping_aps
    call nmi_aps
    call broadcast
    call lapic_timer
    call ioapic_pit
    DEBUG_EXIT 0x31

; ---- ACPI: count enabled processor entries of the MADT ----
count_madt_cpus:
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
    mov esi, [esi + 16]               ; RSDT
    mov ecx, [esi + 4]
    sub ecx, 36
    shr ecx, 2                        ; entries
    lea edi, [esi + 36]
.table:
    mov ebx, [edi]
    cmp dword [ebx], "APIC"
    je .madt
    add edi, 4
    loop .table
    PRINTLN "FAIL: no MADT"
    DEBUG_EXIT EXIT_CHECK_FAILED
.madt:
    mov ecx, [ebx + 4]
    add ecx, ebx                      ; end
    lea esi, [ebx + 44]
    xor eax, eax
.entry:
    cmp esi, ecx
    jae .done
    cmp byte [esi], 0                 ; processor local APIC
    jne .skip
    test byte [esi + 4], 1            ; enabled
    jz .skip
    inc eax
.skip:
    movzx edx, byte [esi + 1]
    test edx, edx
    jz .done                          ; a zero length would loop forever
    add esi, edx
    jmp .entry
.done:
    cmp eax, MAX_CPUS
    jbe .ok
    mov eax, MAX_CPUS
.ok:
    mov [cpus], eax
    ret

; ---- INIT + SIPI, one AP at a time ----
start_aps:
    mov esi, trampoline_start         ; copy the trampoline below 1 MiB
    mov edi, TRAMPOLINE
    mov ecx, trampoline_end - trampoline_start
    rep movsb
    mov ebx, 1
.next_ap:
    cmp ebx, [cpus]
    jae .done
    mov eax, ebx
    shl eax, 24
    mov [LAPIC_ICR_HI], eax
    mov dword [LAPIC_ICR_LO], 0x4500  ; INIT, assert, edge
    mov [LAPIC_ICR_HI], eax
    mov dword [LAPIC_ICR_LO], 0x4600 | (TRAMPOLINE >> 12)  ; start-up
    mov [LAPIC_ICR_HI], eax
    mov dword [LAPIC_ICR_LO], 0x4600 | (TRAMPOLINE >> 12)  ; the second SIPI is ignored
.wait:
    cli
    cmp [aps_up], ebx
    jae .up
    sti
    hlt                               ; the AP's "up" IPI wakes us
    jmp .wait
.up:
    inc ebx
    jmp .next_ap
.done:
    ret

; ---- a fixed IPI to each AP, answered by an IPI back ----
ping_aps:
    mov ebx, 1
.next:
    cmp ebx, [cpus]
    jae .done
    mov eax, ebx
    shl eax, 24
    mov [LAPIC_ICR_HI], eax
    mov dword [LAPIC_ICR_LO], VEC_PING  ; fixed, physical
.wait:
    cli
    cmp [pong_from], ebx
    je .got
    sti
    hlt
    jmp .wait
.got:
    inc ebx
    jmp .next
.done:
    mov eax, [cpus]
    dec eax
    PRINT "bsp got pongs="
    PRINT_DEC eax
    call serial_newline
    ret

; ---- an NMI IPI to each AP (one each: without IRET, NMIs stay blocked after it) ----
nmi_aps:
    mov ebx, 1
.next:
    cmp ebx, [cpus]
    jae .done
    mov eax, ebx
    shl eax, 24
    mov [LAPIC_ICR_HI], eax
    mov dword [LAPIC_ICR_LO], 0x4400  ; NMI, physical
.wait:
    cli
    cmp [nmi_from], ebx
    je .got
    sti
    hlt
    jmp .wait
.got:
    inc ebx
    jmp .next
.done:
    mov eax, [cpus]
    dec eax
    PRINT "bsp got nmi answers="
    PRINT_DEC eax
    call serial_newline
    ret

; ---- all-but-self: every AP counts it ----
broadcast:
    mov dword [LAPIC_ICR_LO], (3 << 18) | VEC_BCAST
    mov ebx, [cpus]
    dec ebx
.wait:
    cli
    cmp [bcast_count], ebx
    jae .done
    sti
    hlt
    jmp .wait
.done:
    PRINT "broadcast seen by="
    PRINT_DEC [bcast_count]
    call serial_newline
    ret

; ---- the BSP's APIC timer: periodic, then one-shot ----
lapic_timer:
    mov dword [ticks], 0
    mov dword [LAPIC_TIMER_DCR], 0x3      ; divide by 16
    mov dword [LAPIC_LVT_TIMER], (1 << 17) | VEC_TIMER
    mov dword [LAPIC_TIMER_ICR], 62500    ; 1 ms at 1 GHz / 16
.wait:
    cli
    cmp dword [ticks], 10
    jae .periodic_done
    sti
    hlt
    jmp .wait
.periodic_done:
    mov dword [LAPIC_TIMER_ICR], 0        ; stops it
    PRINTLN "lapic periodic ticks=10"
    mov dword [LAPIC_LVT_TIMER], VEC_ONESHOT ; one-shot
    mov dword [LAPIC_TIMER_ICR], 625000   ; 10 ms
    mov eax, [LAPIC_TIMER_CCR]            ; counting down (0 if it already expired)
    cmp eax, 625000
    ja .bad_count
.wait1:
    cli
    cmp dword [oneshots], 1
    jae .fired
    sti
    hlt
    jmp .wait1
.fired:
    mov eax, [LAPIC_TIMER_CCR]
    test eax, eax
    jnz .bad_count
    PRINTLN "lapic one-shot fired, count=0"
    ret
.bad_count:
    PRINT "FAIL: timer current count "
    PRINT_HEX eax, 8
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED

; ---- the PIT through I/O APIC input 2, in APIC mode ----
ioapic_pit:
    mov al, 0x70                      ; IMCR: route the 8259 away (APIC mode)
    out 0x22, al
    mov al, 1
    out 0x23, al
    mov dword [ticks], 0
    mov ax, 1193                      ; 1 kHz
    call pit_set_periodic
    mov dword [IOAPIC_SEL], 0x15      ; entry 2, high: destination APIC 0
    mov dword [IOAPIC_WIN], 0
    mov dword [IOAPIC_SEL], 0x14      ; entry 2, low: fixed, edge, unmasked
    mov dword [IOAPIC_WIN], VEC_PIT
.wait:
    cli
    cmp dword [ticks], 10
    jae .done
    sti
    hlt
    jmp .wait
.done:
    mov dword [IOAPIC_SEL], 0x14
    mov dword [IOAPIC_WIN], 0x10000   ; masked
    PRINTLN "ioapic pit ticks=10"
    ret

; ---- handlers ----
timer_handler:
    inc dword [ticks]
    mov dword [LAPIC_EOI], 0
    IRQ_RETURN

oneshot_handler:
    inc dword [oneshots]
    mov dword [LAPIC_EOI], 0
    IRQ_RETURN

pong_handler:
    mov dword [LAPIC_EOI], 0
    IRQ_RETURN

spurious_handler:
    IRQ_RETURN

; On an AP: print, answer with a pong naming this CPU.
ping_handler:
    push eax
    mov eax, [LAPIC_ID]
    shr eax, 24
    PRINT "cpu "
    PRINT_DEC eax
    PRINTLN " got ping"
    mov [pong_from], eax
    mov dword [LAPIC_EOI], 0
    mov dword [LAPIC_ICR_HI], 0
    mov dword [LAPIC_ICR_LO], VEC_PONG
    pop eax
    IRQ_RETURN

; On an AP: an NMI (no EOI: NMIs do not go through ISR).
nmi_handler:
    push eax
    mov eax, [LAPIC_ID]
    shr eax, 24
    PRINT "cpu "
    PRINT_DEC eax
    PRINTLN " got nmi"
    mov [nmi_from], eax
    mov dword [LAPIC_ICR_HI], 0
    mov dword [LAPIC_ICR_LO], VEC_PONG
    pop eax
    IRQ_RETURN

bcast_handler:
    lock inc dword [bcast_count]
    mov dword [LAPIC_EOI], 0
    mov dword [LAPIC_ICR_HI], 0
    mov dword [LAPIC_ICR_LO], VEC_PONG
    IRQ_RETURN

; ---- the AP side ----
bits 16
trampoline_start:
    cli
    mov ax, cs
    mov ds, ax
    o32 lgdt [tramp_gdt_ptr - trampoline_start]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp dword SEL_CODE32:ap_entry32
tramp_gdt_ptr:
    dw gdt32_end - gdt32 - 1
    dd gdt32
trampoline_end:
bits 32

ap_entry32:
    mov ax, SEL_DATA32
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov ebx, [LAPIC_ID]
    shr ebx, 24
    cmp ebx, MAX_CPUS
    jae .park
    lea esp, [ebx + 1]
    shl esp, 12
    add esp, ap_stacks
    lidt [idt32_ptr]
    mov dword [LAPIC_SVR], 0x100 | VEC_SPURIOUS
    PRINT "cpu "
    PRINT_DEC ebx
    PRINT " up, apic id "
    mov eax, [LAPIC_ID]
    shr eax, 24
    PRINT_DEC eax
    call serial_newline
    lock inc dword [aps_up]
    mov dword [LAPIC_ICR_HI], 0
    mov dword [LAPIC_ICR_LO], VEC_PONG
.idle:
    sti
    hlt
    jmp .idle
.park:
    cli
    hlt
    jmp .park

%include "serial.inc"

section .bss
alignb 4
cpus:        resd 1
aps_up:      resd 1
pong_from:   resd 1
nmi_from:    resd 1
bcast_count: resd 1
ticks:       resd 1
oneshots:    resd 1
alignb 4096
ap_stacks:   resb AP_STACK_BYTES * MAX_CPUS

GUEST_END
