/* cpuid-template: every vCPU executes CPUID for the (leaf, subleaf) list in the parameter block
   at 0x6000 and stores the raw EAX/EBX/ECX/EDX in a result row it claims with an atomic counter;
   it reports the row it claimed (the VMM knows which vCPU made the report) and its LAPIC id, so
   the test can compare every vCPU's view with the table it gave that vCPU. */
#include "tsvmm.h"

#define PARAMS 0x6000ul
#define PARAMS_MAGIC 0x6c706d74647063ull /* "cpdtmpl" */
#define MAX_LEAVES 96
#define MAX_ROWS 4

struct leaf { u32 leaf, subleaf; };
struct params {
    u64 magic, count;
    u32 next_row;
    u32 pad;
    struct leaf leaves[MAX_LEAVES];
    struct cpuid rows[MAX_ROWS][MAX_LEAVES];
};

int test_main(void) {
    struct params *pb = (struct params *)PARAMS;
    if (pb->magic != PARAMS_MAGIC || pb->count > MAX_LEAVES) return 1;
    u32 row = __atomic_fetch_add(&pb->next_row, 1, __ATOMIC_SEQ_CST);
    if (row >= MAX_ROWS) return 2;
    for (u32 i = 0; i < (u32)pb->count; i++) pb->rows[row][i] = cpuid(pb->leaves[i].leaf, pb->leaves[i].subleaf);
    lapic_enable();
    report_value("lapic.id", lapic_read(0x20) >> 24);
    report_value("row", row);
    return 0;
}
