/* emulate-bench: N POPCNTs at CPL0 (one emulation exit each with --emulate), then N OUTs to an unclaimed port (one PIO exit each); timestamps come from the VMM's receipt of the values. */
#include "tsvmm.h"

#define N 4000

int test_main(void) {
    u64 acc = 0, v = 0x123456789abcdefull;
    report_value("start", 0);
    for (int i = 0; i < N; i++) {
        u64 n;
        __asm__ volatile("popcnt %1, %0" : "=r"(n) : "r"(v + (u64)i));
        acc += n;
    }
    report_value("emulated", acc);
    for (int i = 0; i < N; i++) outb(0x510, (u8)i);
    report_value("pio", N);
    return 0;
}
