/* smp-two-vcpus: every vCPU runs test_main and reports its APIC id (CPUID and LAPIC). */
#include "tsvmm.h"

int test_main(void) {
    lapic_enable();
    report_value("apic.cpuid", (u64)cpu_apic_id());
    report_value("apic.lapic", lapic_read(0x20) >> 24);
    return 0;
}
