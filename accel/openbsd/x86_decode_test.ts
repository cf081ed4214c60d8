import assert from "node:assert/strict";
import {
  type AddressSize,
  type CpuMode,
  type DecodedMmio,
  decodeMmioInstruction,
  hexBytes,
  type MmioWidth,
  type SegmentOverride,
} from "./x86_decode.ts";

/** "8b 43 10" -> bytes. */
function hx(text: string): Uint8Array {
  const parts = text.trim().split(/\s+/).filter((p) => p.length > 0);
  return new Uint8Array(parts.map((p) => parseInt(p, 16)));
}

/**
 * One encoding. `asm` (NASM syntax, for the `bits` of `mode`) is assembled
 * by the cross-check test, which requires NASM to produce exactly `hex`.
 * `reg` is the destination (loads) or source register (stores); `dw` the
 * destination width when it differs from the access width.
 */
interface Row {
  mode: CpuMode;
  hex: string;
  asm?: string;
  len: number;
  op: "load" | "store";
  width: MmioWidth;
  reg?: number;
  high8?: boolean;
  dw?: MmioWidth;
  ext?: "zero" | "sign" | "none-merge";
  imm?: bigint;
  stos?: AddressSize;
  addr?: AddressSize;
  seg?: SegmentOverride;
}

const L = "long64" as const;
const P32 = "protected32" as const;
const P16 = "protected16" as const;
const R = "real" as const;

