/*
 * cpl3-diff: runs instructions natively at CPL3 on inputs from a parameter block the VMM wrote, and
 * leaves the results in the block (for the emulator differential test). Block at DIFF_BLOCK:
 *   u64 magic, count; then `count` cases of 0x80 bytes at +0x100 (struct diff_case below);
 *   each case's instruction bytes, followed by RET, at DIFF_STUBS + 32 * i.
 * Registers in: RAX RBX RCX RDX RDI and RFLAGS from the case; RSI = the case's 16-byte memory operand.
 */
#include "tsvmm.h"

#define DIFF_BLOCK 0x400000ul
#define DIFF_STUBS (DIFF_BLOCK + 0x100000ul)
#define DIFF_MAGIC 0x4646494433435044ull

struct diff_case {
    u64 in_rax, in_rbx, in_rcx, in_rdx, in_rdi, in_flags;
    u64 out_rax, out_rbx, out_rcx, out_rdx, out_rsi, out_rdi, out_flags;
    u8 mem[16];
    u8 pad[0x80 - 0x78];
};
_Static_assert(sizeof(struct diff_case) == 0x80, "case size");
_Static_assert(__builtin_offsetof(struct diff_case, out_rax) == 0x30, "out offset");
_Static_assert(__builtin_offsetof(struct diff_case, mem) == 0x68, "mem offset");

/* One case at CPL3: load, call the stub, store. RDI = the case, RSI = its stub. */
__asm__(".text\n"
        "diff_one:\n"
        "  pushq %rbx; pushq %rbp; pushq %r12; pushq %r13; pushq %r14; pushq %r15\n"
        "  movq %rdi, %r15\n"
        "  movq %rsi, %r14\n"
        "  pushq 0x28(%r15); popfq\n"
        "  movq 0x00(%r15), %rax\n"
        "  movq 0x08(%r15), %rbx\n"
        "  movq 0x10(%r15), %rcx\n"
        "  movq 0x18(%r15), %rdx\n"
        "  movq 0x20(%r15), %rdi\n"
        "  leaq 0x68(%r15), %rsi\n"
        "  call *%r14\n"
        "  pushfq; popq 0x60(%r15)\n"
        "  movq %rax, 0x30(%r15)\n"
        "  movq %rbx, 0x38(%r15)\n"
        "  movq %rcx, 0x40(%r15)\n"
        "  movq %rdx, 0x48(%r15)\n"
        "  movq %rsi, 0x50(%r15)\n"
        "  movq %rdi, 0x58(%r15)\n"
        "  popq %r15; popq %r14; popq %r13; popq %r12; popq %rbp; popq %rbx\n"
        "  ret\n");
void diff_one(struct diff_case *c, u64 stub);

static u64 user(u64 n) {
    struct diff_case *cases = (struct diff_case *)(DIFF_BLOCK + 0x100);
    for (u64 i = 0; i < n; i++) diff_one(&cases[i], DIFF_STUBS + 32 * i);
    return n;
}

int test_main(void) {
    volatile u64 *blk = (volatile u64 *)DIFF_BLOCK;
    if (blk[0] != DIFF_MAGIC) return 2;
    u64 done = run_user(user, blk[1]);
    report_value("cases", done);
    report_value("fault", (u64)(i64)user_fault_vector);
    return 0;
}
