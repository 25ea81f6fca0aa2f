/*
 * emulate-faults: exceptions raised by instructions the VMM emulates at CPL0 reach the guest's
 * handlers with the processor's vector, error code, CR2 and RIP: #UD (XGETBV with CR4.OSXSAVE
 * clear), #GP(0) (CMPXCHG16B on a misaligned operand), #PF (CMPXCHG16B on an unmapped page),
 * #BP (INT3, a trap: RIP after it).
 */
#include "tsvmm.h"

static u8 buf[64] __attribute__((aligned(16)));

#define REPORT(tag)                                             \
    do {                                                        \
        report_value(tag ".vector", (u64)(i64)last_vector);     \
        report_value(tag ".error", last_error);                 \
        report_value(tag ".rip-offset", last_rip - try_rip);    \
    } while (0)

int test_main(void) {
    quiet_exceptions = 1;
    __asm__ volatile(TRY_BEGIN "xgetbv" TRY_END ::"c"(0) : "rax", "rdx", "memory");
    REPORT("ud");
    __asm__ volatile(TRY_BEGIN "lock cmpxchg16b (%0)" TRY_END ::"r"(buf + 8), "a"(0), "d"(0), "b"(0), "c"(0) : "memory", "cc");
    REPORT("gp");
    __asm__ volatile(TRY_BEGIN "lock cmpxchg16b (%0)" TRY_END ::"r"(0x80000000ul), "a"(0), "d"(0), "b"(0), "c"(0) : "memory", "cc");
    REPORT("pf");
    report_value("pf.cr2", last_cr2);
    __asm__ volatile(TRY_BEGIN "int3" TRY_END ::: "memory");
    REPORT("bp");
    return 0;
}
