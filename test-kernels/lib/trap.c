/* 64-bit descriptor tables, exception dispatch, fault recovery and the CPL3 round trip. */
#include "tsvmm.h"

extern u64 gdt64[];
extern const u64 isr_table[IDT_ENTRIES];
extern char user_return_point[];
u64 enter_user(u64 (*fn)(u64), u64 arg, u64 stack_top);
void return_from_user(u64 result) __attribute__((noreturn));

struct tss {
    u32 reserved0;
    u64 rsp0, rsp1, rsp2;
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
} __attribute__((packed));

static struct tss tss __attribute__((aligned(16)));
static u64 idt[IDT_ENTRIES * 2] __attribute__((aligned(16)));
static irq_handler irq_handlers[IDT_ENTRIES];
/* A separate RSP0 stack: the user-return path abandons the frame it is on, and must not
   overwrite the kernel stack that enter_user's caller still lives on. */
static u8 trap_stack[8192] __attribute__((aligned(16)));
static u8 user_stack[65536] __attribute__((aligned(16)));

volatile u64 fixup_rip, try_rip;
volatile int last_vector = -1;
volatile u64 last_error, last_rip, last_cr2;
int quiet_exceptions;
volatile int user_fault_vector = -1;
volatile u64 user_bp_count;

static void build_tables(void) {
    u64 base = (u64)&tss;
    tss.rsp0 = (u64)trap_stack + sizeof trap_stack;
    tss.iomap_base = sizeof tss; /* no I/O bitmap: CPL3 port I/O always faults */
    gdt64[5] = (sizeof tss - 1) | ((base & 0xffffff) << 16) | (0x89ull << 40) | ((base >> 24 & 0xff) << 56);
    gdt64[6] = base >> 32;
    for (int v = 0; v < IDT_ENTRIES; v++) {
        u64 off = isr_table[v];
        /* Interrupt gates (IF cleared); #BP is DPL3 so `int3` at CPL3 reaches us instead of #GP. */
        u64 attr = v == 3 ? 0xEE : 0x8E;
        idt[2 * v] = (off & 0xffff) | (0x08ull << 16) | (attr << 40) | ((off >> 16 & 0xffff) << 48);
        idt[2 * v + 1] = off >> 32;
    }
    __asm__ volatile("ltr %w0" ::"r"(0x28));
}

static void load_idt(void) {
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) p = {sizeof idt - 1, (u64)idt};
    __asm__ volatile("lidt %0" ::"m"(p));
}

void lib_start(void);

void lib_start64(int cpu_index) {
    if (cpu_index == 0) build_tables();
    load_idt();
    lib_start();
    exit(test_main());
}

void set_irq_handler(int vector, irq_handler h) {
    if (vector >= 0 && vector < IDT_ENTRIES) irq_handlers[vector] = h;
}

u64 run_user(u64 (*fn)(u64), u64 arg) {
    user_fault_vector = -1;
    return enter_user(fn, arg, (u64)user_stack + sizeof user_stack);
}

void trap_dispatch(struct frame *f) {
    int from_user = (f->cs & 3) == 3;
    if (f->vector >= 32) {
        irq_handler h = irq_handlers[f->vector];
        if (h) h(f);
        return;
    }
    if (f->vector == 3 && from_user && f->rip == (u64)user_return_point) return_from_user(f->rax);

    u64 cr2 = f->vector == 14 ? read_cr2() : 0;
    last_vector = (int)f->vector;
    last_error = f->error;
    last_rip = f->rip;
    last_cr2 = cr2;
    if (!quiet_exceptions) {
        report_value("exception.vector", f->vector);
        report_value("exception.error", f->error);
        report_value("exception.rip", f->rip);
        if (f->vector == 14) report_value("exception.cr2", cr2);
    }
    if (from_user) {
        /* #BP is a trap: RIP is already past the int3, so user code simply carries on. */
        if (f->vector == 3) {
            user_bp_count++;
            return;
        }
        user_fault_vector = (int)f->vector;
        return_from_user(0);
    }
    if (fixup_rip) {
        f->rip = fixup_rip;
        fixup_rip = 0;
        return;
    }
    printf("unexpected exception %d error %lx at rip %lx\n", (int)f->vector, f->error, f->rip);
    exit(0x80 + (int)f->vector);
}
