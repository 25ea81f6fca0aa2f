/* interrupt-injection: GSI 4 raised by the VMM through the in-kernel IOAPIC reaches the IDT. */
#include "tsvmm.h"

#define VEC 0x30
static volatile int hits;
static volatile u64 seen_vector;

static void on_irq(struct frame *f) {
    hits++;
    seen_vector = f->vector;
    lapic_eoi();
}

int test_main(void) {
    set_irq_handler(VEC, on_irq);
    lapic_enable();
    ioapic_route(4, VEC, cpu_apic_id());
    report_value("irq.ready", 4); /* the VMM pulses GSI 4 when it sees this */
    sti_hlt();
    cli();
    report_value("irq.hits", hits);
    report_value("irq.vector", seen_vector);
    return 0;
}
