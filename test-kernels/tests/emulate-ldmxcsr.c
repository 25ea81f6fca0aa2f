/* emulate-ldmxcsr: LDMXCSR/STMXCSR at CPL0 (kernel_fpu_begin_mask) round-trip MXCSR. */
#include "tsvmm.h"

int test_main(void) {
    ulong cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    cr4 |= (1ul << 9) | (1ul << 10); /* OSFXSR, OSXMMEXCPT */
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4));
    u32 in = 0x7f80 /* default masks + round toward zero */, out = 0;
    __asm__ volatile("ldmxcsr %1; stmxcsr %0" : "=m"(out) : "m"(in));
    report_value("mxcsr", out);
    return 0;
}