// deno-fmt-ignore
const ROWS: Row[] = [
  // 64-bit: ModRM forms, SIB, displacements, RIP-relative.
  { mode: L, hex: "8b 03", asm: "mov eax, [rbx]", len: 2, op: "load", width: 4, reg: 0, ext: "zero", addr: 8 },
  { mode: L, hex: "8b 43 10", asm: "mov eax, [rbx+0x10]", len: 3, op: "load", width: 4, reg: 0, ext: "zero" },
  { mode: L, hex: "8b 83 00 01 00 00", asm: "mov eax, [rbx+0x100]", len: 6, op: "load", width: 4, reg: 0, ext: "zero" },
  { mode: L, hex: "8b 44 84 10", asm: "mov eax, [rsp+rax*4+0x10]", len: 4, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "8b 04 24", asm: "mov eax, [rsp]", len: 3, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "8b 04 25 00 10 00 00", asm: "mov eax, [0x1000]", len: 7, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "8b 84 c8 00 01 00 00", asm: "mov eax, [rax+rcx*8+0x100]", len: 7, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "8b 05 fa 00 00 00", asm: "mov eax, [rel $+0x100]", len: 6, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "89 0d fa 00 00 00", asm: "mov [rel $+0x100], ecx", len: 6, op: "store", width: 4, reg: 1 },
  { mode: L, hex: "c7 05 f6 00 00 00 01 00 00 00", asm: "mov dword [rel $+0x100], 1", len: 10, op: "store", width: 4, imm: 1n },
  { mode: L, hex: "8b 45 00", asm: "mov eax, [rbp]", len: 3, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "67 8b 03", asm: "mov eax, [ebx]", len: 3, op: "load", width: 4, reg: 0, addr: 4 },
  { mode: L, hex: "67 8b 05 fa 00 00 00", len: 7, op: "load", width: 4, reg: 0, addr: 4 },
  // REX.R / REX.B / REX.X extended registers.
  { mode: L, hex: "45 8b 65 00", asm: "mov r12d, [r13]", len: 4, op: "load", width: 4, reg: 12, ext: "zero" },
  { mode: L, hex: "41 8b 04 24", asm: "mov eax, [r12]", len: 4, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "43 8b 44 25 08", asm: "mov eax, [r13+r12+8]", len: 5, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "42 8b 04 e5 00 10 00 00", asm: "mov eax, [r12*8+0x1000]", len: 8, op: "load", width: 4, reg: 0 },
  { mode: L, hex: "48 8b 03", asm: "mov rax, [rbx]", len: 3, op: "load", width: 8, reg: 0, ext: "zero" },
  { mode: L, hex: "4c 8b 3b", asm: "mov r15, [rbx]", len: 3, op: "load", width: 8, reg: 15 },
  { mode: L, hex: "4c 89 43 08", asm: "mov [rbx+8], r8", len: 4, op: "store", width: 8, reg: 8 },
  { mode: L, hex: "44 89 4c 24 f8", asm: "mov [rsp-8], r9d", len: 5, op: "store", width: 4, reg: 9 },
  // Operand size: 66, REX.W, and their precedence.
  { mode: L, hex: "66 8b 03", asm: "mov ax, [rbx]", len: 3, op: "load", width: 2, reg: 0, ext: "none-merge" },
  { mode: L, hex: "66 48 8b 03", asm: "o16 mov rax, [rbx]", len: 4, op: "load", width: 8, reg: 0, ext: "zero" },
  { mode: L, hex: "48 66 8b 03", len: 4, op: "load", width: 2, reg: 0, ext: "none-merge" }, // REX before 66 is void
  { mode: L, hex: "66 89 03", asm: "mov [rbx], ax", len: 3, op: "store", width: 2, reg: 0 },
  { mode: L, hex: "89 03", asm: "mov [rbx], eax", len: 2, op: "store", width: 4, reg: 0 },
  { mode: L, hex: "48 89 03", asm: "mov [rbx], rax", len: 3, op: "store", width: 8, reg: 0 },
  // Byte registers: AH..BH without REX, SPL..DIL and R8B.. with REX.
  { mode: L, hex: "8a 20", asm: "mov ah, [rax]", len: 2, op: "load", width: 1, reg: 0, high8: true, ext: "none-merge" },
  { mode: L, hex: "8a 38", asm: "mov bh, [rax]", len: 2, op: "load", width: 1, reg: 3, high8: true },
  { mode: L, hex: "40 8a 20", asm: "mov spl, [rax]", len: 3, op: "load", width: 1, reg: 4, high8: false, ext: "none-merge" },
  { mode: L, hex: "44 8a 38", asm: "mov r15b, [rax]", len: 3, op: "load", width: 1, reg: 15, high8: false },
  { mode: L, hex: "8a 0b", asm: "mov cl, [rbx]", len: 2, op: "load", width: 1, reg: 1, high8: false },
  { mode: L, hex: "88 03", asm: "mov [rbx], al", len: 2, op: "store", width: 1, reg: 0, high8: false },
  { mode: L, hex: "88 3b", asm: "mov [rbx], bh", len: 2, op: "store", width: 1, reg: 3, high8: true },
  { mode: L, hex: "40 88 3b", asm: "mov [rbx], dil", len: 3, op: "store", width: 1, reg: 7, high8: false },
  // moffs: 64-bit offsets, 32-bit with 67.
  { mode: L, hex: "a1 88 77 66 55 44 33 22 11", asm: "mov eax, [qword 0x1122334455667788]", len: 9, op: "load", width: 4, reg: 0, ext: "zero" },
  { mode: L, hex: "67 a1 44 33 22 11", asm: "a32 mov eax, [0x11223344]", len: 6, op: "load", width: 4, reg: 0, addr: 4 },
  { mode: L, hex: "a0 10 00 00 00 00 00 00 00", asm: "mov al, [abs qword 0x10]", len: 9, op: "load", width: 1, reg: 0, ext: "none-merge" },
  { mode: L, hex: "48 a3 10 00 00 00 00 00 00 00", asm: "mov [abs qword 0x10], rax", len: 10, op: "store", width: 8, reg: 0 },
  { mode: L, hex: "67 a2 10 00 00 00", asm: "a32 mov [0x10], al", len: 6, op: "store", width: 1, reg: 0 },
  { mode: L, hex: "66 a1 10 00 00 00 00 00 00 00", asm: "mov ax, [abs qword 0x10]", len: 10, op: "load", width: 2, reg: 0 },
  // MOV r/m, imm: imm8, imm16, imm32 and imm32 sign-extended to 64.
  { mode: L, hex: "c6 00 05", asm: "mov byte [rax], 5", len: 3, op: "store", width: 1, imm: 5n },
  { mode: L, hex: "c6 83 00 01 00 00 ff", asm: "mov byte [rbx+0x100], 0xff", len: 7, op: "store", width: 1, imm: 0xffn },
  { mode: L, hex: "c7 00 78 56 34 12", asm: "mov dword [rax], 0x12345678", len: 6, op: "store", width: 4, imm: 0x12345678n },
  { mode: L, hex: "66 c7 00 34 12", asm: "mov word [rax], 0x1234", len: 5, op: "store", width: 2, imm: 0x1234n },
  { mode: L, hex: "48 c7 00 ff ff ff ff", asm: "mov qword [rax], -1", len: 7, op: "store", width: 8, imm: 0xffffffffffffffffn },
  { mode: L, hex: "48 c7 00 00 00 00 80", asm: "mov qword [rax], -0x80000000", len: 7, op: "store", width: 8, imm: 0xffffffff80000000n },
  { mode: L, hex: "48 c7 00 ff ff ff 7f", asm: "mov qword [rax], 0x7fffffff", len: 7, op: "store", width: 8, imm: 0x7fffffffn },
  { mode: L, hex: "49 c7 44 24 08 00 00 00 80", asm: "mov qword [r12+8], -0x80000000", len: 9, op: "store", width: 8, imm: 0xffffffff80000000n },
  // MOVZX / MOVSX from byte and word into 16/32/64.
  { mode: L, hex: "0f b6 06", asm: "movzx eax, byte [rsi]", len: 3, op: "load", width: 1, reg: 0, dw: 4, ext: "zero" },
  { mode: L, hex: "48 0f b6 06", asm: "movzx rax, byte [rsi]", len: 4, op: "load", width: 1, reg: 0, dw: 8, ext: "zero" },
  { mode: L, hex: "66 0f b6 06", asm: "movzx ax, byte [rsi]", len: 4, op: "load", width: 1, reg: 0, dw: 2, ext: "zero" },
  { mode: L, hex: "0f b7 06", asm: "movzx eax, word [rsi]", len: 3, op: "load", width: 2, reg: 0, dw: 4, ext: "zero" },
  { mode: L, hex: "48 0f b7 06", asm: "movzx rax, word [rsi]", len: 4, op: "load", width: 2, reg: 0, dw: 8, ext: "zero" },
  { mode: L, hex: "0f be 06", asm: "movsx eax, byte [rsi]", len: 3, op: "load", width: 1, reg: 0, dw: 4, ext: "sign" },
  { mode: L, hex: "48 0f be 06", asm: "movsx rax, byte [rsi]", len: 4, op: "load", width: 1, reg: 0, dw: 8, ext: "sign" },
  { mode: L, hex: "66 0f be 07", asm: "movsx ax, byte [rdi]", len: 4, op: "load", width: 1, reg: 0, dw: 2, ext: "sign" },
  { mode: L, hex: "0f bf 47 08", asm: "movsx eax, word [rdi+8]", len: 4, op: "load", width: 2, reg: 0, dw: 4, ext: "sign" },
  { mode: L, hex: "48 0f bf 47 08", asm: "movsx rax, word [rdi+8]", len: 5, op: "load", width: 2, reg: 0, dw: 8, ext: "sign" },
  { mode: L, hex: "44 0f b6 4c 24 08", asm: "movzx r9d, byte [rsp+8]", len: 6, op: "load", width: 1, reg: 9, dw: 4, ext: "zero" },
  { mode: L, hex: "4c 0f bf 14 4b", asm: "movsx r10, word [rbx+rcx*2]", len: 5, op: "load", width: 2, reg: 10, dw: 8, ext: "sign" },
  // STOS at 64/32-bit address sizes.
  { mode: L, hex: "aa", asm: "stosb", len: 1, op: "store", width: 1, stos: 8 },
  { mode: L, hex: "ab", asm: "stosd", len: 1, op: "store", width: 4, stos: 8 },
  { mode: L, hex: "48 ab", asm: "stosq", len: 2, op: "store", width: 8, stos: 8 },
  { mode: L, hex: "66 ab", asm: "stosw", len: 2, op: "store", width: 2, stos: 8 },
  { mode: L, hex: "67 aa", asm: "a32 stosb", len: 2, op: "store", width: 1, stos: 4 },
  // Segment overrides are accepted and recorded.
  { mode: L, hex: "64 8b 04 25 00 00 00 00", asm: "mov eax, [fs:0]", len: 8, op: "load", width: 4, reg: 0, seg: "fs" },
  { mode: L, hex: "65 48 8b 03", asm: "mov rax, [gs:rbx]", len: 4, op: "load", width: 8, reg: 0, seg: "gs" },
  { mode: L, hex: "2e 89 03", len: 3, op: "store", width: 4, reg: 0, seg: "cs" },
  // 15 bytes exactly: the longest legal instruction.
  { mode: L, hex: "66 66 66 66 66 66 66 66 66 66 66 66 66 89 03", len: 15, op: "store", width: 2, reg: 0 },

  // 32-bit protected mode.
  { mode: P32, hex: "8b 03", asm: "mov eax, [ebx]", len: 2, op: "load", width: 4, reg: 0, ext: "zero", addr: 4 },
  { mode: P32, hex: "8b 0d 00 10 00 00", asm: "mov ecx, [0x1000]", len: 6, op: "load", width: 4, reg: 1 },
  { mode: P32, hex: "a1 00 10 00 00", asm: "mov eax, [0x1000]", len: 5, op: "load", width: 4, reg: 0 },
  { mode: P32, hex: "8b 44 8e fc", asm: "mov eax, [esi+ecx*4-4]", len: 4, op: "load", width: 4, reg: 0 },
  { mode: P32, hex: "8b 1c 8d 00 20 00 00", asm: "mov ebx, [ecx*4+0x2000]", len: 7, op: "load", width: 4, reg: 3 },
  { mode: P32, hex: "66 8b 03", asm: "mov ax, [ebx]", len: 3, op: "load", width: 2, reg: 0, ext: "none-merge" },
  { mode: P32, hex: "67 8b 07", asm: "mov eax, [bx]", len: 3, op: "load", width: 4, reg: 0, addr: 2 },
  { mode: P32, hex: "67 a1 34 12", asm: "a16 mov eax, [0x1234]", len: 4, op: "load", width: 4, reg: 0, addr: 2 },
  { mode: P32, hex: "8a 63 04", asm: "mov ah, [ebx+4]", len: 3, op: "load", width: 1, reg: 0, high8: true },
  { mode: P32, hex: "88 7b 04", asm: "mov [ebx+4], bh", len: 3, op: "store", width: 1, reg: 3, high8: true },
  { mode: P32, hex: "c7 05 00 10 00 00 78 56 34 12", asm: "mov dword [0x1000], 0x12345678", len: 10, op: "store", width: 4, imm: 0x12345678n },
  { mode: P32, hex: "66 c7 05 00 10 00 00 fe ff", asm: "mov word [0x1000], 0xfffe", len: 9, op: "store", width: 2, imm: 0xfffen },
  { mode: P32, hex: "0f bf 4b 02", asm: "movsx ecx, word [ebx+2]", len: 4, op: "load", width: 2, reg: 1, dw: 4, ext: "sign" },
  { mode: P32, hex: "66 0f b6 0b", asm: "movzx cx, byte [ebx]", len: 4, op: "load", width: 1, reg: 1, dw: 2, ext: "zero" },
  { mode: P32, hex: "ab", asm: "stosd", len: 1, op: "store", width: 4, stos: 4 },
  { mode: P32, hex: "66 ab", asm: "stosw", len: 2, op: "store", width: 2, stos: 4 },
  { mode: P32, hex: "67 aa", asm: "a16 stosb", len: 2, op: "store", width: 1, stos: 2 },
  { mode: P32, hex: "3e 89 03", asm: "mov [ds:ebx], eax", len: 3, op: "store", width: 4, reg: 0, seg: "ds" },

  // 16-bit addressing: real mode and 16-bit protected mode.
  { mode: R, hex: "8b 00", asm: "mov ax, [bx+si]", len: 2, op: "load", width: 2, reg: 0, ext: "none-merge", addr: 2 },
  { mode: R, hex: "8b 46 00", asm: "mov ax, [bp]", len: 3, op: "load", width: 2, reg: 0 },
  { mode: R, hex: "8b 46 fe", asm: "mov ax, [bp-2]", len: 3, op: "load", width: 2, reg: 0 },
  { mode: R, hex: "8b 40 01", asm: "mov ax, [bx+si+1]", len: 3, op: "load", width: 2, reg: 0 },
  { mode: R, hex: "8b 0e 34 12", asm: "mov cx, [0x1234]", len: 4, op: "load", width: 2, reg: 1 },
  { mode: R, hex: "8b 87 34 12", asm: "mov ax, [bx+0x1234]", len: 4, op: "load", width: 2, reg: 0 },
  { mode: R, hex: "89 85 00 01", asm: "mov [di+0x100], ax", len: 4, op: "store", width: 2, reg: 0 },
  { mode: R, hex: "8b 3f", asm: "mov di, [bx]", len: 2, op: "load", width: 2, reg: 7 },
  { mode: R, hex: "a1 34 12", asm: "mov ax, [0x1234]", len: 3, op: "load", width: 2, reg: 0, addr: 2 },
  { mode: R, hex: "a0 34 12", asm: "mov al, [0x1234]", len: 3, op: "load", width: 1, reg: 0 },
  { mode: R, hex: "67 a0 78 56 34 12", asm: "a32 mov al, [0x12345678]", len: 6, op: "load", width: 1, reg: 0, addr: 4 },
  { mode: R, hex: "66 8b 00", asm: "mov eax, [bx+si]", len: 3, op: "load", width: 4, reg: 0, ext: "zero" },
  { mode: R, hex: "67 8b 00", asm: "a32 mov ax, [eax]", len: 3, op: "load", width: 2, reg: 0, addr: 4 },
  { mode: R, hex: "67 8b 04 24", asm: "a32 mov ax, [esp]", len: 4, op: "load", width: 2, reg: 0, addr: 4 },
  { mode: R, hex: "c7 81 80 00 34 12", asm: "mov word [bx+di+0x80], 0x1234", len: 6, op: "store", width: 2, imm: 0x1234n },
  { mode: R, hex: "c6 06 34 12 ff", asm: "mov byte [0x1234], 0xff", len: 5, op: "store", width: 1, imm: 0xffn },
  { mode: R, hex: "66 c7 06 00 10 78 56 34 12", asm: "mov dword [0x1000], 0x12345678", len: 9, op: "store", width: 4, imm: 0x12345678n },
  { mode: R, hex: "aa", asm: "stosb", len: 1, op: "store", width: 1, stos: 2 },
  { mode: R, hex: "66 ab", asm: "stosd", len: 2, op: "store", width: 4, stos: 2 },
  { mode: R, hex: "66 67 ab", asm: "a32 stosd", len: 3, op: "store", width: 4, stos: 4 },
  { mode: P16, hex: "26 88 27", asm: "mov [es:bx], ah", len: 3, op: "store", width: 1, reg: 0, high8: true, seg: "es" },
  { mode: P16, hex: "0f b6 07", asm: "movzx ax, byte [bx]", len: 3, op: "load", width: 1, reg: 0, dw: 2, ext: "zero" },
  { mode: P16, hex: "66 0f be 07", asm: "movsx eax, byte [bx]", len: 4, op: "load", width: 1, reg: 0, dw: 4, ext: "sign" },
  { mode: P16, hex: "8b 56 08", asm: "mov dx, [bp+8]", len: 3, op: "load", width: 2, reg: 2, addr: 2 },
  { mode: P16, hex: "36 8b 46 08", asm: "mov ax, [ss:bp+8]", len: 4, op: "load", width: 2, reg: 0, seg: "ss" },
];

