/* longmode-self-paged (prot32 entry): the guest builds its own identity map and enters long mode. */
#include "tsvmm.h"

extern u64 self_pml4[];

int test_main(void) {
    volatile u64 *last = (volatile u64 *)0x3FFFF000; /* last page of the 1 GiB self map */
    report_value("cr0", read_cr0());
    report_value("cr3", read_cr3());
    report_value("cr4", read_cr4());
    report_value("efer", read_efer());
    report_value("self_pml4", (u64)self_pml4);
    report_value("cs", read_cs());
    report_value("pd511", ((u64 *)(((u64 *)(self_pml4[0] & ~0xfffull))[0] & ~0xfffull))[511]);
    report("long-mode-active", (read_efer() & 0x400) != 0);
    (void)last;
    return 0;
}
