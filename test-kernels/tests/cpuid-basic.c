/* cpuid-basic: leaves 0 and 1 as the guest sees them (the VMM compares with its KVM_SET_CPUID2). */
#include "tsvmm.h"

static void dump(u32 leaf, const char *a, const char *b, const char *c, const char *d) {
    struct cpuid r = cpuid(leaf, 0);
    report_value(a, r.a);
    report_value(b, r.b);
    report_value(c, r.c);
    report_value(d, r.d);
}

int test_main(void) {
    dump(0, "cpuid.0.eax", "cpuid.0.ebx", "cpuid.0.ecx", "cpuid.0.edx");
    dump(1, "cpuid.1.eax", "cpuid.1.ebx", "cpuid.1.ecx", "cpuid.1.edx");
    return 0;
}
