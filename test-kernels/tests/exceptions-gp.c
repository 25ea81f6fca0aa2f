/* exceptions-gp: a non-canonical load raises #GP(0) at the load. */
#include "tsvmm.h"

int test_main(void) {
    u64 v;
    __asm__ volatile(TRY_BEGIN "movq (%1), %0" TRY_END : "=r"(v) : "r"(0x8000000000000000ull) : "memory");
    report_value("vector", (u64)(i64)last_vector);
    report_value("error", last_error);
    report_value("expected-rip", try_rip);
    report("rip-is-the-load", last_rip == try_rip);
    return 0;
}
