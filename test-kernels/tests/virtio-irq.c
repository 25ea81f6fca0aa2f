/* virtio-irq: the device interrupt goes through its IOAPIC pin, level-triggered. The rng device
   is the second one attached (window 1, GSI 17). The handler EOIs its first interrupt WITHOUT
   acknowledging InterruptStatus and acknowledges from the second on. On a level-triggered pin the
   line is still high at that first EOI, so the IOAPIC delivers again while InterruptStatus is
   still 1; on an edge-triggered pin (params arg[0] = 1) nothing comes until the guest acks.
   The wait is bounded (interrupts on, a pause loop) so the edge run ends too. */
#include "virtio.h"

#define VEC 0x33
#define MAX_HITS 8
static struct virtio_dev dev;
static volatile int hits;
static volatile u32 status_seen[MAX_HITS];
static u8 buf[16] __attribute__((aligned(16)));

static void on_irq(struct frame *f) {
    (void)f;
    int n = hits;
    if (n < MAX_HITS) status_seen[n] = virtio_read(&dev, VIRTIO_MMIO_INTERRUPT_STATUS);
    hits = n + 1;
    if (n >= 1) virtio_ack(&dev);
    lapic_eoi();
}

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    int edge = p && p->arg[0] == 1;
    int id = virtio_probe(&dev, 1, VIRTIO_ID_RNG);
    report_value("irq.device-id", (u64)(i64)id);
    report_value("irq.window", dev.base);
    if (id < 0) return 1;
    if (virtio_init(&dev, 0)) return 2;
    if (virtq_setup(&dev, 0, 4)) return 3;
    virtio_enable_irq(&dev, VEC);
    set_irq_handler(VEC, on_irq); /* ours instead of the driver's default */
    if (edge) ioapic_route(dev.gsi, VEC, cpu_apic_id());
    virtio_driver_ok(&dev);
    struct vbuf b = {buf, sizeof buf, 1};
    virtq_add(&dev.vq[0], &b, 1);
    virtq_kick(&dev.vq[0]);
    while (hits < 1) sti_hlt();
    /* A while with interrupts on: a re-delivery lands here. */
    sti();
    for (int i = 0; i < 3000; i++) __asm__ volatile("pause");
    cli();
    report_value("irq.hits", (u64)hits);
    for (int i = 0; i < hits && i < MAX_HITS; i++) report_value("irq.status", status_seen[i]);
    report_value("irq.status-before-ack", virtio_read(&dev, VIRTIO_MMIO_INTERRUPT_STATUS));
    virtio_ack(&dev);
    report_value("irq.status-after-ack", virtio_read(&dev, VIRTIO_MMIO_INTERRUPT_STATUS));
    u32 len = 0;
    report_value("irq.used", (u64)(i64)virtq_get(&dev.vq[0], &len));
    report_value("irq.len", len);
    mmio_write32(IOAPIC_BASE, 0x10 + 2 * (u32)dev.gsi);
    report_value("irq.rte", mmio_read32(IOAPIC_BASE + 0x10));
    return 0;
}
