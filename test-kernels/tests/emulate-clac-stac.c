/* emulate-clac-stac: STAC then CLAC at CPL0 (every kernel entry once SMAP is patched in) set and clear RFLAGS.AC. */
#include "tsvmm.h"

int test_main(void) {
    u64 a, b;
    __asm__ volatile("stac; pushfq; popq %0; clac; pushfq; popq %1" : "=r"(a), "=r"(b) :: "cc");
    report_value("ac-after-stac", (a >> 18) & 1);
    report_value("ac-after-clac", (b >> 18) & 1);
    return 0;
}
