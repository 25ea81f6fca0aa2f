/* ept-probe: runs a list of 64-bit loads and stores the VMM put in a parameter block at 0x6000
   (on whatever page tables the VMM booted it with) and reports, per operation, the value loaded
   and the exception taken (vector, error code, CR2; -1 = none). The integration tests use it to
   check IA-32e tables built by @tsvmm/ept and memory slots derived from an EPT permission map. */
#include "tsvmm.h"

#define PARAMS 0x6000ul
#define PARAMS_MAGIC 0x65627270747065ull /* "eptprbe" */
#define MAX_OPS 16

enum { OP_READ = 1, OP_WRITE = 2 };
struct op { u64 kind, va, value; };
struct params { u64 magic, count; struct op ops[MAX_OPS]; };

/* "op<i>.<field>" without a formatter that returns strings. */
static const char *name(char *buf, int i, const char *field) {
    char *p = buf;
    *p++ = 'o'; *p++ = 'p';
    if (i >= 10) *p++ = (char)('0' + i / 10);
    *p++ = (char)('0' + i % 10);
    *p++ = '.';
    while (*field) *p++ = *field++;
    *p = 0;
    return buf;
}

int test_main(void) {
    volatile struct params *pb = (volatile struct params *)PARAMS;
    if (pb->magic != PARAMS_MAGIC || pb->count > MAX_OPS) return 1;
    quiet_exceptions = 1; /* report per operation below, not from the handler */
    report_value("cr3", read_cr3());
    char buf[32];
    for (int i = 0; i < (int)pb->count; i++) {
        u64 va = pb->ops[i].va, v = 0;
        last_cr2 = 0;
        last_error = 0;
        if (pb->ops[i].kind == OP_READ) {
            __asm__ volatile(TRY_BEGIN "movq (%1), %0" TRY_END : "+r"(v) : "r"(va) : "memory");
            report_value(name(buf, i, "value"), v);
        } else {
            v = pb->ops[i].value;
            __asm__ volatile(TRY_BEGIN "movq %0, (%1)" TRY_END ::"r"(v), "r"(va) : "memory");
        }
        report_value(name(buf, i, "vector"), (u64)(i64)last_vector);
        if (last_vector >= 0) {
            report_value(name(buf, i, "error"), last_error);
            report_value(name(buf, i, "cr2"), last_cr2);
            report("rip-is-the-access", last_rip == try_rip);
        }
    }
    return 0;
}
