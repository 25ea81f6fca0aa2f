/* snap-everywhere: guest state in every place a snapshot must carry, for snapshot/restore at
   random points. Every line it prints is deterministic (no timing in the output), so a run that
   was snapshotted, killed and restored in another process must print, per vCPU, exactly what an
   uninterrupted run prints, and end with the same status.
     vCPU 0: hashes at CPL3 (registers mid-computation, memory), waits on its periodic LAPIC
             timer (armed timer), parks bytes in the UART's receive FIFO in loopback mode across
             that wait (FIFO contents), and raises a pc-testdev IRQ with interrupts off, computes,
             then takes it (an interrupt pending in the LAPIC).
     vCPU 1: computes at CPL0 and waits on its own LAPIC timer, at the same time. */
#include "tsvmm.h"

#define ROUNDS 8
#define TIMER_VEC 0x32
#define TESTDEV_VEC 0x35
#define TESTDEV_GSI 5
#define BUF_WORDS (64 * 1024)  /* 512 KiB per round buffer at CPL3 */
#define CPL0_WORDS 256

static u64 buf[BUF_WORDS] __attribute__((aligned(4096)));
static u64 cpl0_buf[CPL0_WORDS];
static volatile u32 ticks[4];
static volatile u32 irq_hits;
static volatile u64 result;
static volatile int result_ready;

/* The lib loads the task register (needed for CPL3) only on the vCPU that won its start race,
   which need not be APIC id 0: the roles follow the TSS, the labels follow the roles. */
static int has_tss(void) {
    u16 tr;
    __asm__ volatile("str %0" : "=r"(tr));
    return tr == 0x28; /* the lib's TSS selector; the boot state leaves another one */
}

static void on_timer(struct frame *f) {
    (void)f;
    ticks[lapic_read(0x20) >> 24]++;
    lapic_eoi();
}

static void on_testdev(struct frame *f) {
    (void)f;
    irq_hits++;
    lapic_eoi();
}

static void wait_ticks(int me, u32 n) {
    u32 target = ticks[me] + n;
    while (ticks[me] < target) sti_hlt();
    cli();
}

static u64 xorshift(u64 x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

/* CPL3: fill the buffer from a seed, then FNV-1a over it. */
static u64 fill_hash(u64 seed) {
    u64 x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (u32 i = 0; i < BUF_WORDS; i++) buf[i] = x = xorshift(x);
    u64 h = 0xcbf29ce484222325ull;
    for (u32 i = 0; i < BUF_WORDS; i++) h = (h ^ buf[i]) * 0x100000001b3ull;
    return h;
}

static void uart_loopback_fill(const char *s) {
    outb(0x3f8 + 2, 0x01); /* FIFO on */
    outb(0x3f8 + 4, 0x10); /* loopback */
    for (; *s; s++) outb(0x3f8, (u8)*s);
}

static void uart_loopback_drain(char *out, int max) {
    int n = 0;
    while ((inb(0x3f8 + 5) & 1) && n < max - 1) out[n++] = (char)inb(0x3f8);
    out[n] = 0;
    outb(0x3f8 + 4, 0x00);
}

static void timer_periodic(u32 count) {
    lapic_write(0x3E0, 0xB);                 /* divide by 1 */
    lapic_write(0x320, TIMER_VEC | (1u << 17)); /* periodic */
    lapic_write(0x380, count);
}

static int cpu0(int me) {
    set_irq_handler(TIMER_VEC, on_timer);
    set_irq_handler(TESTDEV_VEC, on_testdev);
    lapic_enable();
    ioapic_route(TESTDEV_GSI, TESTDEV_VEC, me);
    timer_periodic(2000000); /* 2 ms */
    u64 acc = 0;
    for (int r = 0; r < ROUNDS; r++) {
        u64 h = run_user(fill_hash, (u64)r + 1);
        acc ^= h;
        printf("cpu0 round %d hash %llx\n", r, (unsigned long long)h);
        char sent[8] = {'r', (char)('0' + r), 'f', 'i', 'f', 'o', 0, 0};
        uart_loopback_fill(sent);
        wait_ticks(me, 2);
        char got[20];
        uart_loopback_drain(got, sizeof got);
        printf("cpu0 round %d fifo %s\n", r, got);
        /* An interrupt raised while IF=0 waits in the LAPIC through this computation. */
        u32 before = irq_hits;
        outb((u16)(0x2000 + TESTDEV_GSI), 1);
        outb((u16)(0x2000 + TESTDEV_GSI), 0);
        u64 w = acc;
        for (int i = 0; i < 400; i++) w = xorshift(w + (u64)i);
        u32 pending_seen = irq_hits - before;
        /* HLT with the interrupt pending returns at once: the handler runs before it completes. */
        while (irq_hits == before) sti_hlt();
        cli();
        printf("cpu0 round %d irq before-sti %u after-sti %u work %llx\n", r, pending_seen, irq_hits - before, (unsigned long long)w);
    }
    printf("cpu0 done %llx\n", (unsigned long long)acc);
    result = acc;
    __atomic_store_n(&result_ready, 1, __ATOMIC_RELEASE);
    return (int)(acc & 0x3f) + 1;
}

static int cpu1(int me) {
    set_irq_handler(TIMER_VEC, on_timer);
    lapic_enable();
    timer_periodic(3000000); /* 3 ms */
    u64 x = 0x1234567;
    for (int r = 0; r < ROUNDS; r++) {
        u64 sum = 0;
        for (int i = 0; i < CPL0_WORDS; i++) {
            cpl0_buf[i] = x = xorshift(x);
            sum += cpl0_buf[i] >> 7;
        }
        printf("cpu1 round %d sum %llx\n", r, (unsigned long long)sum);
        wait_ticks(me, 1);
    }
    printf("cpu1 done\n");
    /* Both end with the same status, whichever of them the VMM takes the run's status from. */
    while (!__atomic_load_n(&result_ready, __ATOMIC_ACQUIRE)) wait_ticks(me, 1);
    return (int)(result & 0x3f) + 1;
}

int test_main(void) {
    int me = cpu_apic_id();
    return has_tss() ? cpu0(me) : cpu1(me);
}
