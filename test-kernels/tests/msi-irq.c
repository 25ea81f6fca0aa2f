/* msi-irq: interrupts that never touch the IOAPIC. The VMM sends an MSI straight to this vCPU's
   local APIC (KVM_SIGNAL_MSI) when the guest reports "msi.ready", then routes a GSI to an MSI
   message (KVM_SET_GSI_ROUTING) and signals an irqfd bound to that GSI when it reports
   "irqfd.ready". Each arrives at the vector the VMM was told, while the guest waits in `sti; hlt`.
   Needs the in-kernel irqchip. */
#include "tsvmm.h"

#define VEC_MSI 0x31
#define VEC_IRQFD 0x32

static volatile u32 hits_msi, hits_irqfd;
static volatile u64 seen_vector;

static void on_msi(struct frame *f) {
    hits_msi++;
    seen_vector = f->vector;
    lapic_eoi();
}

static void on_irqfd(struct frame *f) {
    hits_irqfd++;
    seen_vector = f->vector;
    lapic_eoi();
}

int test_main(void) {
    set_irq_handler(VEC_MSI, on_msi);
    set_irq_handler(VEC_IRQFD, on_irqfd);
    lapic_enable();
    u64 id = (u64)(lapic_read(0x20) >> 24);
    report_value("msi.ready", (id << 8) | VEC_MSI);
    for (int i = 0; i < 50 && hits_msi == 0; i++) sti_hlt();
    cli();
    report_value("msi.hits", hits_msi);
    report_value("msi.vector", seen_vector);
    report_value("irqfd.ready", (id << 8) | VEC_IRQFD);
    for (int i = 0; i < 50 && hits_irqfd == 0; i++) sti_hlt();
    cli();
    report_value("irqfd.hits", hits_irqfd);
    report_value("irqfd.vector", seen_vector);
    report_value("msi.hits-after", hits_msi);
    return 0;
}
