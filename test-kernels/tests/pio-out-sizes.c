/* pio-out-sizes: 8/16/32-bit OUT reach the VMM with their size and value. */
#include "tsvmm.h"

int test_main(void) {
    outb(0x500, 0x12);
    outw(0x502, 0x3456);
    outl(0x504, 0x789ABCDE);
    outb(0x501, 0xFF);
    report("outs-done", 1);
    return 0;
}
