/* ro-memory-write-exits: a read-only slot reads without exits; a write exits as MMIO and the
   page keeps its contents. */
#include "tsvmm.h"

#define ROM 0x01000000ul /* the VMM maps a read-only slot here */

int test_main(void) {
    report_value("before", mmio_read64(ROM));
    mmio_write32(ROM + 8, 0xDEADBEEF);
    report_value("after", mmio_read64(ROM));
    report_value("after+8", mmio_read64(ROM + 8));
    return 0;
}
