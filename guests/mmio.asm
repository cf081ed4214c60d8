; mmio: MOV-family accesses to a device at MMIO_ADDR (0xE0000000, in the PCI
; hole) from 32-bit protected mode, real mode and 64-bit long mode, printing
; what each read returned. The OpenBSD back-end must decode every one of
; them (vmm(4) reports MMIO without address or data); KVM decodes them in the
; kernel, so the two back-ends must agree.
;
; The test puts a 4 KiB register file there (writes stick, the dword at
; 0xFF0 reads "MMIO"); without it the reads return zeros. Not one of the
; QEMU oracle guests: QEMU's pc has nothing at that address.
;
;   p32:  MOV imm/reg stores, moffs/ModRM/SIB loads, MOVZX, MOVSX, STOSD, AH-style
;         byte registers, with paging off
;   real: "unreal" mode (DS keeps the flat 4 GiB descriptor after CR0.PE is
;         cleared) and 32-bit addressing (0x67) from 16-bit code
;   long: 64-bit stores and loads, moffs64, REX.R/REX.B/SIB, MOVZX into r10,
;         STOSQ, through a 2 MiB page mapping the hole
; Ends with "done" and debug exit 0x19 (QEMU status 51).

%include "boot.inc"
%include "rt32.inc"

MMIO_ADDR   equ 0xE0000000
REAL_STUB   equ 0x7000          ; the real-mode code runs here (below 1 MiB)
REAL_RESULT equ 0x7800          ; and leaves its results here
SEL_CODE16  equ 0x18
SEL_CODE64  equ 0x20
MSR_EFER    equ 0xC0000080

main:
    PRINTLN "mmio guest"
    lgdt [gdt_mmio_ptr]         ; boot.inc's 0x08/0x10 plus 16-bit and 64-bit code
    jmp SEL_CODE32:.reloaded
.reloaded:

    ; ---- 32-bit protected mode, paging off ----
    PRINT "p32:"
    mov dword [MMIO_ADDR], 0x11223344           ; C7 /0 disp32 imm32
    mov eax, [MMIO_ADDR]                        ; A1 moffs32
    call print_eax
    mov byte [MMIO_ADDR + 0x10], 0xa5           ; C6 /0
    mov ebx, MMIO_ADDR
    mov word [ebx + 0x20], 0xbeef               ; 66 C7 /0 disp8
    movzx eax, byte [ebx + 0x10]                ; 0F B6
    call print_eax
    movsx eax, word [ebx + 0x20]                ; 0F BF
    call print_eax
    mov ecx, 0x55
    mov [ebx + ecx * 4 + 0x100], ecx            ; 89 /r SIB: offset 0x254
    mov eax, [ebx + 0x254]                      ; 8B /r disp32
    call print_eax
    mov edi, MMIO_ADDR + 0x300
    mov eax, 0xcafef00d
    cld
    stosd                                       ; AB: EDI += 4
    mov eax, [MMIO_ADDR + 0x300]
    call print_eax
    mov eax, edi
    call print_eax
    mov dh, 0x7e
    mov [ebx + 0x30], dh                        ; 88 /r with DH
    xor eax, eax
    mov ah, [ebx + 0x30]                        ; 8A /r into AH
    shr eax, 8
    call print_eax
    mov eax, [ebx + 0xff0]                      ; the device's id
    call print_eax
    call serial_newline

    ; ---- real mode ----
    mov edi, REAL_RESULT
    xor eax, eax
    mov ecx, 16
    rep stosd
    mov esi, real_stub
    mov edi, REAL_STUB
    mov ecx, real_stub_end - real_stub
    rep movsb
    mov [saved_esp], esp
    jmp SEL_CODE16:REAL_STUB    ; 16-bit protected mode, then real mode
back_from_real:
    mov ax, SEL_DATA32
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, [saved_esp]
    PRINT "real:"
    mov esi, REAL_RESULT
    mov ecx, 4
.real_results:
    lodsd
    call print_eax
    loop .real_results
    call serial_newline

    ; ---- 64-bit long mode ----
    mov dword [pml4], pdpt + 0x03
    mov dword [pdpt], pd_low + 0x03
    mov dword [pdpt + 3 * 8], pd_hole + 0x03
    mov edi, pd_low
    mov eax, 0x83               ; present, writable, 2 MiB
    mov ecx, 512
.map_low:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop .map_low
    mov edi, pd_hole
    mov eax, 0xC0000000 | 0x9b  ; present, writable, write-through, uncached, 2 MiB
    mov ecx, 512
.map_hole:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop .map_hole
    mov eax, cr4
    or eax, 1 << 5              ; PAE
    mov cr4, eax
    mov eax, pml4
    mov cr3, eax
    mov ecx, MSR_EFER
    rdmsr
    or eax, 1 << 8              ; LME
    wrmsr
    mov eax, cr0
    or eax, 1 << 31             ; PG
    mov cr0, eax
    jmp SEL_CODE64:long_mode