/** Encodings that must be refused; `truncated` when the bytes ran out. */
// deno-fmt-ignore
const REJECTS: { mode: CpuMode; hex: string; why: RegExp; truncated?: boolean }[] = [
  { mode: L, hex: "f3 aa", why: /REP/ },
  { mode: L, hex: "f3 48 ab", why: /REP/ },
  { mode: R, hex: "f3 ab", why: /REP/ },
  { mode: L, hex: "f2 8b 03", why: /REP/ },
  { mode: L, hex: "f0 89 03", why: /LOCK/ },
  { mode: L, hex: "66 f0 89 03", why: /LOCK/ },
  { mode: L, hex: "0f 01 d8", why: /opcode 0f 01/ },
  { mode: L, hex: "0f 38 f0 03", why: /opcode 0f 38/ },
  { mode: L, hex: "ff 03", why: /opcode ff/ },
  { mode: L, hex: "01 03", why: /opcode 01/ },
  { mode: L, hex: "8c 03", why: /opcode 8c/ },
  { mode: L, hex: "a4", why: /opcode a4/ },
  { mode: L, hex: "c5 f8 77", why: /opcode c5/ },
  { mode: P32, hex: "40 8b 03", why: /opcode 40/ }, // INC EAX outside 64-bit mode
  { mode: L, hex: "89 c3", why: /register, not memory/ },
  { mode: L, hex: "0f b6 c3", why: /register, not memory/ },
  { mode: L, hex: "c6 08 05", why: /c6 \/1/ },
  { mode: L, hex: "c7 48 08 00 00 00 00", why: /c7 \/1/ },
  { mode: L, hex: "", why: /truncated/, truncated: true },
  { mode: L, hex: "66 48", why: /truncated/, truncated: true },
  { mode: L, hex: "8b", why: /truncated/, truncated: true },
  { mode: L, hex: "8b 43", why: /truncated/, truncated: true },
  { mode: L, hex: "8b 04", why: /truncated/, truncated: true },
  { mode: L, hex: "0f", why: /truncated/, truncated: true },
  { mode: L, hex: "c7 00 78 56", why: /truncated/, truncated: true },
  { mode: L, hex: "a1 00 00 00 00", why: /truncated/, truncated: true },
  { mode: R, hex: "8b 0e 34", why: /truncated/, truncated: true },
  { mode: L, hex: "66 66 66 66 66 66 66 66 66 66 66 66 66 66 89 03", why: /longer than 15/ },
  { mode: L, hex: "66 66 66 66 66 66 66 66 66 66 66 66 66 66 66 66 66", why: /longer than 15/ },
  { mode: L, hex: "66 66 66 66 48 c7 84 24 00 01 00 00 00 00 00 80", why: /longer than 15/ },
  { mode: L, hex: "26 2e 36 3e 64 65 67 66 c7 84 88 00 01 00 00 00 00", why: /longer than 15/ },
];

