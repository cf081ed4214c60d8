; vga: drives the standard VGA the way a driver does, and reports on serial.
; 1. Writes a line to the 80x25 text buffer at 0xB8000 (white on blue).
; 2. Finds the VGA (PCI 1234:1111) and its framebuffer BAR.
; 3. Waits for one key (make and break bytes from the i8042, polled) and
;    prints them.
; 4. Sets a 320x240x32 DISPI mode and paints bands of four colours (red,
;    green at the top, blue, white at the bottom) into the framebuffer.
; 5. Waits for a key again, then exits with v=0x11 (QEMU status 35).
; Without a VGA (no 1234:1111 on PCI) it says so and exits with v=0x12.

%include "boot.inc"
%include "rt32.inc"

VGA_TEXT        equ 0xB8000
DISPI_INDEX     equ 0x1CE
DISPI_DATA      equ 0x1CF
WIDTH           equ 320
HEIGHT          equ 240

%macro DISPI 2
    mov dx, DISPI_INDEX
    mov ax, %1
    out dx, ax
    mov dx, DISPI_DATA
    mov ax, %2
    out dx, ax
%endmacro

main:
    ; 1. Text: "vmmctl VGA text" at row 2, attribute 0x1F.
    mov esi, banner
    mov edi, VGA_TEXT + 2 * 80 * 2
.text:
    lodsb
    test al, al
    jz .text_done
    mov ah, 0x1F
    stosw
    jmp .text
.text_done:
    PRINTLN "vga: text ready"

    ; 2. Find the VGA on bus 0.
    xor ebx, ebx                       ; device number
.scan:
    mov eax, ebx
    shl eax, 11
    or eax, 0x80000000
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    cmp eax, 0x11111234
    je .found
    inc ebx
    cmp ebx, 32
    jb .scan
    PRINTLN "vga: no VGA on PCI"
    DEBUG_EXIT 0x12
.found:
    mov eax, ebx
    shl eax, 11
    or eax, 0x80000010                 ; BAR 0
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    and eax, 0xFFFFFFF0
    mov [lfb], eax
    PRINT "vga: framebuffer at "
    PRINT_HEX eax, 8
    call serial_newline

    ; 3. One key: print its make and break bytes.
    call key_pair

    ; 4. 320x240x32.
    DISPI 4, 0                         ; disable
    DISPI 1, WIDTH
    DISPI 2, HEIGHT
    DISPI 3, 32
    DISPI 4, 0x41                      ; enable, linear framebuffer
    ; Four bands of four rows: red | green at rows 8-11, blue | white at
    ; rows 228-231; the rest stays black (DISPI cleared VRAM). Few stores, so
    ; a framebuffer trapped as MMIO (vmm(4)) paints in about a second.
    mov ecx, 8
.row:
    mov eax, ecx
    imul eax, WIDTH * 4
    mov edi, [lfb]
    add edi, eax
    mov eax, 0x00FF0000                ; red (top left)
    mov ebx, 0x0000FF00                ; green (top right)
    cmp ecx, HEIGHT / 2
    jb .top
    mov eax, 0x000000FF                ; blue (bottom left)
    mov ebx, 0x00FFFFFF                ; white (bottom right)
.top:
    push ecx
    mov ecx, WIDTH / 2
    call fill
    mov eax, ebx
    mov ecx, WIDTH / 2
    call fill
    pop ecx
    inc ecx
    cmp ecx, 12
    jne .next_row
    mov ecx, 228
.next_row:
    cmp ecx, 232
    jb .row
    PRINTLN "vga: graphics ready"

    ; 5. Another key, then exit.
    call key_pair
    DEBUG_EXIT 0x11

; Stores EAX at EDI, ECX times (plain MOVs: the OpenBSD back-end decodes
; each MMIO store, and a framebuffer trapped as MMIO must work there too).
fill:
    mov [edi], eax
    add edi, 4
    dec ecx
    jnz fill
    ret

; Waits for two bytes from the keyboard controller and prints them in hex.
key_pair:
    PRINT "vga: key"
    mov byte [keys_left], 2
.next:
    in al, 0x64
    test al, 1
    jz .next
    in al, 0x60
    movzx eax, al
    PRINT " "
    PRINT_HEX eax, 2
    dec byte [keys_left]
    jnz .next
    call serial_newline
    ret

banner: db "vmmctl VGA text", 0
align 4
lfb: dd 0
keys_left: db 0

%include "serial.inc"
GUEST_END
