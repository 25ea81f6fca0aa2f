/* emulate-fwait: FWAIT at CPL0 (fpu__drop) with no x87 exception pending is a no-op that completes. */
#include "tsvmm.h"

int test_main(void) {
    u64 before = 0x1234, after;
    __asm__ volatile("movq %1, %0; fwait; addq $1, %0" : "=r"(after) : "r"(before));
    report_value("after", after);
    return 0;
}