function check(row: Row, got: DecodedMmio | { error: string }, label: string): void {
  if ("error" in got) assert.fail(`${label}: unexpected error: ${got.error}`);
  assert.equal(got.length, row.len, `${label}: length`);
  assert.equal(got.op, row.op, `${label}: op`);
  assert.equal(got.width, row.width, `${label}: width`);
  if (row.addr !== undefined) assert.equal(got.addressSize, row.addr, `${label}: address size`);
  assert.equal(got.segment, row.seg, `${label}: segment`);
  if (got.op === "load") {
    assert.equal(got.dest.reg, row.reg, `${label}: dest reg`);
    assert.equal(got.dest.width, row.dw ?? row.width, `${label}: dest width`);
    assert.equal(got.dest.high8 ?? false, row.high8 ?? false, `${label}: high8`);
    if (row.ext !== undefined) assert.equal(got.dest.extend, row.ext, `${label}: extension`);
    else assert.equal(got.dest.extend, row.width >= 4 ? "zero" : "none-merge", `${label}: ext`);
  } else {
    const src = got.source;
    if (row.imm !== undefined) {
      assert.deepEqual(src, { imm: row.imm }, `${label}: immediate`);
    } else if (row.stos !== undefined) {
      assert.deepEqual(src, { stos: true, addressSize: row.stos }, `${label}: stos`);
      assert.equal(got.mnemonic, "stos");
    } else {
      assert.ok("reg" in src, `${label}: register source`);
      assert.equal(src.reg, row.reg, `${label}: source reg`);
      assert.equal(src.width, row.width, `${label}: source width`);
      assert.equal(src.high8 ?? false, row.high8 ?? false, `${label}: high8`);
    }
  }
}

