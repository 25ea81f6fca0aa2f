/* msr-write-filtered: WRMSR to a write-filtered MSR exits to the VMM; the VMM may accept it
   or refuse it (the guest then takes #GP); unfiltered MSRs are written by KVM. */
#include "tsvmm.h"

int test_main(void) {
    wrmsr(0x176, 0x00000000001234F0ull); /* SYSENTER_EIP: not filtered */
    report_value("sysenter_eip", rdmsr(0x176));
    __asm__ volatile(TRY_BEGIN "wrmsr" TRY_END ::"c"(0x174), "a"(0x10), "d"(0) : "memory");
    report_value("accepted-write-vector", (u64)(i64)last_vector);
    __asm__ volatile(TRY_BEGIN "wrmsr" TRY_END ::"c"(0x175), "a"(0xDEAD0000), "d"(0xFFFF) : "memory");
    report_value("refused-write-vector", (u64)(i64)last_vector);
    report_value("refused-write-rip-ok", last_rip == try_rip);
    return 0;
}
