/* emulate-cmpxchg16b: LOCK CMPXCHG16B at CPL0 (SLUB's get_partial_node), a hit and a miss. */
#include "tsvmm.h"

static volatile u64 pair[2] __attribute__((aligned(16))) = {1, 2};

static int cx16(u64 *lo, u64 *hi, u64 nlo, u64 nhi) {
    u8 zf;
    __asm__ volatile("lock cmpxchg16b %1; setz %0"
                     : "=q"(zf), "+m"(*(volatile u64(*)[2])pair), "+a"(*lo), "+d"(*hi)
                     : "b"(nlo), "c"(nhi) : "memory", "cc");
    return zf;
}

int test_main(void) {
    u64 lo = 1, hi = 2;
    report_value("hit-zf", (u64)cx16(&lo, &hi, 0xaa, 0xbb));
    report_value("hit-mem0", pair[0]);
    report_value("hit-mem1", pair[1]);
    lo = 5, hi = 6;
    report_value("miss-zf", (u64)cx16(&lo, &hi, 0xcc, 0xdd));
    report_value("miss-rax", lo);
    report_value("miss-rdx", hi);
    report_value("miss-mem0", pair[0]);
    return 0;
}
