/* pio-in: 8/16/32-bit IN return what the VMM put there. */
#include "tsvmm.h"

int test_main(void) {
    report_value("inb-0x520", inb(0x520));
    report_value("inw-0x522", inw(0x522));
    report_value("inl-0x524", inl(0x524));
    report_value("signature", inl(HC_SIGNATURE_PORT));
    return 0;
}
