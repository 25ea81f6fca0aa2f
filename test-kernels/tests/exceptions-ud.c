/* exceptions-ud: ud2 at CPL0 raises #UD at the ud2; the fixup resumes after it. */
#include "tsvmm.h"

int test_main(void) {
    __asm__ volatile(TRY_BEGIN "ud2" TRY_END ::: "memory");
    report_value("vector", (u64)(i64)last_vector);
    report_value("expected-rip", try_rip);
    report("rip-is-the-ud2", last_rip == try_rip);
    return 0;
}
