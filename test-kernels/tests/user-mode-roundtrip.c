/* user-mode-roundtrip: heavy work at CPL3 (native here), then back to CPL0; a CPL3 fault
   (port I/O) also returns to the kernel with the vector. */
#include "tsvmm.h"

static u64 xorshift_sum(u64 n) {
    u32 x = 2463534242u, sum = 0;
    for (u64 i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        sum += x;
    }
    return sum;
}

static u64 user_cs(u64 unused) {
    (void)unused;
    return read_cs();
}

static u64 user_port_io(u64 unused) {
    (void)unused;
    outb(0x500, 1); /* #GP at CPL3 on this host (and with IOPL 0 anywhere) */
    return 77;
}

int test_main(void) {
    u64 t0 = rdtsc();
    u64 sum = run_user(xorshift_sum, 10000000);
    u64 t1 = rdtsc();
    report_value("xorshift-sum-10M", sum);
    report_value("user-fault", (u64)(i64)user_fault_vector);
    report_value("user-tsc-cycles", t1 - t0);
    report_value("user-cs", run_user(user_cs, 0));
    report_value("kernel-cs", read_cs());
    quiet_exceptions = 1;
    u64 r = run_user(user_port_io, 0);
    report_value("port-io-result", r);
    report_value("port-io-fault", (u64)(i64)user_fault_vector);
    return 0;
}
