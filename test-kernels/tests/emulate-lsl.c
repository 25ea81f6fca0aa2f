/*
 * emulate-lsl: LSL and LAR at CPL0, which this host's KVM cannot emulate. Linux reads its CPU
 * number with `lsl $__CPUNODE_SEG` (GET_PERCPU_BASE without RDPID, in paranoid entries); this guest
 * gives itself a GDT with such an entry (a DPL 3 data segment whose limit is cpu | node << 12) and
 * asks for it, for an entry past the GDT limit, and for LAR of its data segment.
 */
#include "tsvmm.h"

extern u64 gdt64[];
static u64 gdt[16] __attribute__((aligned(16)));

int test_main(void) {
    for (int i = 0; i < 7; i++) gdt[i] = gdt64[i];
    u64 limit = 0x3005; /* node 3, cpu 5 */
    gdt[15] = (limit & 0xffff) | (0xf3ull << 40) | ((limit >> 16 & 0xf) << 48);
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) p = {sizeof gdt - 1, (u64)gdt};
    __asm__ volatile("lgdt %0" ::"m"(p));

    u64 v, sel = 0x7b;
    u8 zf;
    __asm__ volatile("lsl %2, %0; setz %1" : "=r"(v), "=q"(zf) : "r"(sel) : "cc");
    report_value("lsl.cpunode", v);
    report_value("lsl.cpunode.zf", zf);
    v = 0x1122334455667788ull, sel = 0x80 | 3;
    __asm__ volatile("lsl %2, %0; setz %1" : "+r"(v), "=q"(zf) : "r"(sel) : "cc");
    report_value("lsl.past-limit", v);
    report_value("lsl.past-limit.zf", zf);
    u32 ar, dsel = 0x10;
    __asm__ volatile("lar %2, %0; setz %1" : "=r"(ar), "=q"(zf) : "r"(dsel) : "cc");
    report_value("lar.data", ar);
    report_value("lar.data.zf", zf);
    return 0;
}
