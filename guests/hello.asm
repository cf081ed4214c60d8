; hello: the smallest guest. Prints a greeting and the multiboot command
; line, writes POST codes, exits with v=0x10 (QEMU status 33).

%include "boot.inc"
%include "rt32.inc"

main:
    mov al, 0x01
    out POST_PORT, al
    PRINTLN "Hello from vmmctl guest"
    mov al, 0x02
    out POST_PORT, al
    PRINT "cmdline: "
    mov ebx, [mbi_ptr]
    test dword [ebx + MBI_FLAGS], MBI_FLAG_CMDLINE
    jz .no_cmdline
    mov esi, [ebx + MBI_CMDLINE]
    call serial_puts
    call serial_newline
    jmp .post
.no_cmdline:
    PRINTLN "(none)"
.post:
    mov al, 0x03
    out POST_PORT, al
    PRINTLN "bye"
    DEBUG_EXIT 0x10

%include "serial.inc"
GUEST_END
