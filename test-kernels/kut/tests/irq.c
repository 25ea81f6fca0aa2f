/* irq: QEMU's pc-testdev interrupt lines (ports 0x2000 + n), which kvm-unit-tests' ioapic and
   real-mode tests use to interrupt themselves, must reach the in-kernel IOAPIC and local APIC.
   Interrupts stay disabled: on this project's PVM hosts a 32-bit protected-mode IRET cannot be
   emulated, so instead of taking the interrupt the guest watches the local APIC's IRR.
   Pin 10 (edge) goes to vector 0x40, pin 11 (level) to vector 0x41. */
#include "kut.h"

#define IOAPIC_BASE 0xfec00000u
#define APIC_IRR 0x200
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360

static void ioapic_route(u32 pin, u32 vector, int level) {
    mmio_write32(IOAPIC_BASE, 0x11 + 2 * pin);
    mmio_write32(IOAPIC_BASE + 0x10, 0); /* destination: APIC id 0 */
    mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin);
    mmio_write32(IOAPIC_BASE + 0x10, vector | (level ? 1u << 15 : 0));
}

static int irr(u32 vector) {
    return (mmio_read32(APIC_BASE + APIC_IRR + (vector / 32) * 0x10) >> (vector % 32)) & 1;
}

static int wait_irr(u32 vector) {
    for (int i = 0; i < 2000; i++) {
        if (irr(vector)) return 1;
        cpu_relax();
    }
    return 0;
}

int kut_main(void) {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    apic_enable();
    mmio_write32(APIC_BASE + APIC_LVT0, 1u << 16);
    mmio_write32(APIC_BASE + APIC_LVT1, 1u << 16);
    ioapic_route(10, 0x40, 0);
    ioapic_route(11, 0x41, 1);
    report(!irr(0x40) && !irr(0x41), "nothing pending before the lines move");

    outb(0x2000 + 10, 1); /* a rising edge on pin 10 */
    outb(0x2000 + 10, 0);
    report(wait_irr(0x40), "edge on testdev line 10 is pending as vector 0x40");
    report(!irr(0x41), "line 11 untouched: vector 0x41 not pending");

    outl(0x2000 + 11, 1); /* level high, raised with a 4-byte OUT as the suite does */
    report(wait_irr(0x41), "level on testdev line 11 is pending as vector 0x41");
    outl(0x2000 + 11, 0);
    return report_summary();
}
