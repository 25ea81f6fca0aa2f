/* emulate-int3: INT3 at CPL0 (int3_selftest, live patching) reaches the #BP handler as a trap, RIP past it. */
#include "tsvmm.h"

int test_main(void) {
    quiet_exceptions = 1;
    __asm__ volatile(TRY_BEGIN "int3" TRY_END ::: "memory");
    report_value("vector", (u64)(i64)last_vector);
    report_value("rip-past-int3", last_rip - try_rip);
    report_value("cs-rpl", read_cs() & 3);
    return 0;
}