Deno.test("decoder table: every row decodes to the expected access", () => {
  assert.ok(ROWS.length >= 60, `only ${ROWS.length} rows`);
  for (const row of ROWS) {
    const bytes = hx(row.hex);
    assert.equal(bytes.length, row.len, `${row.hex}: table row bytes vs length`);
    check(row, decodeMmioInstruction(bytes, { cpuMode: row.mode }), `${row.mode} ${row.hex}`);
  }
});

Deno.test("decoder table: trailing bytes after the instruction do not change the decode", () => {
  for (const row of ROWS) {
    // Pad to 15 with bytes that would be prefixes or opcodes if misread as part of it.
    const padded = new Uint8Array(15).fill(0x66);
    padded.set(hx(row.hex));
    check(row, decodeMmioInstruction(padded, { cpuMode: row.mode }), `${row.mode} ${row.hex}+pad`);
  }
});

Deno.test("decoder rejects: unsupported, locked, repeated, truncated and overlong instructions", () => {
  for (const { mode, hex, why, truncated } of REJECTS) {
    const got = decodeMmioInstruction(hx(hex), { cpuMode: mode });
    assert.ok("error" in got, `${mode} "${hex}" should be rejected`);
    assert.match(got.error, why, `${mode} "${hex}"`);
    assert.equal(got.truncated ?? false, truncated ?? false, `${mode} "${hex}": truncated flag`);
    // The message names the bytes (at most 15 of them).
    assert.ok(got.error.includes(`"${hexBytes(hx(hex).subarray(0, 15))}"`), got.error);
  }
});

