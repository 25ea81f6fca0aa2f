/* int3-at-cpl3: `int3` in user mode reaches the #BP handler (a trap) and user code resumes. */
#include "tsvmm.h"

static u64 user(u64 arg) {
    __asm__ volatile("int3");
    arg *= 3;
    __asm__ volatile("int3");
    return arg + 1;
}

int test_main(void) {
    u64 r = run_user(user, 5);
    report_value("user-result", r);
    report_value("bp-count", user_bp_count);
    report_value("fault-vector", (u64)(i64)user_fault_vector);
    report_value("last-vector", (u64)(i64)last_vector);
    return 0;
}
