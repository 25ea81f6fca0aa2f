/* chaos: a misbehaving guest. It writes pseudo-random values of random widths to random ports
   and reads random ports, pushes string I/O at a port nobody owns, and reads and writes
   physical addresses with no RAM and no device behind them. The VMM must shrug all of it off:
   the UART, fw_cfg and the exit port still work afterwards and unbacked memory reads all-ones.
   Ports with a defined VM-wide effect are left alone (debug-exit 0xf4, the i8042 reset at 0x64,
   the UART the results go to, the tsvmm hypercall doorbell 0xef0-0xef7, the port 0x92 reset bit,
   the ACPI PM block 0x600-0x60b whose S5 write powers off). */
#include "kut.h"

static u32 rng = 0x2545f491u;

static u32 next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static int touches(u32 port, u32 size, u32 lo, u32 hi) { return port <= hi && port + size - 1 >= lo; }

static int protected_port(u32 port, u32 size) {
    return touches(port, size, 0xf4, 0xf7) || touches(port, size, 0x60, 0x64) ||
           touches(port, size, 0x3f8, 0x3ff) || touches(port, size, 0xef0, 0xef7) || touches(port, size, 0x92, 0x92) ||
           touches(port, size, 0x600, 0x60b) || port + size > 0x10000;
}

static void out_sized(u16 port, u32 size, u32 v) {
    if (size == 1) outb(port, (u8)v);
    else if (size == 2) outw(port, (u16)v);
    else outl(port, v);
}

static u32 in_sized(u16 port, u32 size) {
    if (size == 1) return inb(port);
    if (size == 2) return inw(port);
    return inl(port);
}

/* "seed=N" on the command line picks another storm (N must not be 0). */
static void seed_from_cmdline(void) {
    if (!(mb_info->flags & MB_INFO_CMDLINE)) return;
    for (const char *s = (const char *)mb_info->cmdline; *s; s++) {
        if (s[0] == 's' && s[1] == 'e' && s[2] == 'e' && s[3] == 'd' && s[4] == '=') {
            u32 v = 0;
            for (s += 5; *s >= '0' && *s <= '9'; s++) v = v * 10 + (u32)(*s - '0');
            if (v) rng = v;
            return;
        }
    }
}

int kut_main(void) {
    seed_from_cmdline();
    printf("chaos: seed %u\n", rng);
    u32 writes = 0, reads = 0;
    for (int i = 0; i < 300; i++) {
        u32 port = next() & 0xffff, size = 1u << (next() % 3), v = next();
        if (protected_port(port, size)) continue;
        out_sized((u16)port, size, v);
        writes++;
    }
    for (int i = 0; i < 100; i++) {
        u32 port = next() & 0xffff, size = 1u << (next() % 3);
        if (protected_port(port, size)) continue;
        (void)in_sized((u16)port, size);
        reads++;
    }
    printf("chaos: %u random port writes, %u random port reads\n", writes, reads);
    report(writes > 250 && reads > 80, "random port I/O ran");

    static u8 buf[32];
    for (int i = 0; i < 32; i++) buf[i] = (u8)i;
    const u8 *src = buf;
    u32 n = 32;
    __asm__ volatile("cld; rep outsb" : "+S"(src), "+c"(n) : "d"((u16)0x2f8) : "memory");
    u8 *dst = buf;
    u32 cnt = 16;
    __asm__ volatile("cld; rep insw" : "+D"(dst), "+c"(cnt) : "d"((u16)0x2e8) : "memory");
    int ones = 1;
    for (int i = 0; i < 32; i++) if (buf[i] != 0xff) ones = 0;
    report(ones, "rep insw from an unclaimed port fills all-ones");

    /* No RAM and no device: above the top of RAM, below the APIC/IOAPIC windows. */
    static const u32 holes[] = { 0xc0000000u, 0xd0001000u, 0xfed00000u, 0xfe000ffcu };
    for (unsigned i = 0; i < sizeof holes / sizeof holes[0]; i++) {
        u32 before = mmio_read32(holes[i]);
        mmio_write32(holes[i], next());
        u32 after = mmio_read32(holes[i]);
        report(before == 0xffffffffu && after == 0xffffffffu, "unbacked 0x%08x reads all-ones, writes vanish (0x%x, 0x%x)", holes[i], before, after);
    }

    serial_init(); /* chaos may have hit nothing of the UART's, but the suite re-inits anyway */
    u32 sig = (u32)fwcfg_get(FW_CFG_SIGNATURE, 4);
    report(sig == 0x554d4551u, "fw_cfg still answers after the storm");
    printf("chaos: still alive\n");
    return report_summary();
}