Deno.test("decoder: the mode decides default sizes and whether 40-4f is REX", () => {
  const bytes = hx("48 8b 03 90");
  const long = decodeMmioInstruction(bytes, { cpuMode: "long64" });
  assert.ok(!("error" in long) && long.length === 3 && long.width === 8);
  // Outside 64-bit mode 48 is DEC EAX: refused, not silently skipped.
  assert.ok("error" in decodeMmioInstruction(bytes, { cpuMode: "protected32" }));
  const p16 = decodeMmioInstruction(hx("8b 07"), { cpuMode: "protected16" });
  const p32 = decodeMmioInstruction(hx("8b 07"), { cpuMode: "protected32" });
  assert.ok(!("error" in p16) && p16.width === 2 && p16.addressSize === 2);
  assert.ok(!("error" in p32) && p32.width === 4 && p32.addressSize === 4);
  // Same bytes, different lengths: "8b 06 34 12" is [0x1234] in 16-bit, [esi] in 32-bit.
  const r16 = decodeMmioInstruction(hx("8b 06 34 12"), { cpuMode: "real" });
  const r32 = decodeMmioInstruction(hx("8b 06 34 12"), { cpuMode: "protected32" });
  assert.ok(!("error" in r16) && r16.length === 4);
  assert.ok(!("error" in r32) && r32.length === 2);
});

