/* cpuid-vendor-and-brand: the vendor (leaf 0) and brand string (0x80000002..4) the VMM set. */
#include "tsvmm.h"

int test_main(void) {
    char vendor[13], brand[49];
    struct cpuid r = cpuid(0, 0);
    memcpy(vendor, &r.b, 4);
    memcpy(vendor + 4, &r.d, 4);
    memcpy(vendor + 8, &r.c, 4);
    vendor[12] = 0;
    for (u32 i = 0; i < 3; i++) {
        r = cpuid(0x80000002 + i, 0);
        memcpy(brand + 16 * i, &r, 16);
    }
    brand[48] = 0;
    printf("vendor=%s\nbrand=%s\n", vendor, brand);
    u64 w;
    memcpy(&w, vendor, 8);
    report_value("vendor[0..8]", w);
    w = 0;
    memcpy(&w, vendor + 8, 4);
    report_value("vendor[8..12]", w);
    report_value("max-extended-leaf", cpuid(0x80000000, 0).a);
    return 0;
}
