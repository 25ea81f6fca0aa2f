/* halt-and-wake: HLT blocks until the LAPIC one-shot timer fires, then the handler runs. */
#include "tsvmm.h"

#define VEC 0x31
#define NS 20000000u /* 20 ms at KVM's 1 GHz APIC bus, divide by 1 */
static volatile int fired;

static void on_timer(struct frame *f) {
    (void)f;
    fired++;
    lapic_eoi();
}

int test_main(void) {
    set_irq_handler(VEC, on_timer);
    lapic_enable();
    lapic_write(0x3E0, 0xB);  /* divide by 1 */
    lapic_write(0x320, VEC);  /* one-shot, unmasked */
    report_value("halt.start", NS);
    u64 t0 = rdtsc();
    lapic_write(0x380, NS);
    while (!fired) sti_hlt();
    cli();
    u64 t1 = rdtsc();
    report_value("halt.woke", fired);
    report_value("halt.tsc", t1 - t0);
    return 0;
}
