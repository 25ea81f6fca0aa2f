/* Console: the 16550 UART (polling) and a tiny printf over CONSOLE_WRITE. */
#include <stdarg.h>
#include "tsvmm.h"

#define UART 0x3f8
#define UART_LSR 5
#define LSR_THRE 0x20

void uart_putc(char c) {
    /* Bounded poll: a VMM without a UART returns 0xff (THRE set) or 0, never hang on it. */
    for (int i = 0; i < 1000 && !(inb(UART + UART_LSR) & LSR_THRE); i++) {
    }
    outb(UART, (u8)c);
}

void uart_puts(const char *s) {
    while (*s) uart_putc(*s++);
}

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

int memcmp(const void *a, const void *b, size_t n) {
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q) return *p - *q;
    return 0;
}

size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

struct out {
    char buf[160];
    unsigned n;
};

static void put(struct out *o, char c) {
    if (o->n == sizeof o->buf) {
        console_write(o->buf, o->n);
        o->n = 0;
    }
    o->buf[o->n++] = c;
}

static void put_hex(struct out *o, u64 v) {
    int started = 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned d = (unsigned)(v >> shift) & 0xf;
        if (d || started || shift == 0) {
            put(o, (char)(d < 10 ? '0' + d : 'a' + d - 10));
            started = 1;
        }
    }
}

static void put_udec(struct out *o, ulong v) {
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i) put(o, tmp[--i]);
}

void printf(const char *fmt, ...) {
    struct out o;
    o.n = 0;
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        int longs = 0;
        while (*++fmt == 'l') longs++;
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s) put(&o, *s++);
            break;
        }
        case 'c': put(&o, (char)va_arg(ap, int)); break;
        case 'd': {
            long v = longs ? va_arg(ap, long) : va_arg(ap, int);
            if (v < 0) {
                put(&o, '-');
                v = -v;
            }
            put_udec(&o, (ulong)v);
            break;
        }
        case 'u': put_udec(&o, longs ? va_arg(ap, ulong) : va_arg(ap, unsigned)); break;
        case 'x':
            put_hex(&o, longs >= 2 ? va_arg(ap, u64) : longs ? va_arg(ap, ulong) : va_arg(ap, unsigned));
            break;
        case 'p': put(&o, '0'); put(&o, 'x'); put_hex(&o, (ulong)va_arg(ap, void *)); break;
        case '%': put(&o, '%'); break;
        default: put(&o, '?'); break;
        }
        if (!*fmt) break;
    }
    va_end(ap);
    if (o.n) console_write(o.buf, o.n);
}
