/* Multiboot v1 header, the 32-bit entry, and the real-mode AP trampoline.
   The loader enters _start in flat 32-bit protected mode, paging off, EAX = 0x2BADB002,
   EBX = the information structure; it promises no stack and no particular GDT, so we load ours. */
#define MB_HEADER_MAGIC 0x1badb002
#define MB_HEADER_FLAGS 0x00000003      /* modules page-aligned, memory information wanted */
#define AP_STACK_SIZE 4096
#define MAX_APS 15

    .section .multiboot, "a"
    .balign 4
    .long MB_HEADER_MAGIC, MB_HEADER_FLAGS, -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)

    .code32
    .section .text.entry, "ax"
    .globl _start
_start:
    cli
    movl $bsp_stack_top, %esp
    movl %eax, mb_magic
    movl %ebx, mb_info
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    call serial_init
    call kut_main
    subl $12, %esp
    pushl %eax
    call exit
2:  hlt
    jmp 2b

/* An AP arrives here from the trampoline, in protected mode on our GDT, with no stack yet:
   take the next stack slot (an atomic counter) and call ap_main(index). */
ap_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl $1, %eax
    lock xaddl %eax, ap_next_index          /* old value: 1, 2, ... */
    cmpl $MAX_APS, %eax
    ja 3f                                   /* no stack for it: park */
    movl %eax, %ecx
    shll $12, %ecx
    leal ap_stacks(%ecx), %esp              /* top of slot index-1 */
    subl $12, %esp
    pushl %eax
    call ap_main
3:  cli
    hlt
    jmp 3b

/* Real-mode trampoline, copied to a page below 1 MiB; SIPI starts it at CS = page >> 4, IP = 0.
   Everything it touches is addressed relative to CS, except the far jump to ap_pm32 which is
   absolute (flat CS 0x08). */
    .code16
    .globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
    cli
    lgdtl %cs:(ap_tramp_gdt_desc - ap_tramp_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $ap_pm32
    .balign 4
ap_tramp_gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
ap_tramp_end:
    .code32

    .section .data
    .balign 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                /* 0x08: flat 32-bit code */
    .quad 0x00cf92000000ffff                /* 0x10: flat data */
gdt_end:
    .balign 4
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .globl ap_next_index
ap_next_index:
    .long 1

    .section .bss
    .balign 16
    .space 16384
bsp_stack_top:
    .balign 16
ap_stacks:
    .space AP_STACK_SIZE * (MAX_APS + 1)
