/* long64 entry: the VMM already built an identity map and put us in 64-bit mode. */
    .code64
    .section .text.entry, "ax"
    .globl _start
_start:
    jmp _start64
