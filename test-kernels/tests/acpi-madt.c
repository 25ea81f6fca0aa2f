/* acpi-madt: the guest finds the firmware tables as an OS does (RSDP by scanning 0xE0000-0xFFFFF,
   XSDT, FADT, MADT, DSDT, and the MP floating pointer in 0xF0000-0xFFFFF), checks every checksum
   and reports what they say: each local APIC id, the IOAPIC, the interrupt overrides, the PM
   ports, the \_S5 sleep type, the virtio-mmio devices in the DSDT. The test compares them with
   the VM it configured. It also reads the PM timer 200 times against the TSC. vCPU 0 only;
   the others exit at once. */
#include "tsvmm.h"
#include "acpi.h"

int test_main(void) {
    if (cpu_apic_id() != 0) return 0;
    const struct acpi_rsdp *rsdp = acpi_find_rsdp();
    report("rsdp-found", rsdp != 0);
    if (!rsdp) return 1;
    report_value("rsdp.address", (u64)rsdp);
    report_value("rsdp.revision", rsdp->revision);
    report_value("rsdp.xsdt", rsdp->xsdt);

    const struct acpi_madt *madt = (const struct acpi_madt *)acpi_find_table(rsdp, "APIC");
    report("madt-found", madt != 0);
    if (!madt) return 1;
    report_value("madt.lapic-address", madt->lapic_address);
    report_value("madt.flags", madt->flags);
    u32 cpus = 0, overrides = 0, ioapics = 0, nmis = 0;
    const u8 *p = (const u8 *)(madt + 1), *end = (const u8 *)madt + madt->h.length;
    while (p + 2 <= end) {
        const struct madt_entry *e = (const struct madt_entry *)p;
        if (e->length < 2 || p + e->length > end) break;
        if (e->type == MADT_LAPIC) {
            const struct madt_lapic *l = (const struct madt_lapic *)e;
            /* name per entry index: lapic.N = apic id, lapic-flags.N */
            char name[] = "madt.lapic.0", fl[] = "madt.lapic-flags.0";
            name[sizeof(name) - 2] = (char)('0' + cpus % 10);
            fl[sizeof(fl) - 2] = (char)('0' + cpus % 10);
            report_value(name, l->apic_id);
            report_value(fl, l->flags);
            cpus++;
        } else if (e->type == MADT_IOAPIC) {
            const struct madt_ioapic *io = (const struct madt_ioapic *)e;
            report_value("madt.ioapic.id", io->id);
            report_value("madt.ioapic.address", io->address);
            report_value("madt.ioapic.gsi-base", io->gsi_base);
            ioapics++;
        } else if (e->type == MADT_ISO) {
            const struct madt_iso *o = (const struct madt_iso *)e;
            /* one value per override: source << 40 | gsi << 16 | flags */
            report_value("madt.override", ((u64)o->source << 40) | ((u64)o->gsi << 16) | o->flags);
            overrides++;
        } else if (e->type == MADT_LAPIC_NMI) {
            nmis++;
        }
        p += e->length;
    }
    report("madt-entries-in-bounds", p == end);
    report_value("madt.cpus", cpus);
    report_value("madt.ioapics", ioapics);
    report_value("madt.overrides", overrides);
    report_value("madt.nmis", nmis);

    const struct acpi_fadt *fadt = (const struct acpi_fadt *)acpi_find_table(rsdp, "FACP");
    report("fadt-found", fadt != 0);
    if (!fadt) return 1;
    report_value("fadt.pm1a-evt", fadt->pm1a_evt_blk);
    report_value("fadt.pm1a-cnt", fadt->pm1a_cnt_blk);
    report_value("fadt.pm-tmr", fadt->pm_tmr_blk);
    report_value("fadt.sci", fadt->sci_int);
    report_value("fadt.smi-cmd", fadt->smi_cmd);
    const struct acpi_header *dsdt = acpi_dsdt(fadt);
    report("dsdt-found", dsdt != 0);
    if (!dsdt) return 1;
    report_value("dsdt.s5", (u64)(i64)acpi_s5_sleep_type(dsdt));
    report_value("dsdt.virtio-mmio", acpi_count(dsdt, "LNRO0005", 8));

    /* PM1 control reads SCI_EN (the machine is in ACPI mode without an SMI handshake). */
    report_value("pm1a-cnt.read", inw((u16)fadt->pm1a_cnt_blk));
    /* The PM timer moves forward at 3.58 MHz: 200 reads in a row (each a port exit), with the TSC
       read at both ends for scale; no read goes backwards (24-bit wrap aside). */
    u16 tmr = (u16)fadt->pm_tmr_blk;
    u32 t0 = inl(tmr), prev = t0, backwards = 0;
    u64 c0 = rdtsc();
    for (int i = 0; i < 200; i++) {
        u32 t = inl(tmr);
        if (((t - prev) & 0xffffff) > 0x800000) backwards++;
        prev = t;
    }
    u32 t1 = inl(tmr);
    u64 c1 = rdtsc();
    report_value("pm-timer.delta", (t1 - t0) & 0xffffff);
    report_value("pm-timer.tsc-delta", c1 - c0);
    report_value("pm-timer.high-byte", t1 >> 24);
    report_value("pm-timer.backwards", backwards);

    const struct mp_floating *mp = mp_find(0xF0000, 0x100000);
    report("mp-found", mp != 0);
    if (mp) report_value("mp.cpus", (u64)(i64)mp_processor_count(mp));
    return 0;
}
