; A BIOS boot test guest for the graphical console: a one-sector MBR that
; asks for keys through the BIOS (INT 16h) and echoes each on the screen
; through INT 10h, the way a boot loader's menu does. After two keys it
; writes 0x10 to the exit port 0xF4 (status 0x21).
;   screen: "keys: press a key" then "key: X scan YY" per key
bits 16
org 0x7c00

EXIT_PORT equ 0xf4

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    cld
    mov si, msg_ready
    call print
    mov byte [left], 2
.key:
    xor ah, ah                  ; INT 16h AH=0: wait for a key; AL = ASCII, AH = scan code
    int 0x16
    mov [scan], ah
    mov [ascii], al
    mov si, msg_key
    call print
    mov al, [ascii]
    call putc
    mov si, msg_scan
    call print
    mov al, [scan]
    call hex8
    mov si, msg_crlf
    call print
    dec byte [left]
    jnz .key
    ; Two timer ticks, so a serial mirror (if any) drains, then exit.
    mov ah, 0x86
    xor cx, cx
    mov dx, 0x8000
    int 0x15
    mov al, 0x10
    out EXIT_PORT, al
.hang:
    hlt
    jmp .hang

; Prints the NUL-terminated string at DS:SI through INT 10h teletype.
print:
    lodsb
    test al, al
    jz .done
    call putc
    jmp print
.done:
    ret

putc:
    mov ah, 0x0e
    xor bx, bx
    int 0x10
    ret

; Prints AL as two hex digits.
hex8:
    push ax
    shr al, 4
    call .digit
    pop ax
    and al, 0x0f
.digit:
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '0' - 10
.out:
    jmp putc

msg_ready: db "keys: press a key", 13, 10, 0
msg_key: db "key: ", 0
msg_scan: db " scan ", 0
msg_crlf: db 13, 10, 0
left: db 0
scan: db 0
ascii: db 0

times 510 - ($ - $$) db 0
dw 0xaa55
