/* pmode-flat (prot32): flat 32-bit protected mode, paging off; memory above 1 MiB is flat. */
#include "tsvmm.h"

int test_main(void) {
    u32 fib[48];
    fib[0] = 0;
    fib[1] = 1;
    for (int i = 2; i < 48; i++) fib[i] = fib[i - 1] + fib[i - 2];
    volatile u32 *far = (volatile u32 *)0x00800000; /* 8 MiB: flat, no paging */
    *far = 0xC0FFEE11;
    report_value("cr0", read_cr0());
    report_value("cs", read_cs());
    report_value("fib47-mod-2^32", fib[47]);
    report_value("readback-8mib", *far);
    report("protected-flat", (read_cr0() & 0x80000001) == 1);
    return 0;
}
