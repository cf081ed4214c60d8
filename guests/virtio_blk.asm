; virtio_blk: drives the first virtio-blk disk through the legacy interface
; (I/O BAR0), or the modern one (MMIO BAR4) with "modern=1": capacity from
; the configuration, a read of sector 0 (the host wrote "host sector zero"
; there), a write of sector 1 with bytes (i + K) & 0xFF (K = 0x11 legacy,
; 0x22 modern) that the host checks in the image afterwards, a flush, the
; read-back, a read past the end (IOERR), an unknown request (UNSUPP),
; GET_ID, and the ISR (set by the requests, cleared by reading it).
; With "crash=1" it writes sector 2 with K = 0x33, flushes, prints "flushed"
; and spins until the host kills the VMM. Exits v=0x20.

%include "boot.inc"
%include "rt32.inc"

main:
    PRINTLN "virtio-blk guest"
    call blk_init
    jc .fail_quiet
    cmp dword [vio_modern], 0
    jne .say_modern
    PRINTLN "interface=legacy"
    mov byte [pattern_k], 0x11
    jmp .capacity
.say_modern:
    PRINTLN "interface=modern"
    mov byte [pattern_k], 0x22
.capacity:
    xor ecx, ecx
    call vio_config_read32
    mov [capacity], eax
    PRINT "capacity="
    PRINT_DEC eax
    call serial_newline

    mov esi, crash_key
    call cmdline_find_uint
    jc .normal
    test eax, eax
    jnz crash_mode
.normal:
    ; sector 0 holds the host's text
    mov eax, BLK_T_IN
    xor edx, edx
    mov esi, blk_data
    mov ecx, 512
    mov bl, 1
    call blk_request
    jc .timeout
    test al, al
    jnz .bad_status
    cmp dword [blk_used_len], 513
    jne .bad_len
    mov byte [blk_data + 16], 0
    PRINT "sector0="
    mov esi, blk_data
    call serial_puts
    call serial_newline

    ; sector 1 <- pattern
    mov dl, [pattern_k]
    call fill_pattern
    mov eax, BLK_T_OUT
    mov edx, 1
    mov esi, blk_data
    mov ecx, 512
    mov bl, 0
    call blk_request
    jc .timeout
    PRINT "write status="
    PRINT_HEX eax, 2
    call serial_newline

    mov eax, BLK_T_FLUSH
    xor edx, edx
    xor ecx, ecx
    call blk_request
    jc .timeout
    PRINT "flush status="
    PRINT_HEX eax, 2
    call serial_newline

    ; read sector 1 back into a cleared buffer
    mov edi, blk_data
    mov ecx, 128
    xor eax, eax
    rep stosd
    mov eax, BLK_T_IN
    mov edx, 1
    mov esi, blk_data
    mov ecx, 512
    mov bl, 1
    call blk_request
    jc .timeout
    mov dl, [pattern_k]
    call check_pattern
    jc .bad_readback
    PRINTLN "readback ok"

    ; one sector at the capacity: beyond the end
    mov eax, BLK_T_IN
    mov edx, [capacity]
    mov esi, blk_data
    mov ecx, 512
    mov bl, 1
    call blk_request
    jc .timeout
    PRINT "past-end status="
    PRINT_HEX eax, 2
    call serial_newline

    mov eax, 0x55
    xor edx, edx
    xor ecx, ecx
    call blk_request
    jc .timeout
    PRINT "unknown status="
    PRINT_HEX eax, 2
    call serial_newline

    mov eax, BLK_T_GET_ID
    xor edx, edx
    mov esi, blk_data
    mov ecx, 20
    mov bl, 1
    call blk_request
    jc .timeout
    mov byte [blk_data + 20], 0
    PRINT "id="
    mov esi, blk_data
    call serial_puts
    call serial_newline

    call vio_read_isr
    PRINT "isr="
    PRINT_HEX eax, 2
    call vio_read_isr
    PRINT " then "
    PRINT_HEX eax, 2
    call serial_newline
    PRINTLN "virtio-blk ok"
    DEBUG_EXIT 0x20

.timeout:
    PRINTLN "FAIL: no used entry"
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad_status:
    PRINT "FAIL: status "
    PRINT_HEX eax, 2
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad_len:
    PRINT "FAIL: used length "
    PRINT_DEC dword [blk_used_len]
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad_readback:
    PRINTLN "FAIL: sector 1 reads back different bytes"
    DEBUG_EXIT EXIT_CHECK_FAILED
.fail_quiet:
    DEBUG_EXIT EXIT_CHECK_FAILED

; crash=1: sector 2 <- pattern 0x33, flush, say so, wait to be killed.
crash_mode:
    mov dl, 0x33
    call fill_pattern
    mov eax, BLK_T_OUT
    mov edx, 2
    mov esi, blk_data
    mov ecx, 512
    mov bl, 0
    call blk_request
    jc .fail
    test al, al
    jnz .fail
    mov eax, BLK_T_FLUSH
    xor edx, edx
    xor ecx, ecx
    call blk_request
    jc .fail
    test al, al
    jnz .fail
    PRINTLN "flushed"
.spin:
    pause
    jmp .spin
.fail:
    PRINTLN "FAIL: crash-mode write or flush"
    DEBUG_EXIT EXIT_CHECK_FAILED

; blk_data[i] = (i + DL) & 0xFF for i < 512.
fill_pattern:
    push eax
    push ecx
    xor ecx, ecx
.next:
    mov al, cl
    add al, dl
    mov [blk_data + ecx], al
    inc ecx
    cmp ecx, 512
    jb .next
    pop ecx
    pop eax
    ret

; CF=1 unless blk_data[i] == (i + DL) & 0xFF for i < 512.
check_pattern:
    push eax
    push ecx
    xor ecx, ecx
.next:
    mov al, cl
    add al, dl
    cmp [blk_data + ecx], al
    jne .bad
    inc ecx
    cmp ecx, 512
    jb .next
    clc
    jmp .out
.bad:
    stc
.out:
    pop ecx
    pop eax
    ret

crash_key: db "crash=", 0

%include "cmdline.inc"
%include "virtio.inc"
%include "virtio_blk.inc"
%include "serial.inc"

section .bss
capacity:   resd 1
pattern_k:  resd 1
section .text

GUEST_END
