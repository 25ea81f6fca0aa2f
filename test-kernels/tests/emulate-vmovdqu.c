/* emulate-vmovdqu: VEX VMOVDQU ymm load/store at CPL0 (blake2s's AVX path): 32 bytes copied through YMM3. */
#include "tsvmm.h"

static u8 src[32], dst[32];

int test_main(void) {
    ulong cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4 | (1ul << 9) | (1ul << 18)));
    __asm__ volatile("xsetbv" ::"c"(0), "a"(7), "d"(0)); /* XCR0 = x87 | SSE | AVX */
    for (int i = 0; i < 32; i++) src[i] = (u8)(i * 7 + 1);
    __asm__ volatile("vmovdqu %1, %%ymm3; vmovdqu %%ymm3, %0" : "=m"(*(u8(*)[32])dst) : "m"(*(u8(*)[32])src) : "memory");
    u64 sum = 0;
    for (int i = 0; i < 32; i++) sum = sum * 31 + dst[i];
    report_value("sum", sum);
    report_value("same", (u64)(memcmp(src, dst, 32) == 0));
    return 0;
}
