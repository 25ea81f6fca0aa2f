/* dirty-pages: the guest writes the pages of a 64-page dirty-logged slot that the VMM's random
   mask selects (even ones at CPL0, odd ones at CPL3); the VMM compares its dirty bitmap. */
#include "tsvmm.h"

#define SLOT 0x01000000ul

static u64 write_odd(u64 mask) {
    for (u64 i = 1; i < 64; i += 2)
        if (mask >> i & 1) *(volatile u64 *)(SLOT + i * 4096 + (i * 8 % 4096)) = i + 1;
    return 0;
}

int test_main(void) {
    u64 mask = inl(0x540) | (u64)inl(0x544) << 32;
    for (u64 i = 0; i < 64; i += 2)
        if (mask >> i & 1) *(volatile u64 *)(SLOT + i * 4096 + (i * 8 % 4096)) = i + 1;
    run_user(write_odd, mask);
    report_value("mask", mask);
    report_value("user-fault", (u64)(i64)user_fault_vector);
    return 0;
}
