/* msrbitmap-rw: for each MSR in the parameter block at 0x6000: RDMSR, WRMSR of the given value,
   RDMSR again, each wrapped so a #GP is caught; reports every value read and every vector taken
   (-1 = none). Under an MSR filter the VMM answers the denied accesses; the integration test
   checks that exactly those exited and that the guest saw the VMM's answers. */
#include "tsvmm.h"

#define PARAMS 0x6000ul
#define PARAMS_MAGIC 0x7762746d6d7372ull /* "rsmmtbw" */
#define MAX_MSRS 16

struct msr_op { u64 index, value; };
struct params { u64 magic, count; struct msr_op ops[MAX_MSRS]; };

static const char *name(char *buf, int i, const char *field) {
    char *p = buf;
    *p++ = 'm';
    if (i >= 10) *p++ = (char)('0' + i / 10);
    *p++ = (char)('0' + i % 10);
    *p++ = '.';
    while (*field) *p++ = *field++;
    *p = 0;
    return buf;
}

static u64 try_rdmsr(u32 index) {
    u32 lo = 0, hi = 0;
    __asm__ volatile(TRY_BEGIN "rdmsr" TRY_END : "+a"(lo), "+d"(hi) : "c"(index) : "memory");
    return ((u64)hi << 32) | lo;
}

static void try_wrmsr(u32 index, u64 v) {
    __asm__ volatile(TRY_BEGIN "wrmsr" TRY_END ::"c"(index), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}

int test_main(void) {
    volatile struct params *pb = (volatile struct params *)PARAMS;
    if (pb->magic != PARAMS_MAGIC || pb->count > MAX_MSRS) return 1;
    quiet_exceptions = 1;
    char buf[32];
    for (int i = 0; i < (int)pb->count; i++) {
        u32 index = (u32)pb->ops[i].index;
        u64 v = try_rdmsr(index);
        report_value(name(buf, i, "before"), v);
        report_value(name(buf, i, "before.vector"), (u64)(i64)last_vector);
        try_wrmsr(index, pb->ops[i].value);
        report_value(name(buf, i, "write.vector"), (u64)(i64)last_vector);
        v = try_rdmsr(index);
        report_value(name(buf, i, "after"), v);
        report_value(name(buf, i, "after.vector"), (u64)(i64)last_vector);
    }
    return 0;
}
