; pci: configuration mechanism #1 on bus 0. Scans devices 0-31 (function 0),
; prints the host bridge as "00:00.0 8086:1237" and checks its class with
; byte and word accesses; checks that an absent device reads all ones and
; that CONFIG_ADDRESS reads back what was written. Other present devices are
; not printed: QEMU's pc machine has more of them than vmmctl's. Exits v=0x13.

%include "boot.inc"
%include "rt32.inc"

main:
    PRINTLN "pci guest"
    call check_address_readback
    xor ebx, ebx                      ; device number
    mov dword [absent_device], 0xFFFFFFFF
.scan:
    mov eax, ebx
    shl eax, 11                       ; device field, bits 15:11
    or eax, 0x80000000                ; enable, bus 0, function 0, offset 0
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    cmp ax, 0xFFFF
    je .absent
    test ebx, ebx
    jnz .other
    ; Device 0 is the host bridge on both machines.
    mov [host_bridge_id], eax
    PRINT "00:00.0 "
    movzx ecx, ax
    PRINT_HEX ecx, 4
    PRINT ":"
    shr eax, 16
    PRINT_HEX eax, 4
    call serial_newline
    jmp .next
.other:
    jmp .next                         ; present; not printed (machines differ)
.absent:
    cmp eax, 0xFFFFFFFF               ; the whole dword, not only the vendor
    jne .bad_absent
    cmp dword [absent_device], 0xFFFFFFFF
    jne .next
    mov [absent_device], ebx
.next:
    inc ebx
    cmp ebx, 32
    jb .scan

    cmp dword [host_bridge_id], 0
    je .no_host_bridge
    call check_host_bridge_class
    call check_absent_device
    PRINTLN "pci ok"
    DEBUG_EXIT 0x13
.no_host_bridge:
    PRINTLN "FAIL: no device at 00:00.0"
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad_absent:
    PRINT "FAIL: absent device reads "
    PRINT_HEX eax, 8
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED

; CONFIG_ADDRESS is a register: a dword written reads back (reserved low bits
; 1:0 aside).
check_address_readback:
    mov dx, PCI_CONFIG_ADDRESS
    mov eax, 0x80000008
    out dx, eax
    in eax, dx
    cmp eax, 0x80000008
    jne .bad
    ret
.bad:
    PRINT "FAIL: CONFIG_ADDRESS reads back "
    PRINT_HEX eax, 8
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED

; Offset 8 of the host bridge: the class code (0x0600, host bridge) read as a
; word at CONFIG_DATA+2 and as bytes at +3 and +2, plus header type 0 at 0x0E
; (a byte at CONFIG_DATA+2 of dword 0x0C).
check_host_bridge_class:
    mov dx, PCI_CONFIG_ADDRESS
    mov eax, 0x80000008
    out dx, eax
    mov dx, PCI_CONFIG_DATA + 2
    in ax, dx
    movzx ecx, ax
    mov dx, PCI_CONFIG_DATA + 3
    in al, dx
    mov bh, al
    mov dx, PCI_CONFIG_DATA + 2
    in al, dx
    mov bl, al
    cmp bx, cx
    jne .mismatch
    PRINT "class="
    PRINT_HEX ecx, 4
    call serial_newline
    mov dx, PCI_CONFIG_ADDRESS
    mov eax, 0x8000000C
    out dx, eax
    mov dx, PCI_CONFIG_DATA + 2
    in al, dx
    and eax, 0x7F                     ; bit 7 is multi-function
    PRINT "header-type="
    PRINT_HEX eax, 2
    call serial_newline
    ret
.mismatch:
    PRINTLN "FAIL: byte and word config reads disagree"
    DEBUG_EXIT EXIT_CHECK_FAILED

; Every width of a read from an absent device returns all ones.
check_absent_device:
    mov ebx, [absent_device]
    cmp ebx, 0xFFFFFFFF
    je .none
    shl ebx, 11
    or ebx, 0x80000008
    mov dx, PCI_CONFIG_ADDRESS
    mov eax, ebx
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    cmp eax, 0xFFFFFFFF
    jne .bad
    mov dx, PCI_CONFIG_DATA + 2
    in ax, dx
    cmp ax, 0xFFFF
    jne .bad
    mov dx, PCI_CONFIG_DATA + 1
    in al, dx
    cmp al, 0xFF
    jne .bad
    PRINTLN "absent=ffffffff"
    ret
.none:
    PRINTLN "FAIL: every device slot is populated"
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad:
    PRINTLN "FAIL: absent device does not read all ones"
    DEBUG_EXIT EXIT_CHECK_FAILED

%include "serial.inc"

section .bss
host_bridge_id: resd 1
absent_device:  resd 1
section .text

GUEST_END
