/* mmio-write: stores to guest-physical addresses with no memory slot exit as MMIO writes. */
#include "tsvmm.h"

#define DEV 0x20000000ul

int test_main(void) {
    mmio_write8(DEV + 0x1, 0xAB);
    mmio_write16(DEV + 0x12, 0xCDEF);
    mmio_write32(DEV + 0x24, 0x01234567);
    mmio_write64(DEV + 0x38, 0x89ABCDEF02468ACEull);
    report("writes-done", 1);
    return 0;
}
