/* Hypercall ABI v1 over port I/O: works unchanged in real, protected and long mode. */
#include "tsvmm.h"

int hc_negotiated_version;

i32 hypercall_raw(struct tsvmm_hc *hc) {
    /* The doorbell takes a physical address; every guest here is identity-mapped (and real-mode
       guests keep DS = SS = 0), so a pointer is one. */
    __asm__ volatile("outl %0, %1" ::"a"((u32)(ulong)hc), "Nd"((u16)HC_PORT) : "memory");
    return hc_status();
}

i32 hc_status(void) { return (i32)inl(HC_PORT); }

i64 hypercall(u16 call, u64 a0, u64 a1, u64 a2) {
    /* The ABI wants an 8-aligned block; 16/32-bit stacks only promise 4, so align by hand. */
    u8 space[sizeof(struct tsvmm_hc) + 8];
    struct tsvmm_hc *blk = (struct tsvmm_hc *)(((ulong)space + 7) & ~(ulong)7);
    blk->magic = HC_MAGIC;
    blk->version = HC_VERSION;
    blk->call = call;
    blk->arg[0] = a0;
    blk->arg[1] = a1;
    blk->arg[2] = a2;
    blk->arg[3] = 0;
    blk->result = INT64_MIN; /* sentinel: a VMM that never wrote the block leaves it */
    __asm__ volatile("outl %0, %1" ::"a"((u32)(ulong)blk), "Nd"((u16)HC_PORT) : "memory");
    return blk->result;
}

void report(const char *name, int pass) { hypercall(HC_CALL_REPORT, (ulong)name, strlen(name), pass ? 1 : 0); }

void report_value(const char *name, u64 value) { hypercall(HC_CALL_REPORT_VALUE, (ulong)name, strlen(name), value); }

void console_write(const char *s, ulong len) { hypercall(HC_CALL_CONSOLE_WRITE, (ulong)s, len, 0); }

void puts(const char *s) { console_write(s, strlen(s)); }

void exit(int code) {
    hypercall(HC_CALL_EXIT, (u64)(u32)code, 0, 0);
    /* A VMM that ignores EXIT must not see us run on. `hlt` (not `cli; hlt`, which with an
       in-kernel irqchip never returns to the VMM) keeps it cheap. */
    for (;;) __asm__ volatile("hlt");
}

/* Called by every boot stub before test_main. */
void lib_start(void) {
    i64 v = hypercall(HC_CALL_VERSION, HC_VERSION, 0, 0);
    if (v != HC_VERSION) {
        uart_puts("tsvmm: hypercall VERSION failed\n");
        for (;;) __asm__ volatile("hlt");
    }
    hc_negotiated_version = (int)v;
}
