/* prot32 entry: flat 32-bit protected mode, paging off; also the PVH entry. */
    .code32
    .section .text.entry, "ax"
    .globl _start
_start:
    cli
    movl $stack_top, %esp
    call lib_start
    call test_main
    subl $12, %esp          /* keep the ABI's 16-byte alignment at the call */
    pushl %eax
    call exit
1:  hlt
    jmp 1b

    .section .bss
    .balign 16
    .space 8192
stack_top:
