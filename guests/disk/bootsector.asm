; A BIOS boot test guest: a raw disk image of 4 sectors. Sector 0 is the
; MBR the BIOS loads at 0:7C00; it prints through INT 10h (the BIOS's
; teletype, mirrored to COM1 by SeaBIOS's sercon), checks the INT 13h
; extensions, reads sector 3 with an extended read and prints the text it
; holds, walks the INT 15h E820 map, waits for two timer ticks (so the
; BIOS's serial mirror flushes), then writes 0x10 to the exit port 0xF4
; (QEMU's isa-debug-exit and vmmctl's debug.exit_port: status 0x21).
; A failing step prints "FAIL: ..." and exits with 0x11 (status 0x23).
bits 16
org 0x7c00

EXIT_PORT equ 0xf4
BUFFER equ 0x8000               ; sector 3 lands here
E820_BUF equ 0x9000             ; one 24-byte E820 entry

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    cld
    mov [boot_drive], dl

    mov si, msg_hello
    call print

    ; INT 13h AH=41h: are the extensions there for this drive?
    mov ah, 0x41
    mov bx, 0x55aa
    mov dl, [boot_drive]
    int 0x13
    jc .no_ext
    cmp bx, 0xaa55
    jne .no_ext
    test cx, 1                  ; bit 0: the packet (AH=42h) functions
    jz .no_ext
    mov si, msg_ext
    call print

    ; INT 13h AH=42h: read 1 sector at LBA 3 into 0:BUFFER.
    mov si, dap
    mov ah, 0x42
    mov dl, [boot_drive]
    int 0x13
    jc .read_failed
    mov si, BUFFER
    call print

    ; INT 15h E820: every entry, "e820: BASE LENGTH TYPE".
    xor ebx, ebx
.e820_next:
    mov eax, 0xe820
    mov edx, 0x534d4150         ; "SMAP"
    mov ecx, 24
    mov di, E820_BUF
    int 0x15
    jc .e820_done               ; CF after the last entry also ends the walk
    cmp eax, 0x534d4150
    jne .e820_failed
    push ebx
    mov si, msg_e820
    call print
    mov eax, [E820_BUF + 4]
    call print_hex32
    mov eax, [E820_BUF]
    call print_hex32
    call print_space
    mov eax, [E820_BUF + 12]
    call print_hex32
    mov eax, [E820_BUF + 8]
    call print_hex32
    call print_space
    mov eax, [E820_BUF + 16]
    call print_hex32
    mov si, msg_crlf
    call print
    inc byte [e820_count]
    pop ebx
    test ebx, ebx
    jnz .e820_next
.e820_done:
    cmp byte [e820_count], 3
    jb .e820_failed

    mov si, msg_done
    call print
    mov al, 0x10
    jmp exit

.no_ext:
    mov si, msg_no_ext
    jmp fail
.read_failed:
    mov si, msg_read
    jmp fail
.e820_failed:
    mov si, msg_e820_bad
fail:
    call print
    mov al, 0x11
exit:
    ; Wait for two ticks of the BIOS's timer (BDA 0:046C) so SeaBIOS's
    ; serial console has flushed what it buffered.
    mov bl, al
    mov cx, 3
.tick:
    mov ax, [0x46c]
.same:
    hlt
    cmp ax, [0x46c]
    je .same
    loop .tick
    mov al, bl
    out EXIT_PORT, al
    cli
.halt:
    hlt
    jmp .halt

; Prints the NUL-terminated string at DS:SI with INT 10h AH=0Eh.
print:
    push ax
    push bx
.next:
    lodsb
    test al, al
    jz .end
    mov ah, 0x0e
    mov bx, 0x0007
    int 0x10
    jmp .next
.end:
    pop bx
    pop ax
    ret

print_space:
    mov al, ' '
    ; fall through
print_char:
    push bx
    mov ah, 0x0e
    mov bx, 0x0007
    int 0x10
    pop bx
    ret

; Prints EAX as 8 hex digits.
print_hex32:
    push cx
    push edx
    mov edx, eax
    mov cx, 8
.digit:
    rol edx, 4
    mov al, dl
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '9' - 1
.out:
    call print_char
    loop .digit
    pop edx
    pop cx
    ret

msg_hello: db "bootsector: hello through INT 10h", 13, 10, 0
msg_ext: db "int13: extensions present", 13, 10, 0
msg_e820: db "e820: ", 0
msg_crlf: db 13, 10, 0
msg_done: db "bootsector: done", 13, 10, 0
msg_no_ext: db "FAIL: no INT 13h extensions", 13, 10, 0
msg_read: db "FAIL: INT 13h AH=42h read failed", 13, 10, 0
msg_e820_bad: db "FAIL: E820 walk", 13, 10, 0

boot_drive: db 0
e820_count: db 0

; The disk address packet of the extended read.
dap:
    db 16, 0
    dw 1                        ; sectors
    dw BUFFER, 0                ; offset, segment
    dq 3                        ; LBA

    times 510 - ($ - $$) db 0
    dw 0xaa55

; Sectors 1 and 2: filler the read must skip.
    times 1024 db 0xcc

; Sector 3: what the extended read brings in.
    db "int13: sector 3 says hello", 13, 10, 0
    times 2048 - ($ - $$) db 0
