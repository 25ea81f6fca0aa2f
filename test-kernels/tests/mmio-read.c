/* mmio-read: loads from guest-physical addresses with no memory slot exit as MMIO reads. */
#include "tsvmm.h"

#define DEV 0x20000000ul /* 512 MiB: inside the boot map, outside RAM */

int test_main(void) {
    report_value("read8", mmio_read8(DEV + 0x0));
    report_value("read16", mmio_read16(DEV + 0x10));
    report_value("read32", mmio_read32(DEV + 0x20));
    report_value("read64", mmio_read64(DEV + 0x30));
    return 0;
}
