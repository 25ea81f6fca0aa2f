/* msr-read-allowed: RDMSR of MSRs the filter allows runs in KVM; a filtered one exits to the
   VMM, whose answer reaches the guest. */
#include "tsvmm.h"

int test_main(void) {
    report_value("apic_base", rdmsr(0x1B));
    report_value("efer", rdmsr(0xC0000080));
    u64 t0 = rdmsr(0x10), t1 = rdmsr(0x10);
    report("tsc-advances", t1 > t0);
    report_value("sysenter_cs", rdmsr(0x174)); /* read-filtered: the VMM answers */
    return 0;
}