// ---------------------------------------------------------------------------
// Cross-check against a real assembler.

function nasmAvailable(): boolean {
  try {
    return new Deno.Command("nasm", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

const HAVE_NASM = nasmAvailable();
if (!HAVE_NASM) console.warn("x86_decode_test: nasm not found, skipping the assembler cross-check");

const BITS: Record<CpuMode, number> = { real: 16, protected16: 16, protected32: 32, long64: 64 };

/** Assembles one line per instruction; returns each line's bytes (from the listing's addresses). */
function assemble(bits: number, lines: string[]): Uint8Array[] {
  const dir = Deno.makeTempDirSync({ prefix: "x86_decode_test_" });
  try {
    Deno.writeTextFileSync(`${dir}/t.asm`, [`bits ${bits}`, ...lines, ""].join("\n"));
    const out = new Deno.Command("nasm", {
      args: ["-f", "bin", "-l", `${dir}/t.lst`, "-o", `${dir}/t.bin`, `${dir}/t.asm`],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    assert.ok(out.success, `nasm failed: ${new TextDecoder().decode(out.stderr)}`);
    const bin = Deno.readFileSync(`${dir}/t.bin`);
    const starts = new Map<number, number>();
    for (const l of Deno.readTextFileSync(`${dir}/t.lst`).split("\n")) {
      const m = /^\s*(\d+) ([0-9A-F]{8}) [0-9A-F]/.exec(l);
      if (m && !starts.has(Number(m[1]))) starts.set(Number(m[1]), parseInt(m[2], 16));
    }
    return lines.map((_, i) => {
      const start = starts.get(i + 2);
      assert.ok(start !== undefined, `no listing address for "${lines[i]}"`);
      const next = starts.get(i + 3) ?? bin.length;
      return bin.slice(start, next);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test({
  name: "decoder lengths match what nasm assembles, line by line",
  ignore: !HAVE_NASM,
  fn() {
    const withAsm = ROWS.filter((r) => r.asm !== undefined);
    assert.ok(withAsm.length >= 60, `only ${withAsm.length} rows have assembly`);
    for (const bits of [16, 32, 64]) {
      const rows = withAsm.filter((r) => BITS[r.mode] === bits);
      const assembled = assemble(bits, rows.map((r) => r.asm!));
      rows.forEach((row, i) => {
        const bytes = assembled[i];
        const label = `bits ${bits} "${row.asm}"`;
        const got = decodeMmioInstruction(bytes, { cpuMode: row.mode });
        assert.ok(!("error" in got), `${label}: ${"error" in got ? got.error : ""}`);
        assert.equal(got.length, bytes.length, `${label}: decoded length vs assembled`);
        // The hand-written table bytes are the assembler's bytes.
        assert.equal(hexBytes(bytes), row.hex, `${label}: table bytes`);
        check(row, got, label);
      });
    }
  },
});

/** Every base/index/displacement combination of an address size, as NASM memory operands. */
function addressingForms(bits: 16 | 32 | 64): string[] {
  const disps = ["", "+0x7f", "-0x80", "+0x80", "+0x12345"];
  if (bits === 16) {
    const bases = ["bx+si", "bx+di", "bp+si", "bp+di", "si", "di", "bp", "bx"];
    return [...bases.flatMap((b) => disps.slice(0, 4).map((d) => `[${b}${d}]`)), "[0x1234]"];
  }
  const regs = bits === 64
    ? ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r12", "r13", "r15"]
    : ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
  const indexes = ["", ...regs.filter((r) => !r.endsWith("sp")).slice(0, 3).map((r) => `${r}*4`)];
  if (bits === 64) indexes.push("r12*8", "r13*2");
  const forms: string[] = [];
  for (const base of ["", ...regs]) {
    for (const index of indexes) {
      for (const disp of disps) {
        if (base === "" && index === "") continue;
        const sum = [base, index].filter((p) => p !== "").join("+");
        forms.push(`[${sum}${disp}]`);
      }
    }
  }
  forms.push("[0x1000]", bits === 64 ? "[rel $+0x40]" : "[0x12345678]");
  return forms;
}

/** Instruction templates over a memory operand: NASM text and the expected op/width. */
const TEMPLATES: { asm: (m: string) => string; op: "load" | "store"; width: MmioWidth }[] = [
  { asm: (m) => `mov ecx, ${m}`, op: "load", width: 4 },
  { asm: (m) => `mov ${m}, dx`, op: "store", width: 2 },
  { asm: (m) => `mov dl, ${m}`, op: "load", width: 1 },
  { asm: (m) => `mov word ${m}, 0x1234`, op: "store", width: 2 },
  { asm: (m) => `mov dword ${m}, 0x12345678`, op: "store", width: 4 },
  { asm: (m) => `mov byte ${m}, 0x12`, op: "store", width: 1 },
  { asm: (m) => `movzx cx, byte ${m}`, op: "load", width: 1 },
  { asm: (m) => `movsx ecx, word ${m}`, op: "load", width: 2 },
];

/** Extra 64-bit-only templates (REX.W, REX.R). */
const TEMPLATES_64: typeof TEMPLATES = [
  { asm: (m) => `mov r14, ${m}`, op: "load", width: 8 },
  { asm: (m) => `mov qword ${m}, -2`, op: "store", width: 8 },
  { asm: (m) => `mov ${m}, r9b`, op: "store", width: 1 },
];

Deno.test({
  name: "decoder lengths match nasm over every addressing form of 16/32/64-bit code",
  ignore: !HAVE_NASM,
  fn() {
    const cases: { mode: CpuMode; bits: 16 | 32 | 64; asm: string; op: string; width: number }[] =
      [];
    for (const [mode, bits] of [[R, 16], [P32, 32], [L, 64]] as const) {
      const templates = bits === 64 ? [...TEMPLATES, ...TEMPLATES_64] : TEMPLATES;
      for (const form of addressingForms(bits)) {
        for (const t of templates) {
          cases.push({ mode, bits, asm: t.asm(form), op: t.op, width: t.width });
        }
      }
    }
    // 32-bit code with 16-bit addressing (67) and 16-bit code with 32-bit addressing.
    for (const form of addressingForms(16)) {
      for (const t of TEMPLATES) {
        cases.push({ mode: P32, bits: 32, asm: t.asm(form), op: t.op, width: t.width });
      }
    }
    for (const form of addressingForms(32)) {
      for (const t of TEMPLATES) {
        cases.push({ mode: P16, bits: 16, asm: t.asm(form), op: t.op, width: t.width });
      }
    }
    let checked = 0;
    for (const mode of [R, P16, P32, L]) {
      const group = cases.filter((c) => c.mode === mode);
      const assembled = assemble(group[0].bits, group.map((c) => c.asm));
      group.forEach((c, i) => {
        const bytes = assembled[i];
        const got = decodeMmioInstruction(bytes, { cpuMode: c.mode });
        const label = `${c.mode} "${c.asm}" (${hexBytes(bytes)})`;
        assert.ok(!("error" in got), `${label}: ${"error" in got ? got.error : ""}`);
        assert.equal(got.length, bytes.length, `${label}: length`);
        assert.equal(got.op, c.op, `${label}: op`);
        assert.equal(got.width, c.width, `${label}: width`);
        checked++;
      });
    }
    assert.ok(checked > 1000, `only ${checked} encodings checked`);
  },
});
