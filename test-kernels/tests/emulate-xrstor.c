/* emulate-xrstor: XRSTOR64 of a compacted image at CPL0 (fpu__init_system_xstate), read back with XSAVE64. */
#include "tsvmm.h"

static u8 area[4096] __attribute__((aligned(64)));
static u8 out[4096] __attribute__((aligned(64)));

int test_main(void) {
    ulong cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4 | (1ul << 9) | (1ul << 18))); /* OSFXSR, OSXSAVE */
    __asm__ volatile("xsetbv" ::"c"(0), "a"(3), "d"(0)); /* XCR0 = x87 | SSE */
    /* Compacted: XSTATE_BV = SSE, XCOMP_BV = bit 63 | x87 | SSE; MXCSR and XMM2 in the legacy region. */
    *(u32 *)(area + 24) = 0x1f80;
    *(u64 *)(area + 160 + 32) = 0x0123456789abcdefull;
    *(u64 *)(area + 512) = 2;
    *(u64 *)(area + 520) = (1ull << 63) | 3;
    __asm__ volatile("xrstor64 %0" ::"m"(*(u8(*)[4096])area), "a"(3), "d"(0) : "memory");
    u64 x;
    __asm__ volatile("movq %%xmm2, %0" : "=r"(x));
    report_value("xmm2", x);
    __asm__ volatile("xsave64 %0" : "=m"(*(u8(*)[4096])out) : "a"(3), "d"(0) : "memory");
    report_value("saved-xmm2", *(u64 *)(out + 160 + 32));
    report_value("saved-xstate-bv-sse", (*(u64 *)(out + 512) >> 1) & 1);
    return 0;
}
