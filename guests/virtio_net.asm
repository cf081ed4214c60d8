; virtio_net: the first virtio-net card through the legacy interface. Posts
; 8 receive buffers, prints the MAC from the configuration, then sends a
; broadcast ARP request "who has 10.77.0.1, tell 10.77.0.2" until an ARP
; reply addressed to its MAC arrives (the test answers from a network
; namespace holding the tap), recycling every other received frame.
; Every poll reads the ISR (a port exit) so the VMM gets to poll the tap.
; Exits v=0x22, or prints FAIL after about 300000 polls.

%include "boot.inc"
%include "rt32.inc"

RX_BUFFERS      equ 8
RX_BUFFER_BYTES equ 2048
NET_HDR         equ 10                ; legacy virtio_net_hdr, no MRG_RXBUF
NET_F_MAC       equ 1 << 5
RESEND_POLLS    equ 3000
MAX_POLLS       equ 300000

main:
    PRINTLN "virtio-net guest"
    mov eax, (VIRTIO_DEV_NET << 16) | VIRTIO_VENDOR
    call vio_open
    jc .missing
    mov eax, NET_F_MAC
    call vio_begin
    mov dword [rxq + QS_RING], rx_ring
    mov dword [rxq + QS_INDEX], 0
    mov edi, rxq
    call vq_setup
    jc .missing
    mov dword [txq + QS_RING], tx_ring
    mov dword [txq + QS_INDEX], 1
    mov edi, txq
    call vq_setup
    jc .missing
    ; post the receive buffers
    xor ecx, ecx
.post:
    mov edi, rxq
    mov eax, ecx
    shl eax, 11                       ; * RX_BUFFER_BYTES
    add eax, rx_bufs
    mov edx, RX_BUFFER_BYTES
    mov ebx, VRING_F_WRITE
    call vq_desc
    mov eax, ecx
    call vq_publish
    inc ecx
    cmp ecx, RX_BUFFERS
    jb .post
    call vio_driver_ok
    mov edi, rxq
    call vq_notify

    ; the MAC, from the configuration
    PRINT "mac="
    xor ecx, ecx
.mac:
    call vio_config_read8
    mov [own_mac + ecx], al
    test ecx, ecx
    jz .no_colon
    push eax
    mov al, ':'
    call serial_putc
    pop eax
.no_colon:
    PRINT_HEX eax, 2
    inc ecx
    cmp ecx, 6
    jb .mac
    call serial_newline
    call build_arp

    xor ebp, ebp                      ; polls
.send:
    call send_arp
    xor esi, esi                      ; polls since the last send
.poll:
    call vio_read_isr                 ; a port exit: the VMM polls the tap
    mov edi, rxq
    call vq_layout                    ; EDX = used ring
    movzx eax, word [edx + 2]
    cmp ax, [rxq + QS_USED]
    jne .received
    inc ebp
    cmp ebp, MAX_POLLS
    jae .timeout
    inc esi
    cmp esi, RESEND_POLLS
    jae .send
    jmp .poll
.received:
    call vq_wait                      ; ECX = id, EAX = length
    jc .timeout
    mov ebx, ecx
    shl ebx, 11
    add ebx, rx_bufs + NET_HDR        ; the frame
    sub eax, NET_HDR
    cmp eax, 42
    jb .recycle
    cmp word [ebx + 12], 0x0608       ; ethertype 0x0806, big-endian
    jne .recycle
    cmp word [ebx + 20], 0x0200       ; ARP reply
    jne .recycle
    mov eax, [ebx + 32]               ; target MAC: ours?
    cmp eax, [own_mac]
    jne .recycle
    mov ax, [ebx + 36]
    cmp ax, [own_mac + 4]
    jne .recycle
    cmp dword [ebx + 28], 0x01004D0A  ; sender IP 10.77.0.1
    jne .recycle
    PRINTLN "arp reply from 10.77.0.1"
    PRINTLN "virtio-net ok"
    DEBUG_EXIT 0x22
.recycle:
    mov eax, ecx
    mov edi, rxq
    call vq_publish
    call vq_notify
    jmp .poll

.missing:
    PRINTLN "FAIL: no virtio-net device or queue"
    DEBUG_EXIT EXIT_CHECK_FAILED
.timeout:
    PRINTLN "FAIL: no ARP reply"
    DEBUG_EXIT EXIT_CHECK_FAILED

; The header (zeros) and a 60-byte ARP request in tx_buf.
build_arp:
    push eax
    mov edi, tx_buf
    mov ecx, (NET_HDR + 60 + 3) / 4
    xor eax, eax
    rep stosd
    mov edi, tx_buf + NET_HDR
    mov dword [edi], 0xFFFFFFFF
    mov word [edi + 4], 0xFFFF
    mov eax, [own_mac]
    mov [edi + 6], eax
    mov [edi + 22], eax
    mov ax, [own_mac + 4]
    mov [edi + 10], ax
    mov [edi + 26], ax
    mov word [edi + 12], 0x0608       ; ARP
    mov word [edi + 14], 0x0100       ; Ethernet
    mov word [edi + 16], 0x0008       ; IPv4
    mov byte [edi + 18], 6
    mov byte [edi + 19], 4
    mov word [edi + 20], 0x0100       ; request
    mov dword [edi + 28], 0x02004D0A  ; 10.77.0.2
    mov dword [edi + 38], 0x01004D0A  ; 10.77.0.1
    pop eax
    ret

; Sends tx_buf on the transmit queue and waits for it to be used.
send_arp:
    push eax
    push ebx
    push ecx
    push edx
    push edi
    mov edi, txq
    mov eax, tx_buf
    mov edx, NET_HDR + 60
    xor ebx, ebx
    xor ecx, ecx
    call vq_desc
    xor eax, eax
    call vq_publish
    call vq_notify
    call vq_wait
    pop edi
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

%include "cmdline.inc"
%include "virtio.inc"
%include "serial.inc"

section .bss
alignb 4096
rx_ring:    resb VRING_BYTES
tx_ring:    resb VRING_BYTES
rx_bufs:    resb RX_BUFFERS * RX_BUFFER_BYTES
tx_buf:     resb 128
own_mac:    resb 8
rxq:        resb QS_BYTES
txq:        resb QS_BYTES
section .text

GUEST_END
