; bench_blk: for `deno task bench` (block I/O). Opens the first virtio-blk
; disk (legacy interface, like virtio_blk) and runs four phases of "n=N"
; requests (default 200) each, one request in flight at a time:
;   1. 4 KiB reads at random 4 KiB-aligned offsets
;   2. 4 KiB writes at random 4 KiB-aligned offsets
;   3. 128 KiB sequential reads
;   4. 128 KiB sequential writes (both wrapping at the disk's end)
; Before phase k it writes POST code 0xB0 + k - 1 to port 0x80, and 0xB4
; after the last, so a host can time each phase; it also prints each
; phase's TSC cycles as "phase K cycles=HHHHHHHHLLLLLLLL" (hex). Any status
; other than OK prints a FAIL line. Exits v=0x18.

%include "boot.inc"
%include "rt32.inc"

DEFAULT_COUNT   equ 200
SMALL_SECTORS   equ 8                 ; 4 KiB
LARGE_SECTORS   equ 256               ; 128 KiB
POST_PHASE_BASE equ 0xB0

main:
    PRINTLN "bench_blk guest"
    call blk_init
    jc .fail_quiet
    xor ecx, ecx
    call vio_config_read32            ; capacity in sectors (low half)
    mov [capacity], eax
    cmp eax, 2 * LARGE_SECTORS
    jb .too_small
    mov esi, key_n
    call cmdline_find_uint
    jnc .have_n
    mov eax, DEFAULT_COUNT
.have_n:
    mov [count], eax
    PRINT "capacity="
    PRINT_DEC [capacity]
    PRINT " n="
    PRINT_DEC [count]
    call serial_newline
    mov dword [lcg], 12345

    mov byte [phase], 0
.phase:
    movzx eax, byte [phase]
    add al, POST_PHASE_BASE
    out POST_PORT, al
    rdtsc
    mov [tsc_lo], eax
    mov [tsc_hi], edx
    mov ecx, [count]
    mov dword [seq_sector], 0
.request:
    push ecx
    call next_request                 ; EAX type, EDX sector, ECX bytes, BL device-writes
    mov esi, bigbuf
    call blk_request_patient
    pop ecx
    jc .timeout
    test al, al
    jnz .bad_status
    dec ecx
    jnz .request
    rdtsc
    sub eax, [tsc_lo]
    sbb edx, [tsc_hi]
    mov ebx, eax
    movzx eax, byte [phase]
    inc eax
    PRINT "phase "
    PRINT_DEC eax
    PRINT " cycles="
    PRINT_HEX edx, 8
    PRINT_HEX ebx, 8
    call serial_newline
    inc byte [phase]
    cmp byte [phase], 4
    jb .phase
    mov al, POST_PHASE_BASE + 4
    out POST_PORT, al
    PRINTLN "done"
    DEBUG_EXIT 0x18

.too_small:
    PRINTLN "FAIL: disk smaller than 256 KiB"
    DEBUG_EXIT EXIT_CHECK_FAILED
.timeout:
    PRINTLN "FAIL: no used entry"
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad_status:
    PRINT "FAIL: status "
    PRINT_HEX eax, 2
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED
.fail_quiet:
    DEBUG_EXIT EXIT_CHECK_FAILED

; The request of the current phase: EAX type, EDX sector, ECX bytes, BL = 1
; when the device writes the buffer (a read).
next_request:
    mov al, [phase]
    cmp al, 2
    jae .sequential
    ; random: slot = lcg % (capacity / 8), sector = slot * 8
    mov eax, [lcg]
    imul eax, eax, 1103515245
    add eax, 12345
    mov [lcg], eax
    shr eax, 1
    xor edx, edx
    mov ecx, [capacity]
    shr ecx, 3
    div ecx
    lea edx, [edx * 8]
    mov ecx, SMALL_SECTORS * 512
    jmp .type
.sequential:
    mov edx, [seq_sector]
    lea eax, [edx + LARGE_SECTORS]
    lea ecx, [eax + LARGE_SECTORS]
    cmp ecx, [capacity]
    jbe .no_wrap
    xor eax, eax                      ; next one starts at 0 again
.no_wrap:
    mov [seq_sector], eax
    mov ecx, LARGE_SECTORS * 512
.type:
    mov al, [phase]
    and al, 1                         ; phases 1 and 3 (0-based) write
    movzx eax, al                     ; BLK_T_IN = 0, BLK_T_OUT = 1
    mov bl, 1
    sub bl, al                        ; reads: the device writes the buffer
    ret

; blk_request, but waiting far longer for the used entry: QEMU completes
; requests on another thread, which a loaded host can delay beyond
; vq_wait's bounded poll.
blk_request_patient:
    call blk_request
    jnc .out
    push edi
    push ecx
    mov edi, blkq
    mov ecx, 1000
.again:
    push ecx
    call vq_wait                      ; clobbers ECX (the used id)
    pop ecx
    jnc .got
    dec ecx
    jnz .again
    pop ecx
    pop edi
    stc
    ret
.got:
    mov [blk_used_len], eax
    pop ecx
    pop edi
    movzx eax, byte [blk_status]
    clc
.out:
    ret

key_n: db "n=", 0

%include "cmdline.inc"
%include "virtio.inc"
%include "virtio_blk.inc"
%include "serial.inc"

section .bss
alignb 4096
bigbuf:     resb LARGE_SECTORS * 512
capacity:   resd 1
count:      resd 1
lcg:        resd 1
seq_sector: resd 1
tsc_lo:     resd 1
tsc_hi:     resd 1
phase:      resb 1
section .text

GUEST_END
