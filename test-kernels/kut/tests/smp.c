/* smp: the CPU count comes from fw_cfg (as kvm-unit-tests takes it); the BSP starts the APs
   with INIT, SIPI, SIPI through its local APIC; each AP enters a real-mode trampoline below
   1 MiB, switches to protected mode and reports its APIC id. All must arrive, with distinct
   ids, none equal to the BSP's. */
#include "kut.h"

static volatile u32 seen_ids[16];

void ap_main(u32 index) {
    u32 id = apic_id();
    printf("AP %u: apic id %u online\n", index, id);
    if (index < 16) seen_ids[index] = id + 1;
    __atomic_add_fetch(&ap_started, 1, __ATOMIC_SEQ_CST);
}

int kut_main(void) {
    u32 cpus = (u32)fwcfg_get(FW_CFG_NB_CPUS, 2);
    u32 bsp = apic_id();
    u64 base = rdmsr(0x1b);
    printf("smp: bsp apic id %u, apic base 0x%llx, fw_cfg cpus %u\n", bsp, base, cpus);
    report((base & (1u << 8)) != 0, "IA32_APIC_BASE.BSP is set on the boot CPU");
    report((base & (1u << 11)) != 0 && (base & ~0xfffull) == APIC_BASE, "local APIC enabled at 0xfee00000");
    if (cpus > 16) cpus = 16;
    if (cpus > 1) smp_start_aps();
    for (u32 i = 0; i < 2000000 && ap_started < cpus - 1; i++) cpu_relax();
    u32 up = ap_started;
    report(up == cpus - 1, "%u of %u APs came up", up, cpus - 1);
    int distinct = 1;
    for (u32 i = 1; i <= up && i < 16; i++) {
        if (seen_ids[i] == 0 || seen_ids[i] - 1 == bsp) distinct = 0;
        for (u32 j = 1; j < i; j++) if (seen_ids[j] == seen_ids[i]) distinct = 0;
    }
    report(distinct, "AP APIC ids are distinct and differ from the BSP's");
    printf("smp: %u cpus online\n", up + 1);
    return report_summary();
}
