/* emulated: instructions KVM cannot emulate on a PVM host, run at CPL0 in 32-bit protected mode.
   Without the VMM's emulator the first one stops the VM (internal error); with --emulate every
   check passes. */
#include "kut.h"

int kut_main(void) {
    unsigned n, v = 0xf00f0ff0u, f1, f2;
    __asm__ volatile("popcnt %1, %0" : "=r"(n) : "r"(v) : "cc");
    report(n == 16, "popcnt 0xf00f0ff0 = 16");
    __asm__ volatile("stac; pushfl; popl %0; clac; pushfl; popl %1" : "=r"(f1), "=r"(f2) :: "cc");
    report((f1 >> 18 & 1) == 1 && (f2 >> 18 & 1) == 0, "stac sets and clac clears EFLAGS.AC");
    unsigned a = 7;
    __asm__ volatile("fwait; addl $1, %0" : "+r"(a));
    report(a == 8, "fwait completes");
    unsigned long cr4;
    __asm__ volatile("movl %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("movl %0, %%cr4" ::"r"(cr4 | (1u << 9)));
    unsigned in = 0x3f80, out = 0;
    __asm__ volatile("ldmxcsr %1; stmxcsr %0" : "=m"(out) : "m"(in));
    report(out == 0x3f80, "ldmxcsr/stmxcsr round trip");
    return report_summary();
}
