/*
 * emulate-cas-smp: two vCPUs add to one 16-byte counter with LOCK CMPXCHG16B. The vCPU with APIC
 * id 0 runs USER_ADDS increments natively at CPL3; the other runs KERNEL_ADDS at CPL0, where this
 * host cannot execute CMPXCHG16B and the VMM's emulator finishes each one. The counter starts just
 * below 2^64 so the low half carries into the high half. With an atomic emulation the final value
 * is the start plus both counts; a read-compare-write in the VMM loses the native vCPU's increments
 * that land between its read and its write.
 *
 * An emulated attempt takes tens of microseconds from its read (the failed compare before it) to
 * its exchange, while the native loop increments every few nanoseconds: against a native loop that
 * never stops, every emulated attempt fails until the loop ends (seen when nothing preempts the
 * native vCPU). So the native side adds in bursts with a pause between them, and the emulated
 * side's successes land in those pauses, while the native vCPU is still inside its loop.
 */
#include "tsvmm.h"

#define USER_ADDS 3000000ull
#define USER_BURST 4096
#define USER_PAUSE 4000
#define KERNEL_ADDS 200ull
#define START_LO (~0ull - 999)

extern u64 gdt64[];

static volatile u64 counter[2] __attribute__((aligned(16))) = {START_LO, 0};
static volatile u64 user_started, user_done, kernel_started, kernel_added, kernel_done;

static int cx16(u64 *lo, u64 *hi, u64 nlo, u64 nhi) {
    u8 zf;
    __asm__ volatile("lock cmpxchg16b %1; setz %0"
                     : "=q"(zf), "+m"(*(volatile u64(*)[2])counter), "+a"(*lo), "+d"(*hi)
                     : "b"(nlo), "c"(nhi)
                     : "memory", "cc");
    return zf;
}

/* One increment; returns the compare-exchange attempts it took. */
static u64 add_one(void) {
    u64 lo = counter[0], hi = counter[1], tries = 0;
    for (;;) {
        tries++;
        u64 nlo = lo + 1, nhi = hi + (nlo == 0);
        if (cx16(&lo, &hi, nlo, nhi)) return tries;
    }
}

static u64 user(u64 n) {
    u64 tries = 0;
    user_started = 1;
    for (u64 i = 0; i < n; i++) {
        tries += add_one();
        if (i % USER_BURST == USER_BURST - 1) {
            for (int k = 0; k < USER_PAUSE; k++) __asm__ volatile("pause");
            /* The emulated side may start late (it runs its first instructions emulated, and the
               host decides when): the first burst waits for it, so the rest always overlaps. */
            while (!kernel_started) __asm__ volatile("pause");
        }
    }
    /* And the native loop is not over before one emulated add has gone through: a busy host can
       hold the emulated vCPU's first exit longer than the whole native loop takes (kernel.overlapped
       was 0 in a CI run with the machine loaded). */
    while (!kernel_added) __asm__ volatile("pause");
    user_done = 1;
    return tries;
}

int test_main(void) {
    if (cpu_apic_id() == 0) {
        /* The lib loads TR on whichever vCPU arrived first; this one needs it for the CPL3 round
           trip. Wait for that load (the descriptor turns busy), make it available, load it here. */
        while (((gdt64[5] >> 40) & 0xf) != 0xb) __asm__ volatile("pause");
        gdt64[5] &= ~(2ull << 40);
        __asm__ volatile("ltr %w0" ::"r"(0x28));
        u64 tries = run_user(user, USER_ADDS);
        report_value("user.tries", tries);
        report_value("user.fault", (u64)(i64)user_fault_vector);
        while (!kernel_done) __asm__ volatile("pause");
        report_value("counter.lo", counter[0]);
        report_value("counter.hi", counter[1]);
    } else {
        while (!user_started) __asm__ volatile("pause");
        u64 tries = 0, overlapped = 0;
        kernel_started = 1;
        for (u64 i = 0; i < KERNEL_ADDS; i++) {
            u64 t = add_one();
            tries += t;
            if (!user_done) overlapped += t;
            kernel_added = 1;
        }
        kernel_done = 1;
        report_value("kernel.tries", tries);
        report_value("kernel.overlapped", overlapped);
    }
    return 0;
}
