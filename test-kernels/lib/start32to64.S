/* prot32 entry that builds its own identity map (first 1 GiB, 2 MiB pages, user-accessible)
   and enters long mode itself: the "longmode-self-paged" path. Also the PVH entry. */
    .code32
    .section .text.entry, "ax"
    .globl _start
_start:
    cli
    xorl %eax, %eax
1:  movl %eax, %edx
    shll $21, %edx
    orl $0x87, %edx             /* P | RW | US | PS */
    movl %edx, self_pd(,%eax,8)
    incl %eax
    cmpl $512, %eax
    jne 1b
    movl $(self_pdpt + 7), self_pml4
    movl $(self_pd + 7), self_pdpt
    movl %cr4, %eax
    orl $0x20, %eax             /* PAE */
    movl %eax, %cr4
    movl $self_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax            /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax       /* PG | PE */
    movl %eax, %cr0
    lgdt gdt64_ptr
    ljmp $0x08, $2f
    .code64
2:  jmp _start64

    .section .bss
    .balign 4096
    .globl self_pml4
self_pml4: .space 4096
self_pdpt: .space 4096
self_pd:   .space 4096
