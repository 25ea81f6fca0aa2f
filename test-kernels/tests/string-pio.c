/* string-pio: `rep outsb` and `rep insb` move whole buffers through one port. */
#include "tsvmm.h"

static const char message[16] = "tsvmm string pio";
static u8 inbuf[16];

int test_main(void) {
    const void *src = message;
    void *dst = inbuf;
    ulong n = sizeof message;
    __asm__ volatile("cld; rep outsb" : "+S"(src), "+c"(n) : "d"(0x530) : "memory");
    report_value("outsb-left", n);
    n = sizeof inbuf;
    __asm__ volatile("cld; rep insb" : "+D"(dst), "+c"(n) : "d"(0x531) : "memory");
    report_value("insb-left", n);
    u64 lo, hi;
    memcpy(&lo, inbuf, 8);
    memcpy(&hi, inbuf + 8, 8);
    report_value("insb-0-7", lo);
    report_value("insb-8-15", hi);
    return 0;
}
