/* longmode-vmm-paged (long64): the VMM built the page tables; report them as the CPU sees them. */
#include "tsvmm.h"

int test_main(void) {
    u64 cr3 = read_cr3();
    u64 *pml4 = (u64 *)(cr3 & ~0xfffull);
    u64 *pdpt = (u64 *)(pml4[0] & 0x000ffffffffff000ull);
    u64 *pd = (u64 *)(pdpt[0] & 0x000ffffffffff000ull);
    report_value("cr0", read_cr0());
    report_value("cr3", cr3);
    report_value("cr4", read_cr4());
    report_value("efer", read_efer());
    report_value("pml4[0]", pml4[0]);
    report_value("pdpt[0]", pdpt[0]);
    report_value("pdpt[1]", pdpt[1]);
    report_value("pd[0]", pd[0]);
    report_value("pd[511]", pd[511]);
    /* a write to the top of the map must land in RAM where the VMM can read it */
    *(volatile u64 *)0x00F00000 = 0x5A5A5A5AA5A5A5A5ull;
    report("long-mode-active", (read_efer() & 0x500) == 0x500);
    return 0;
}
