/* emulate-popcnt: POPCNT at CPL0 (Linux's __bitmap_weight); KVM's emulator lacks it on PVM hosts. */
#include "tsvmm.h"

int test_main(void) {
    u64 v = 0xf0f0f0f0f0f0f00full, n, flags;
    __asm__ volatile("popcnt %2, %0; pushfq; popq %1" : "=r"(n), "=r"(flags) : "r"(v) : "cc");
    report_value("popcnt", n);
    report_value("popcnt-zf", (flags >> 6) & 1);
    u64 z = 0;
    __asm__ volatile("popcnt %2, %0; pushfq; popq %1" : "=r"(n), "=r"(flags) : "r"(z) : "cc");
    report_value("popcnt-zero", n);
    report_value("popcnt-zero-zf", (flags >> 6) & 1);
    return 0;
}
