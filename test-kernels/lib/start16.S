/* real16 entry: the VMM starts us with CS = 0, IP = e_entry (< 0x10000). */
    .code16
    .section .text.entry, "ax"
    .globl _start
_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    /* gcc -m16 code pushes 32-bit values: the whole ESP must be valid */
    movl $stack_top, %esp
    calll lib_start
    calll test_main
    subl $12, %esp          /* keep the ABI's 16-byte alignment at the call */
    pushl %eax
    calll exit
1:  hlt
    jmp 1b

    .section .bss
    .balign 16
    .space 4096
stack_top:
