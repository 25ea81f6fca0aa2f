/* uart-flood: a flat real-mode guest (loaded at 0x7c00) that prints LINES lines of 64 bytes (1 MiB)
 * through the 16550 at 0x3f8, one OUT per byte as a polled driver with a ready transmitter does,
 * then writes 0 to the debug-exit port 0xf4. Both VMMs of the bench run this same binary. */
    .code16
    .intel_syntax noprefix
    .globl _start
_start:
    xor ax, ax
    mov ds, ax
    mov ebx, LINES
    mov dx, 0x3f8
1:  mov si, offset line
    mov cx, 64
2:  lodsb
    out dx, al
    dec cx
    jnz 2b
    dec ebx
    jnz 1b
    xor al, al
    out 0xf4, al
3:  hlt
    jmp 3b
line:
    .ascii "tsvmm uart-output: 1 MiB through the 16550, 64 bytes a line....\n"
