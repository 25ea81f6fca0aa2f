/* kut library: console, reporting, exit, fw_cfg, local APIC and the AP start-up. */
#include <stdarg.h>
#include "kut.h"

u32 mb_magic;
struct mb_info *mb_info;

/* ---- helpers ---- */
void *memset(void *d, int c, size_t n) {
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n) {
    u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}
size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
void spin_lock(volatile u32 *l) {
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) cpu_relax();
}
void spin_unlock(volatile u32 *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

/* ---- 16550 at 0x3f8 ---- */
#define COM1 0x3f8
#define LSR_THRE 0x20

void serial_init(void) {
    outb(COM1 + 3, 0x80); /* DLAB on */
    outb(COM1 + 0, 0x01); /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1, DLAB off */
    outb(COM1 + 1, 0x00); /* no interrupts: we poll */
    outb(COM1 + 2, 0x07); /* FIFOs on and cleared */
    outb(COM1 + 4, 0x03); /* DTR, RTS */
}

void putchar(char c) {
    /* Bounded: a VMM without a UART reads all-ones here, which also says "ready". */
    for (int i = 0; i < 10000 && !(inb(COM1 + 5) & LSR_THRE); i++) cpu_relax();
    outb(COM1, (u8)c);
}

static void put_raw(const char *s) {
    while (*s) putchar(*s++);
}

static volatile u32 console_lock;

void puts(const char *s) {
    spin_lock(&console_lock);
    put_raw(s);
    spin_unlock(&console_lock);
}

/* ---- formatting ---- */
struct out { char *buf; u32 len, cap; };

static void emit(struct out *o, char c) {
    if (o->len + 1 < o->cap) o->buf[o->len++] = c;
}

static void emit_num(struct out *o, u64 v, unsigned base, int width, char pad, int neg) {
    char tmp[24];
    int n = 0;
    if (base == 16) {
        do { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    } else {
        u32 w = (u32)v; /* decimal only for 32-bit values: no libgcc for 64-bit division */
        do { tmp[n++] = (char)('0' + w % 10); w /= 10; } while (w);
    }
    if (neg) tmp[n++] = '-';
    while (n < width) tmp[n++] = pad;
    while (n) emit(o, tmp[--n]);
}

static void vformat(struct out *o, const char *fmt, va_list ap) {
    for (; *fmt; fmt++) {
        if (*fmt != '%') { emit(o, *fmt); continue; }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '0') { pad = '0'; fmt++; }
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') { longs++; fmt++; }
        switch (*fmt) {
        case 's': { const char *s = va_arg(ap, const char *); while (*s) emit(o, *s++); break; }
        case 'c': emit(o, (char)va_arg(ap, int)); break;
        case 'd': { int v = va_arg(ap, int); emit_num(o, (u32)(v < 0 ? -v : v), 10, width, pad, v < 0); break; }
        case 'u': emit_num(o, va_arg(ap, u32), 10, width, pad, 0); break;
        case 'x': emit_num(o, longs >= 2 ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad, 0); break;
        case '%': emit(o, '%'); break;
        default: emit(o, '?'); break;
        }
    }
    o->buf[o->len] = 0;
}

void printf(const char *fmt, ...) {
    char buf[256];
    struct out o = { buf, 0, sizeof buf };
    va_list ap;
    va_start(ap, fmt);
    vformat(&o, fmt, ap);
    va_end(ap);
    puts(buf);
}

/* ---- reporting ---- */
static volatile u32 tests, failures, skips;

static void vreport(const char *tag, const char *fmt, va_list ap) {
    char buf[256];
    struct out o = { buf, 0, sizeof buf };
    const char *t = tag;
    while (*t) emit(&o, *t++);
    vformat(&o, fmt, ap);
    emit(&o, '\n');
    buf[o.len] = 0;
    puts(buf);
}

void report(int pass, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    __atomic_add_fetch(&tests, 1, __ATOMIC_SEQ_CST);
    if (!pass) __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
    vreport(pass ? "PASS: " : "FAIL: ", fmt, ap);
    va_end(ap);
}

void report_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    __atomic_add_fetch(&tests, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&skips, 1, __ATOMIC_SEQ_CST);
    vreport("SKIP: ", fmt, ap);
    va_end(ap);
}

int report_summary(void) {
    char buf[96];
    struct out o = { buf, 0, sizeof buf };
    const char *p = "SUMMARY: ";
    while (*p) emit(&o, *p++);
    emit_num(&o, tests, 10, 0, ' ', 0);
    p = " tests";
    while (*p) emit(&o, *p++);
    if (failures) {
        p = ", ";
        while (*p) emit(&o, *p++);
        emit_num(&o, failures, 10, 0, ' ', 0);
        p = " unexpected failures";
        while (*p) emit(&o, *p++);
    }
    if (skips) {
        p = ", ";
        while (*p) emit(&o, *p++);
        emit_num(&o, skips, 10, 0, ' ', 0);
        p = " skipped";
        while (*p) emit(&o, *p++);
    }
    emit(&o, '\n');
    buf[o.len] = 0;
    puts(buf);
    if (failures) return 1;
    return tests == skips && skips ? 77 : 0;
}

void exit(int code) {
    outl(0xf4, (u32)code);
    /* A VMM without the debug-exit port gets here: stop for good. */
    for (;;) __asm__ volatile("cli; hlt");
}

/* ---- fw_cfg ---- */
static volatile u32 fwcfg_lock;

u64 fwcfg_get(u16 selector, int bytes) {
    u64 v = 0;
    spin_lock(&fwcfg_lock);
    outw(0x510, selector);
    for (int i = 0; i < bytes; i++) v |= (u64)inb(0x511) << (8 * i);
    spin_unlock(&fwcfg_lock);
    return v;
}

/* ---- local APIC ---- */
#define APIC_ID 0x20
#define APIC_SVR 0xf0
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define ICR_INIT 0x00000500u
#define ICR_STARTUP 0x00000600u
#define ICR_ASSERT 0x00004000u
#define ICR_ALL_BUT_SELF 0x000c0000u
#define ICR_BUSY 0x00001000u
#define TRAMPOLINE 0x8000u

u32 apic_id(void) { return mmio_read32(APIC_BASE + APIC_ID) >> 24; }

void apic_enable(void) { mmio_write32(APIC_BASE + APIC_SVR, 0x1ff); }

static void apic_icr(u32 lo) {
    mmio_write32(APIC_BASE + APIC_ICR_HI, 0);
    mmio_write32(APIC_BASE + APIC_ICR_LO, lo);
    for (int i = 0; i < 1000 && (mmio_read32(APIC_BASE + APIC_ICR_LO) & ICR_BUSY); i++) cpu_relax();
}

extern const char ap_tramp_start[], ap_tramp_end[];
volatile u32 ap_started;

/* Guests that start APs define their own; this one only counts the arrival. */
__attribute__((weak)) void ap_main(u32 index) {
    (void)index;
    __atomic_add_fetch(&ap_started, 1, __ATOMIC_SEQ_CST);
}

void smp_start_aps(void) {
    memcpy((void *)TRAMPOLINE, ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
    apic_enable();
    apic_icr(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
    apic_icr(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE >> 12));
    apic_icr(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE >> 12));
}
