; virtio_hostile: attacks the first virtio-blk device's queue through the
; legacy interface. Each broken ring must put the device into NEEDS_RESET
; (status bit 0x40); after each the guest resets and sets the device up
; again. Requests that are merely bad (short header, no status byte, unknown
; type) must be answered without breaking the device, and ring changes after
; DRIVER_OK must be ignored. Finally a normal read of sector 0 must work.
; Exits v=0x21.

%include "boot.inc"
%include "rt32.inc"

%macro ATTACK 1
    PRINT %1, ": "
    call report_broken
%endmacro

main:
    PRINTLN "virtio hostile guest"
    call hostile_init

    ; 1. a descriptor that chains to itself
    mov edi, blkq
    mov eax, blk_hdr
    mov edx, 16
    mov ebx, VRING_F_NEXT | (0 << 16)
    xor ecx, ecx
    call vq_desc
    call post0
    ATTACK "loop"

    ; 2. a head index beyond the queue
    mov edi, blkq
    mov ax, 200
    call vq_publish
    call vq_notify
    ATTACK "head out of range"

    ; 3. a next index beyond the queue
    mov edi, blkq
    mov eax, blk_hdr
    mov edx, 16
    mov ebx, VRING_F_NEXT | (300 << 16)
    xor ecx, ecx
    call vq_desc
    call post0
    ATTACK "next out of range"

    ; 4. a buffer outside guest RAM
    mov edi, blkq
    mov eax, 0xFFFFFF00
    mov edx, 0x1000
    xor ebx, ebx
    xor ecx, ecx
    call vq_desc
    call post0
    ATTACK "buffer outside RAM"

    ; 5. the available index jumps by more than the queue size
    mov edi, blkq
    call vq_layout                    ; ECX = avail ring
    mov eax, [edi + QS_AVAIL]
    add eax, 200
    mov [ecx + 2], ax
    call vq_notify
    ATTACK "avail index jump"

    ; 6. an indirect table that points to another indirect table
    mov dword [table1], table2
    mov dword [table1 + 4], 0
    mov dword [table1 + 8], 16
    mov dword [table1 + 12], VRING_F_INDIRECT
    mov edi, blkq
    mov eax, table1
    mov edx, 16
    mov ebx, VRING_F_INDIRECT
    xor ecx, ecx
    call vq_desc
    call post0
    ATTACK "nested indirect"

    ; 7. an indirect table whose length is not a multiple of 16
    mov edi, blkq
    mov eax, table1
    mov edx, 24
    mov ebx, VRING_F_INDIRECT
    xor ecx, ecx
    call vq_desc
    call post0
    ATTACK "indirect length 24"

    ; 8. moving the rings after DRIVER_OK is ignored; the device keeps working
    mov edx, [vio_io]
    add edx, VL_QUEUE_PFN
    in eax, dx
    mov ebx, eax
    mov eax, other_ring
    shr eax, 12
    out dx, eax
    in eax, dx
    cmp eax, ebx
    jne .pfn_moved
    PRINTLN "pfn after DRIVER_OK: ignored"
    mov eax, BLK_T_IN
    xor edx, edx
    mov esi, blk_data
    mov ecx, 512
    mov bl, 1
    call blk_request
    jc .timeout
    PRINT "read after pfn write: status="
    PRINT_HEX eax, 2
    call serial_newline

    ; 9. a header of 8 bytes: dropped, used length 0, device fine
    mov edi, blkq
    mov eax, blk_hdr
    mov edx, 8
    mov ebx, VRING_F_NEXT | (1 << 16)
    xor ecx, ecx
    call vq_desc
    mov eax, blk_status
    mov edx, 1
    mov ebx, VRING_F_WRITE
    mov ecx, 1
    call vq_desc
    call post0
    call vq_wait
    jc .timeout
    PRINT "short header: used="
    PRINT_DEC eax
    call report_status

    ; 10. no status byte: dropped
    mov dword [blk_hdr], BLK_T_IN
    mov edi, blkq
    mov eax, blk_hdr
    mov edx, 16
    mov ebx, VRING_F_NEXT | (1 << 16)
    xor ecx, ecx
    call vq_desc
    mov eax, blk_data
    mov edx, 512
    xor ebx, ebx
    mov ecx, 1
    call vq_desc
    call post0
    call vq_wait
    jc .timeout
    PRINT "no status byte: used="
    PRINT_DEC eax
    call report_status

    ; 11. an unknown request type
    mov eax, 0xDEAD
    xor edx, edx
    xor ecx, ecx
    call blk_request
    jc .timeout
    PRINT "unknown type: status="
    PRINT_HEX eax, 2
    call serial_newline

    ; 12. notify a queue that does not exist
    mov edx, [vio_io]
    add edx, VL_QUEUE_NOTIFY
    mov ax, 9
    out dx, ax
    PRINT "notify queue 9"
    call report_status

    ; finally: reset, set up again, a normal read
    call hostile_init
    mov eax, BLK_T_IN
    xor edx, edx
    mov esi, blk_data
    mov ecx, 512
    mov bl, 1
    call blk_request
    jc .timeout
    test al, al
    jnz .bad_final
    mov byte [blk_data + 16], 0
    PRINT "final read: "
    mov esi, blk_data
    call serial_puts
    call serial_newline
    PRINTLN "hostile ok"
    DEBUG_EXIT 0x21

