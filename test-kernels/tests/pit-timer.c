/* pit-timer: the in-kernel i8254, which the VMM creates at the guest's first access to its ports
   (vmm's lazy-pit.ts). The boot vCPU's first access programs counter 0 as a ~1 ms rate generator
   (`out %al, $0x43`; lost, no interrupt would ever come) and it then counts the PIT's interrupts
   through the IOAPIC and latches and reads counter 0. On an SMP run the others program counter 1
   at the same moment (`out %al, %dx`) and read the mode back with a read-back command. */
#include "tsvmm.h"

#define VEC_PIN0 0x30
#define VEC_PIN2 0x32
#define RELOAD 1193 /* 1.193182 MHz / 1193: one interrupt per ~1 ms */
#define TICKS 10

static volatile u32 pin0, pin2;

static void on_pin0(struct frame *f) {
    (void)f;
    pin0++;
    lapic_eoi();
}

static void on_pin2(struct frame *f) {
    (void)f;
    pin2++;
    lapic_eoi();
}

int test_main(void) {
    if (cpu_apic_id() != 0) {
        u16 mode_port = 0x43;
        __asm__ volatile("outb %0, %1" ::"a"((u8)0x74), "d"(mode_port)); /* counter 1, lo/hi, mode 2 */
        report_value("pit.first", 1);
        outb(0x41, 0xff);
        outb(0x41, 0x00);
        outb(0x43, 0xe4); /* read-back: status of counter 1 only */
        report_value("pit.status1", inb(0x41));
        return 0;
    }
    outb(0x43, 0x34); /* counter 0, low then high byte, mode 2 */
    report_value("pit.first", 1);
    outb(0x21, 0xff); /* the PICs stay out of it: their IRQ0 would arrive at the BIOS's vector 8 */
    outb(0xa1, 0xff);
    set_irq_handler(VEC_PIN0, on_pin0);
    set_irq_handler(VEC_PIN2, on_pin2);
    lapic_enable();
    /* The firmware tables put ISA IRQ 0 on GSI 2 (the PC override): the VMM must route the PIT
       there. Pin 0 gets its own vector and count, to show nothing arrives at it. */
    ioapic_route(0, VEC_PIN0, 0);
    ioapic_route(2, VEC_PIN2, 0);
    outb(0x40, RELOAD & 0xff);
    u64 t0 = rdtsc();
    outb(0x40, RELOAD >> 8); /* the count loads: the first period starts */
    report_value("pit.armed", RELOAD);
    while (pin0 < TICKS && pin2 < TICKS) sti_hlt();
    u64 t1 = rdtsc();
    cli();
    /* KVM re-injects ticks the guest missed, late but never early: TICKS of them take at least
       TICKS periods of guest time. */
    report_value("pit.tsc", t1 - t0);
    report_value("pit.pin0", pin0);
    report_value("pit.pin2", pin2);
    outb(0x43, 0x00); /* latch counter 0 */
    u8 lo = inb(0x40);
    u8 hi = inb(0x40);
    report_value("pit.count", (u64)lo | ((u64)hi << 8));
    return 0;
}
