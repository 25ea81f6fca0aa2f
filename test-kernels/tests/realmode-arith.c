/* realmode-arith (real16): integer arithmetic in 16-bit real mode, checked by the VMM. */
#include "tsvmm.h"

static u32 gcd(u32 a, u32 b) {
    while (b) {
        u32 t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int test_main(void) {
    u32 squares = 0;
    for (u32 i = 1; i <= 100; i++) squares += i * i;
    volatile u16 a = 0xBEEF;
    u16 wrapped = (u16)(a * 3);
    volatile u32 big = 1000000;
    u32 cr0;
    __asm__ volatile("movl %%cr0, %0" : "=r"(cr0));
    report_value("sum-of-squares-1-100", squares);
    report_value("gcd-1071-462", gcd(1071, 462));
    report_value("u16-0xbeef-times-3", wrapped);
    report_value("1000000-div-7", big / 7);
    report_value("1000000-mod-7", big % 7);
    report_value("cr0", cr0);
    report_value("cs", read_cs());
    report("realmode", (cr0 & 1) == 0);
    return 0;
}
