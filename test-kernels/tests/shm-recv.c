/* shm-recv: the other half of the two-VM test. Waits for the doorbell interrupt (GSI 5, raised by
   the other VM's OUT through irqfd), then prints the message found in the shared region. */
#include "tsvmm.h"

#define SHARED ((volatile char *)0x800000)
/* The receiver says it can take the doorbell here; the sender waits for it (an edge on a pin not
   yet routed would be lost), so the two VMs may be started in any order. */
#define READY ((volatile u32 *)0x800800)
#define VEC 0x35
static volatile int rung;

static void on_doorbell(struct frame *f) {
    (void)f;
    rung++;
    lapic_eoi();
}

int test_main(void) {
    set_irq_handler(VEC, on_doorbell);
    lapic_enable();
    ioapic_route(5, VEC, cpu_apic_id());
    *READY = 1;
    report_value("shm.ready", 1);
    while (!rung) sti_hlt();
    cli();
    char msg[64];
    int i = 0;
    for (; i < 63 && SHARED[i]; i++) msg[i] = SHARED[i];
    msg[i] = 0;
    printf("received: %s\n", msg);
    report_value("shm.doorbells", rung);
    return 0;
}
