/* acpi-poweroff: the guest powers the machine off the way ACPICA does: \_S5's SLP_TYPa from the
   DSDT, written to the FADT's PM1a control block first without SLP_EN (nothing happens), then
   with SLP_EN (the VMM stops the VM: reason poweroff, status 0). Nothing after that runs. */
#include "tsvmm.h"
#include "acpi.h"

int test_main(void) {
    const struct acpi_rsdp *rsdp = acpi_find_rsdp();
    const struct acpi_fadt *fadt = rsdp ? (const struct acpi_fadt *)acpi_find_table(rsdp, "FACP") : 0;
    const struct acpi_header *dsdt = fadt ? acpi_dsdt(fadt) : 0;
    report("tables-found", dsdt != 0);
    if (!dsdt) return 1;
    int s5 = acpi_s5_sleep_type(dsdt);
    u16 port = (u16)fadt->pm1a_cnt_blk;
    report_value("poweroff.port", port);
    report_value("poweroff.slp-typ", (u64)(i64)s5);
    if (s5 < 0) return 2;
    u16 v = (u16)(inw(port) & ~0x3c00u);
    outw(port, (u16)(v | ((u32)s5 << 10)));
    report("running-after-slp-typ-alone", 1);
    outw(port, (u16)(v | ((u32)s5 << 10) | 0x2000u));
    report("running-after-slp-en", 1);
    return 3;
}
