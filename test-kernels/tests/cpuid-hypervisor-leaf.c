/* cpuid-hypervisor-leaf: CPUID.1:ECX.hypervisor and the 0x40000000 signature leaf. */
#include "tsvmm.h"

int test_main(void) {
    struct cpuid r = cpuid(0x40000000, 0);
    report_value("hypervisor-bit", cpuid(1, 0).c >> 31);
    report_value("0x40000000.eax", r.a);
    report_value("0x40000000.ebx", r.b);
    report_value("0x40000000.ecx", r.c);
    report_value("0x40000000.edx", r.d);
    return 0;
}
