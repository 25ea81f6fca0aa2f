/* iomem: QEMU pc-testdev's 64 KiB of RAM-like MMIO at 0xff000000, the region kvm-unit-tests'
   emulator test runs instructions against. Every access is an MMIO exit carried out by KVM's
   instruction emulator and this VMM: plain moves at each width, string instructions (rep stos,
   rep movs RAM->MMIO across the page boundary, movs MMIO->MMIO), xchg, add, lock cmpxchg, and the
   last dword of the region. Paging is off, so the physical address is used as is. */
#include "kut.h"

#define IOMEM 0xff000000u
#define IOMEM_LEN 0x10000u

static u8 ram[64];

int kut_main(void) {
    volatile u8 *b = (volatile u8 *)IOMEM;
    volatile u16 *w = (volatile u16 *)IOMEM;
    volatile u32 *d = (volatile u32 *)IOMEM;
    report(d[0] == 0 && d[IOMEM_LEN / 4 - 1] == 0, "reads 0 before any write");

    b[1] = 0x5a;
    w[1] = 0x1234;
    d[2] = 0xdeadbeef;
    report(b[1] == 0x5a && w[1] == 0x1234 && d[2] == 0xdeadbeef, "byte, word and dword writes read back");
    report(d[0] == 0x12345a00u && b[9] == 0xbe, "reads of other widths see the same bytes (0x%x)", d[0]);

    u32 fill = 0x01020304, n = 256;
    void *dst = (void *)(IOMEM + 0x100);
    __asm__ volatile("cld; rep stosl" : "+D"(dst), "+c"(n) : "a"(fill) : "memory");
    int ok = 1;
    for (u32 i = 0; i < 256; i++) if (d[0x40 + i] != fill) ok = 0;
    report(ok && n == 0, "rep stosl of 256 dwords");

    for (u32 i = 0; i < sizeof ram; i++) ram[i] = (u8)(0xa0 + i);
    const void *src = ram;
    dst = (void *)(IOMEM + 0x1000 - 32);
    n = sizeof ram;
    __asm__ volatile("cld; rep movsb" : "+S"(src), "+D"(dst), "+c"(n) : : "memory");
    ok = 1;
    for (u32 i = 0; i < sizeof ram; i++) if (b[0x1000 - 32 + i] != (u8)(0xa0 + i)) ok = 0;
    report(ok, "rep movsb from RAM across the 0xff001000 page boundary");

    src = (const void *)(IOMEM + 8);
    dst = (void *)(IOMEM + 0x2000);
    __asm__ volatile("cld; movsl" : "+S"(src), "+D"(dst) : : "memory");
    report(d[0x800] == 0xdeadbeef, "movsl from MMIO to MMIO");

    u32 x = 0x11111111;
    __asm__ volatile("xchgl %0, %1" : "+r"(x), "+m"(*(volatile u32 *)(IOMEM + 0x3000)) : : "memory");
    report(x == 0 && d[0xc00] == 0x11111111, "xchg with MMIO swaps");
    __asm__ volatile("addl %1, %0" : "+m"(*(volatile u32 *)(IOMEM + 0x3000)) : "r"(0x22222222u) : "memory", "cc");
    report(d[0xc00] == 0x33333333, "add to MMIO");
    u32 expect = 0x33333333, repl = 0x44444444;
    __asm__ volatile("lock cmpxchgl %2, %1" : "+a"(expect), "+m"(*(volatile u32 *)(IOMEM + 0x3000)) : "r"(repl) : "memory", "cc");
    report(d[0xc00] == 0x44444444, "lock cmpxchg on MMIO stores when equal");

    d[IOMEM_LEN / 4 - 1] = 0xcafef00d;
    report(d[IOMEM_LEN / 4 - 1] == 0xcafef00d, "the last dword (0xff00fffc) is backed");
    return report_summary();
}
