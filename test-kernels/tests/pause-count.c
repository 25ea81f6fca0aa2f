/* pause-count: every vCPU counts and reports its count after each step, until the VMM sets
   `stop`; each then checks its own count against the steps it took. the vCPU with the lib's TSS counts at
   CPL3 in chunks (native speed), the other at CPL0 (emulated). Every step also reads the UART's LSR (an IN
   the VMM completes) and reports through the doorbell (an OUT): a pause that lost or repeated
   an I/O completion would show as a wrong LSR value, a missing or repeated count, or drift. */
#include "tsvmm.h"

#define CHUNK 20000u
#define CPL0_CHUNK 50u

volatile u32 stop;
static volatile u32 bad_lsr[4];

static u64 count_user(u64 n) {
    volatile u64 c = 0;
    for (u64 i = 0; i < n; i++) c++;
    return c;
}

/* The lib loads the task register (needed for CPL3) only on the vCPU that won its start race. */
static int has_tss(void) {
    u16 tr;
    __asm__ volatile("str %0" : "=r"(tr));
    return tr == 0x28; /* the lib's TSS selector; the boot state leaves another one */
}

int test_main(void) {
    int me = cpu_apic_id();
    int user = has_tss();
    if (user) report_value("stop.addr", (u64)&stop);
    report_value("chunk", user ? CHUNK : CPL0_CHUNK);
    u64 total = 0, steps = 0;
    while (!stop) {
        if (user) {
            total += run_user(count_user, CHUNK);
        } else {
            for (u32 i = 0; i < CPL0_CHUNK; i++) total++;
        }
        steps++;
        if ((inb(0x3fd) & 0x60) != 0x60) bad_lsr[me]++;
        report_value("count", total);
    }
    u64 per = user ? CHUNK : CPL0_CHUNK;
    report_value("steps", steps);
    report_value("bad-lsr", bad_lsr[me]);
    return total == steps * per && bad_lsr[me] == 0 ? 0 : 1;
}
