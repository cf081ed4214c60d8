; msix: drives the first virtio-blk disk through the modern interface
; ("modern=1" on the command line) with MSI-X: finds the MSI-X capability,
; points table entry 1 at the BSP's local APIC (vector 0x50), enables MSI-X,
; gives queue 0 vector 1, reads sector 0 and waits (HLT) for the interrupt;
; then masks entry 1, reads again (no interrupt, the PBA bit is set) and
; unmasks it (the pending message arrives). Exits v=0x32.

%define IDT32_ENTRIES 0x60
%include "boot.inc"
%include "rt32.inc"
%include "pic.inc"

LAPIC_SVR       equ 0xFEE000F0
LAPIC_EOI       equ 0xFEE000B0
VEC_MSIX        equ 0x50
VEC_SPURIOUS    equ 0x5F
VM_MSIX_CONFIG  equ 0x10
VM_QMSIX        equ 0x1A

main:
    PRINTLN "msix guest"
    call pic_init                     ; masked: a BIOS leaves the PIT unmasked at vector 8
    mov al, VEC_MSIX
    mov ebx, msix_handler
    call idt32_set_gate
    mov al, VEC_SPURIOUS
    mov ebx, spurious_handler
    call idt32_set_gate
    mov dword [LAPIC_SVR], 0x100 | VEC_SPURIOUS
    call blk_init
    jc .fail_quiet
    call find_msix
    ; Entry 1: to APIC 0, fixed, vector VEC_MSIX, unmasked.
    mov edi, [msix_table]
    mov dword [edi + 16], 0xFEE00000
    mov dword [edi + 20], 0
    mov dword [edi + 24], VEC_MSIX
    mov dword [edi + 28], 0
    mov ecx, [msix_cap]               ; message control: enable
    mov ebx, [vio_pci]
    call pci_read32
    or eax, 0x80000000
    call pci_write32
    mov ebx, [vio_mmio]
    mov word [ebx + VM_MSIX_CONFIG], 0xFFFF
    mov word [ebx + VM_QSELECT], 0
    mov word [ebx + VM_QMSIX], 1
    movzx eax, word [ebx + VM_QMSIX]
    PRINT "queue 0 vector="
    PRINT_DEC eax
    call serial_newline
    mov word [ebx + VM_QMSIX], 9      ; past the table: refused
    movzx eax, word [ebx + VM_QMSIX]
    PRINT "vector 9 reads "
    PRINT_HEX eax, 4
    call serial_newline
    mov word [ebx + VM_QMSIX], 1

    call read_sector0
    mov esi, blk_data                 ; the host's text
    mov byte [esi + 16], 0
    call serial_puts
    call serial_newline
.wait1:
    cli
    cmp dword [msix_count], 1
    jae .got1
    sti
    hlt
    jmp .wait1
.got1:
    PRINT "msix interrupts="
    PRINT_DEC [msix_count]
    call serial_newline

    mov edi, [msix_table]
    mov dword [edi + 28], 1           ; mask entry 1
    call read_sector0
    ; The used ring can show the request done before the pending bit is set
    ; (QEMU completes it on another thread): give the bit a bounded while.
    mov ecx, 1000000
.pba_wait:
    mov eax, [msix_pba]
    mov eax, [eax]
    test eax, 2
    jnz .pba_seen
    pause
    dec ecx
    jnz .pba_wait
.pba_seen:
    PRINT "masked: interrupts="
    PRINT_DEC [msix_count]
    PRINT " pba="
    PRINT_HEX eax, 1
    call serial_newline
    mov edi, [msix_table]
    mov dword [edi + 28], 0           ; unmask: the pending message is sent
.wait2:
    cli
    cmp dword [msix_count], 2
    jae .got2
    sti
    hlt
    jmp .wait2
.got2:
    mov eax, [msix_pba]
    mov eax, [eax]
    PRINT "unmasked: interrupts="
    PRINT_DEC [msix_count]
    PRINT " pba="
    PRINT_HEX eax, 1
    call serial_newline
    DEBUG_EXIT 0x32
.fail_quiet:
    DEBUG_EXIT EXIT_CHECK_FAILED

read_sector0:
    mov eax, BLK_T_IN
    xor edx, edx
    mov esi, blk_data
    mov ecx, 512
    mov bl, 1
    call blk_request
    jc .fail
    test al, al
    jnz .fail
    ret
.fail:
    PRINTLN "FAIL: read of sector 0"
    DEBUG_EXIT EXIT_CHECK_FAILED

; Walks the capability list for MSI-X: [msix_cap], table and PBA addresses.
find_msix:
    mov ebx, [vio_pci]
    mov ecx, 0x34
    call pci_read32
    movzx esi, al
.walk:
    test esi, esi
    jz .none
    mov ecx, esi
    call pci_read32
    cmp al, 0x11
    je .found
    movzx esi, ah
    jmp .walk
.none:
    PRINTLN "FAIL: no MSI-X capability"
    DEBUG_EXIT EXIT_CHECK_FAILED
.found:
    mov [msix_cap], esi
    shr eax, 16
    and eax, 0x7FF
    inc eax
    PRINT "msix table size="
    PRINT_DEC eax
    call serial_newline
    lea ecx, [esi + 4]
    call bir_address
    mov [msix_table], eax
    lea ecx, [esi + 8]
    call bir_address
    mov [msix_pba], eax
    ret

; ECX = config offset of a BIR/offset dword: EAX = the address it names.
bir_address:
    push edx
    call pci_read32
    mov edx, eax
    and edx, 7
    and eax, ~7
    push eax
    lea ecx, [0x10 + edx * 4]
    call pci_read32
    and eax, ~0xF
    pop edx
    add eax, edx
    pop edx
    ret

; EBX = function's config address, ECX = register, EAX = dword to write.
pci_write32:
    push edx
    push eax
    mov eax, ebx
    or eax, ecx
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    pop eax
    mov dx, PCI_CONFIG_DATA
    out dx, eax
    pop edx
    ret

msix_handler:
    inc dword [msix_count]
    mov dword [LAPIC_EOI], 0
    IRQ_RETURN

spurious_handler:
    IRQ_RETURN

%include "virtio.inc"
%include "virtio_blk.inc"
%include "serial.inc"
%include "cmdline.inc"

section .bss
alignb 4
msix_count:  resd 1
msix_cap:    resd 1
msix_table:  resd 1
msix_pba:    resd 1

GUEST_END
