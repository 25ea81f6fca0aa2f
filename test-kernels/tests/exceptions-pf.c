/* exceptions-pf: a write above the 1 GiB boot map raises #PF with CR2 = the address. */
#include "tsvmm.h"

#define UNMAPPED 0x40001008ull

int test_main(void) {
    __asm__ volatile(TRY_BEGIN "movq $1, (%0)" TRY_END ::"r"(UNMAPPED) : "memory");
    report_value("vector", (u64)(i64)last_vector);
    report_value("error", last_error);
    report_value("cr2", last_cr2);
    report_value("expected-rip", try_rip);
    report("rip-is-the-store", last_rip == try_rip);
    return 0;
}
