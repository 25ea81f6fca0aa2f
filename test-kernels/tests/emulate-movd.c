/* emulate-movd: MOVD/MOVQ between general and XMM registers at CPL0 (blake2s's SSSE3 prologue). */
#include "tsvmm.h"

int test_main(void) {
    ulong cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4 | (1ul << 9)));
    u64 in = 0x1122334455667788ull, q, d;
    __asm__ volatile("movq %2, %%xmm1; movq %%xmm1, %0; movd %%xmm1, %k1" : "=r"(q), "=r"(d) : "r"(in));
    report_value("movq", q);
    report_value("movd", d);
    return 0;
}
