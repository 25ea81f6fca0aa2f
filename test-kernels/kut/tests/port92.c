/* port92: System Control Port A. The fast-A20 bit (1) reads back what was written; setting bit 0
   resets the machine, which under `tsvmm run` ends the VM with reason "reset" and status 0.
   Nothing after the reset write may run (its FAIL line must never appear). */
#include "kut.h"

int kut_main(void) {
    u8 start = inb(0x92);
    printf("port92: initial 0x%x\n", start);
    report((start & 2) != 0, "A20 is enabled at boot (bit 1 set)");
    report((start & 1) == 0, "the reset bit reads 0");
    outb(0x92, (u8)(start & ~2));
    u8 off = inb(0x92);
    outb(0x92, (u8)(start | 2));
    u8 on = inb(0x92);
    report((off & 2) == 0 && (on & 2) != 0, "A20 bit reads back 0 then 1 (0x%x, 0x%x)", off, on);
    printf("port92: resetting\n");
    outb(0x92, (u8)(on | 1));
    report(0, "still running after the port 0x92 reset");
    return report_summary();
}
