/* runaway-loop: a guest spinning for ever (at CPL3, natively) is stopped by the VMM's time limit. */
#include "tsvmm.h"

static u64 spin(u64 unused) {
    (void)unused;
    for (;;) __asm__ volatile("" ::: "memory");
    return 0;
}

int test_main(void) {
    report("spinning", 1);
    run_user(spin, 0);
    report("returned", 0);
    return 1;
}