.pfn_moved:
    PRINTLN "FAIL: the queue PFN changed after DRIVER_OK"
    DEBUG_EXIT EXIT_CHECK_FAILED
.timeout:
    PRINTLN "FAIL: no used entry"
    DEBUG_EXIT EXIT_CHECK_FAILED
.bad_final:
    PRINTLN "FAIL: final read failed"
    DEBUG_EXIT EXIT_CHECK_FAILED

; Publishes descriptor 0 and notifies queue blkq.
post0:
    push eax
    push edi
    mov edi, blkq
    xor eax, eax
    call vq_publish
    call vq_notify
    pop edi
    pop eax
    ret

; Prints "needs-reset" when the device says so (and sets it up again),
; else FAIL.
report_broken:
    call vio_get_status
    test al, ST_NEEDS_RESET
    jz .not_broken
    PRINTLN "needs-reset"
    call hostile_init
    ret
.not_broken:
    PRINT "FAIL: status "
    PRINT_HEX eax, 2
    call serial_newline
    DEBUG_EXIT EXIT_CHECK_FAILED

; Prints " status=SS" (the device status) and a newline; FAIL on NEEDS_RESET.
report_status:
    call vio_get_status
    PRINT " status="
    PRINT_HEX eax, 2
    call serial_newline
    test al, ST_NEEDS_RESET
    jnz .broken
    ret
.broken:
    PRINTLN "FAIL: device broken by a request that is only bad"
    DEBUG_EXIT EXIT_CHECK_FAILED

; Reset and set up with FLUSH and INDIRECT_DESC accepted.
hostile_init:
    push eax
    push edi
    mov eax, (VIRTIO_DEV_BLK << 16) | VIRTIO_VENDOR
    call vio_open
    jc .missing
    mov eax, BLK_F_FLUSH | (1 << 28)
    call vio_begin
    mov dword [blkq + QS_RING], blk_ring
    mov dword [blkq + QS_INDEX], 0
    mov edi, blkq
    call vq_setup
    jc .missing
    call vio_driver_ok
    pop edi
    pop eax
    ret
.missing:
    PRINTLN "FAIL: no virtio-blk device"
    DEBUG_EXIT EXIT_CHECK_FAILED

%include "cmdline.inc"
%include "virtio.inc"
%include "virtio_blk.inc"
%include "serial.inc"

section .bss
alignb 4096
other_ring: resb 4096
table1:     resb 64
table2:     resb 64
section .text

GUEST_END