; " " and EAX in hex.
print_eax:
    PRINT " "
    PRINT_HEX eax, 8
    ret

; The real-mode part: copied to REAL_STUB and entered in 16-bit protected
; mode. Code only (no stack, no interrupts); absolute addresses inside it
; are REAL_STUB-relative.
bits 16
real_stub:
    mov eax, cr0
    and eax, ~1
    mov cr0, eax
    jmp 0:REAL_STUB + (.real - real_stub)
.real:
    ; CS is now real mode (base 0). DS still holds the flat 4 GiB data
    ; descriptor loaded in protected mode: 32-bit addresses reach MMIO.
    a32 mov dword [MMIO_ADDR + 0x400], 0x01020304   ; 67 66 C7 /0
    a32 mov eax, [MMIO_ADDR + 0x400]                ; 67 66 A1 moffs32
    a32 mov [REAL_RESULT], eax
    mov ebx, MMIO_ADDR
    a32 mov word [ebx + 0x410], 0x5678              ; 67 C7 /0: 16-bit operand by default
    a32 movzx eax, word [ebx + 0x410]               ; 66 67 0F B7
    a32 mov [REAL_RESULT + 4], eax
    mov ax, 0x1234
    a32 mov [ebx + 0x420], ax                       ; 67 89 /r
    a32 mov cx, [ebx + 0x420]                       ; 67 8B /r
    a32 mov [REAL_RESULT + 8], cx
    a32 mov eax, [ebx + 0xff0]
    a32 mov [REAL_RESULT + 12], eax
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp dword SEL_CODE32:back_from_real
real_stub_end:

bits 64
long_mode:
    mov rbx, MMIO_ADDR
    mov rcx, 0x0123456789abcdef
    mov [rbx + 0x500], rcx                      ; REX.W 89 /r
    mov rax, [abs qword MMIO_ADDR + 0x500]      ; REX.W A1 moffs64
    mov [long_results], rax
    mov r9d, 0x99887766
    mov [rbx + 0x508], r9d                      ; REX.R 89 /r
    movzx r10, byte [rbx + 0x508]               ; REX.WR 0F B6
    mov [long_results + 8], r10
    mov rdi, MMIO_ADDR + 0x600
    mov rax, 0xfeedfacecafebeef
    cld
    stosq                                       ; REX.W AB
    mov rax, [rbx + 0x600]
    mov [long_results + 16], rax
    mov [long_results + 24], rdi
    mov r12, MMIO_ADDR
    mov eax, [r12 + 0xff0]                      ; REX.B with SIB (r12 base)
    mov [long_results + 32], rax
    lea rsi, [rel long_label]
    call puts64
    lea rsi, [rel long_results]
    mov ecx, 5
.long_results:
    mov al, ' '
    call putc64
    lodsq
    call puthex64
    loop .long_results
    lea rsi, [rel done_label]
    call puts64
    mov al, 0x19
    out DEBUG_EXIT_PORT, al
.hang:
    hlt
    jmp .hang

; 64-bit printing (serial.inc assembles in one bitness only): COM1 as the
; 32-bit part left it initialised; waits for THRE like serial_putc.
putc64:
    push rdx
    push rax
    mov dx, COM1 + UART_LSR
.wait:
    in al, dx
    test al, UART_LSR_THRE
    jz .wait
    pop rax
    mov dx, COM1 + UART_THR
    out dx, al
    pop rdx
    ret

puts64:
    lodsb
    test al, al
    jz .end
    call putc64
    jmp puts64
.end:
    ret

; RAX as 16 hex digits.
puthex64:
    push rcx
    push rdx
    push r8
    lea r8, [rel hex_digits]
    mov rdx, rax
    mov ecx, 16
.digit:
    rol rdx, 4
    mov eax, edx
    and eax, 15
    mov al, [r8 + rax]
    call putc64
    loop .digit
    pop r8
    pop rdx
    pop rcx
    ret

hex_digits: db "0123456789abcdef"
long_label: db "long:", 0
done_label: db 13, 10, "done", 13, 10, 0

bits 32
align 8
gdt_mmio:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08 flat 32-bit code (as boot.inc)
    dq 0x00CF92000000FFFF       ; 0x10 flat data (as boot.inc)
    dq 0x00009A000000FFFF       ; 0x18 16-bit code, base 0, 64 KiB
    dq 0x00AF9A000000FFFF       ; 0x20 64-bit code
gdt_mmio_end:
gdt_mmio_ptr:
    dw gdt_mmio_end - gdt_mmio - 1
    dd gdt_mmio

%include "serial.inc"

section .bss
alignb 4096
pml4:
    resb 4096
pdpt:
    resb 4096
pd_low:
    resb 4096
pd_hole:
    resb 4096
saved_esp:
    resd 1
alignb 8
long_results:
    resq 5
section .text

GUEST_END
