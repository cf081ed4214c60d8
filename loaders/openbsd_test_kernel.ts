/**
 * A fake OpenBSD kernel for the loader and boot tests, linked with nasm and
 * GNU ld at the addresses of a real amd64 `bsd`.
 *
 * @module
 */

import { buildWithNasm } from "./test_helpers.ts";

/**
 * A fake `bsd`: 32-bit entry code linked at OpenBSD's kernel addresses
 * (virtual 0xffffffff81001000, physical 0x1001000), data, bss, a
 * PT_OPENBSD_RANDOMIZE segment, the OpenBSD note, and symbols. At its entry
 * it prints the registers and the stack it was given on COM1 and exits
 * through the debug port with 0x2a: the boot test runs it on both back-ends.
 */
export const BSD_SOURCE = `
bits 32
section .text
global start
start:
    pushf                       ; eflags as vmd left them
    pusha                       ; eax ecx edx ebx esp ebp esi edi, likewise
    call anchor
anchor:
    pop ebp                     ; position-independent: the physical address of anchor
    mov ebx, esp                ; the pusha frame: edi esi ebp esp ebx edx ecx eax
    lea eax, [ebx + 36]         ; esp at entry
    lea esi, [ebp + s_esp - anchor]
    call field
    xor edi, edi
.stack:
    lea esi, [ebp + s_word - anchor]
    mov eax, [ebx + 36 + edi*4]
    call field
    inc edi
    cmp edi, 9
    jne .stack
    mov eax, [ebx + 28]
    lea esi, [ebp + s_eax - anchor]
    call field
    mov eax, [ebx + 20]
    lea esi, [ebp + s_ebp - anchor]
    call field
    mov eax, [ebx + 0]
    lea esi, [ebp + s_edi - anchor]
    call field
    mov eax, cr0
    lea esi, [ebp + s_cr0 - anchor]
    call field
    mov eax, cr3
    lea esi, [ebp + s_cr3 - anchor]
    call field
    mov eax, cr4
    lea esi, [ebp + s_cr4 - anchor]
    call field
    mov ecx, 0xc0000080
    rdmsr
    lea esi, [ebp + s_efer - anchor]
    call field
    xor eax, eax
    mov ax, cs
    lea esi, [ebp + s_cs - anchor]
    call field
    xor eax, eax
    mov ax, ds
    lea esi, [ebp + s_ds - anchor]
    call field
    xor eax, eax
    mov ax, ss
    lea esi, [ebp + s_ss - anchor]
    call field
    mov eax, [ebx + 32]
    lea esi, [ebp + s_flags - anchor]
    call field
    mov eax, [0x2000]           ; the first boot argument: its type and size
    lea esi, [ebp + s_arg - anchor]
    call field
    mov eax, [0x2004]
    lea esi, [ebp + s_arg - anchor]
    call field
    mov eax, [ebp + counter - anchor]   ; data segment contents
    lea esi, [ebp + s_data - anchor]
    call field
    mov al, 0x2a
    out 0xf4, al
    cli
    hlt

; prints the NUL-terminated label at esi, "=", eax in hex, newline
field:
    push eax
.label:
    lodsb
    test al, al
    jz .value
    call putc
    jmp .label
.value:
    mov al, '='
    call putc
    pop edx
    mov ecx, 8
.digit:
    rol edx, 4
    mov eax, edx
    and eax, 15
    mov al, [ebp + hexdigits - anchor + eax]
    call putc
    loop .digit
    mov al, 10
    call putc
    ret

putc:
    push edx
    mov dx, 0x3f8
    out dx, al
    pop edx
    ret

hexdigits: db "0123456789abcdef"
s_esp: db "esp", 0
s_word: db "w", 0
s_eax: db "eax", 0
s_ebp: db "ebp", 0
s_edi: db "edi", 0
s_cr0: db "cr0", 0
s_cr3: db "cr3", 0
s_cr4: db "cr4", 0
s_efer: db "efer", 0
s_cs: db "cs", 0
s_ds: db "ds", 0
s_ss: db "ss", 0
s_flags: db "eflags", 0
s_arg: db "arg", 0
s_data: db "data", 0

section .data
counter: dd 0x5eed1234
global kernel_data
kernel_data: times 100 db 0x77

section .bss
bss_start: resb 0x3000

section .openbsd.randomdata
rnd: times 64 db 0

section .note.openbsd.ident note
    dd 8, 4, 1
    db "OpenBSD", 0
    dd 0
`;

/** The linker script: OpenBSD kernel addresses, a random-data segment, the note. */
export const BSD_SCRIPT = `
ENTRY(start)
PHDRS {
  text PT_LOAD FLAGS(5);
  data PT_LOAD FLAGS(6);
  rnd 0x65a3dbe6 FLAGS(4);
  note PT_NOTE;
}
SECTIONS {
  . = 0xffffffff81001000;
  .text : AT(0x1001000) { *(.text) } :text
  . = ALIGN(0x1000);
  .data : AT(0x1001000 + (ADDR(.data) - 0xffffffff81001000)) { *(.data) } :data
  .bss : AT(0x1001000 + (ADDR(.bss) - 0xffffffff81001000)) { *(.bss) } :data
  . = ALIGN(0x1000);
  .openbsd.randomdata : AT(0x1001000 + (ADDR(.openbsd.randomdata) - 0xffffffff81001000)) { *(.openbsd.randomdata) } :rnd
  .note.openbsd.ident : { *(.note.openbsd.ident) } :note
  /DISCARD/ : { *(.comment) }
}
`;

/** The debug-exit value the fake bsd writes to port 0xf4 when done. */
export const BSD_EXIT_VALUE = 0x2a;

/** Assembles and links the fake bsd (needs nasm and ld). */
export function buildFakeBsd(): Uint8Array {
  return buildWithNasm(BSD_SOURCE, "elf64", { linkerScript: BSD_SCRIPT });
}
