/* 64-bit core: GDT, the common entry path, exception stubs, and the CPL3 round trip. */
#define MAX_CPUS 4
#define STACK_SHIFT 14

    .section .data
    .balign 16
    .globl gdt64, gdt64_ptr
gdt64:
    .quad 0
    .quad 0x00af9b000000ffff    /* 0x08 kernel code, 64-bit */
    .quad 0x00cf93000000ffff    /* 0x10 kernel data */
    .quad 0x00cff3000000ffff    /* 0x18 user data (0x1b) */
    .quad 0x00affb000000ffff    /* 0x20 user code, 64-bit (0x23) */
    .quad 0, 0                  /* 0x28 TSS, filled by trap.c */
gdt64_end:
    .balign 8
    .word 0
gdt64_ptr:
    .word gdt64_end - gdt64 - 1
    .quad gdt64
next_cpu:
    .long 0

    .section .text
    .code64
    /* Every 64-bit guest gets here with paging on and a usable GDT in CS. */
    .globl _start64
_start64:
    cli
    movl $1, %eax
    lock xaddl %eax, next_cpu
    cmpl $MAX_CPUS, %eax
    jae 2f
    movl %eax, %edi
    leal 1(%rax), %ecx
    shll $STACK_SHIFT, %ecx
    leaq cpu_stacks(%rcx), %rsp
    lgdt gdt64_ptr
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    pushq $0x08
    pushq $1f
    lretq
1:  call lib_start64
2:  hlt
    jmp 2b

/* ---- exception / interrupt stubs: push a uniform frame and call trap_dispatch ---- */
    .macro isr n
isr_\n:
    .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    pushq $0
    .endif
    pushq $\n
    jmp isr_common
    .endm

    .altmacro
    .set i, 0
    .rept 64
    isr %i
    .set i, i + 1
    .endr

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call trap_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

    .section .rodata
    .balign 8
    .globl isr_table
isr_table:
    .macro isr_addr n
    .quad isr_\n
    .endm
    .set i, 0
    .rept 64
    isr_addr %i
    .set i, i + 1
    .endr
    .noaltmacro

/* ---- CPL3: enter_user(fn, arg, stack_top) returns fn(arg) via return_from_user ---- */
    .section .text
    .globl enter_user, return_from_user, user_return_point
enter_user:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, kernel_saved_rsp
    pushq $0x1b         /* SS */
    pushq %rdx          /* RSP */
    pushq $0x2          /* RFLAGS: IF off, user code needs no interrupts */
    pushq $0x23         /* CS */
    pushq $user_trampoline
    iretq
user_trampoline:        /* runs at CPL3 */
    movq %rdi, %rax
    movq %rsi, %rdi
    call *%rax
    /* The way home: #BP from CPL3 with RIP == user_return_point means "fn returned". */
    int3
user_return_point:
    ud2

return_from_user:       /* rdi = result; called on the RSP0 stack by trap_dispatch */
    movq kernel_saved_rsp, %rsp
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq %rdi, %rax
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

    .section .bss
    .balign 8
kernel_saved_rsp:
    .quad 0
    .balign 1 << STACK_SHIFT
cpu_stacks:
    .space (MAX_CPUS + 1) << STACK_SHIFT
