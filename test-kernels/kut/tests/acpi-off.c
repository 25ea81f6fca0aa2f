/* acpi-off: power-off as an ACPI OS does it, under `tsvmm run`: the RSDP from the BIOS-area scan,
   the FADT's PM1a control port, \_S5's sleep type from the DSDT; SLP_TYP alone, then with SLP_EN.
   The VM stops with reason "poweroff" and status 0; the FAIL line after it must never appear. */
#include "kut.h"
#include "../../lib/acpi.h"

int kut_main(void) {
    const struct acpi_rsdp *rsdp = acpi_find_rsdp();
    const struct acpi_fadt *fadt = rsdp ? (const struct acpi_fadt *)acpi_find_table(rsdp, "FACP") : 0;
    const struct acpi_header *dsdt = fadt ? acpi_dsdt(fadt) : 0;
    report(rsdp != 0, "RSDP found at 0x%x", (u32)(uintptr_t)rsdp);
    report(dsdt != 0, "FADT and DSDT found, checksums good");
    if (!dsdt) return report_summary();
    int s5 = acpi_s5_sleep_type(dsdt);
    u16 port = (u16)fadt->pm1a_cnt_blk;
    report(s5 >= 0, "\\_S5 SLP_TYPa %d, PM1a_CNT at 0x%x", s5, port);
    u16 v = (u16)(inw(port) & ~0x3c00u);
    outw(port, (u16)(v | ((u32)s5 << 10)));
    report(1, "SLP_TYP without SLP_EN leaves the machine running");
    printf("acpi-off: powering off\n");
    outw(port, (u16)(v | ((u32)s5 << 10) | 0x2000u));
    report(0, "still running after S5");
    return report_summary();
}
