/* mem: the memory the loader describes must be the memory there is. mem_lower/mem_upper and
   the mmap are printed (the host side checks them against --mem); the guest checks they agree
   with each other and with fw_cfg's RAM size, that its own image lies in RAM, and that the last
   dword of RAM holds what is written to it. */
#include "kut.h"

extern char _end[];

int kut_main(void) {
    struct mb_info *mi = mb_info;
    report((mi->flags & MB_INFO_MEMORY) != 0, "mem_lower/mem_upper present");
    report((mi->flags & MB_INFO_MMAP) != 0, "mmap present");
    printf("mem_lower %u KiB, mem_upper %u KiB\n", mi->mem_lower, mi->mem_upper);

    u64 ram_total = 0, top_from_1m = 0x100000;
    int image_in_ram = 0, n = 0;
    u32 p = mi->mmap_addr, end = mi->mmap_addr + mi->mmap_length;
    while (p < end && n < 64) {
        struct mb_mmap *e = (struct mb_mmap *)p;
        printf("mmap: base 0x%llx length 0x%llx type %u\n", e->addr, e->len, e->type);
        if (e->type == 1) {
            ram_total += e->len;
            if (e->addr <= top_from_1m && e->addr + e->len > top_from_1m) top_from_1m = e->addr + e->len;
            if (e->addr <= 0x400000 && e->addr + e->len >= (u32)_end) image_in_ram = 1;
        }
        p += e->size + 4;
        n++;
    }
    printf("mem: ram total 0x%llx, contiguous from 1 MiB to 0x%llx\n", ram_total, top_from_1m);
    report(n > 0, "mmap has %d entries", n);
    report((u64)mi->mem_upper * 1024 + 0x100000 == top_from_1m, "mem_upper matches the mmap");
    report(mi->mem_lower <= 640 && mi->mem_lower >= 512, "mem_lower is conventional memory");
    report(image_in_ram, "the kernel image lies in mmap RAM");

    u64 fw_ram = fwcfg_get(FW_CFG_RAM_SIZE, 8);
    report(fw_ram == top_from_1m, "fw_cfg RAM size 0x%llx is the top of RAM", fw_ram);

    volatile u32 *last = (volatile u32 *)(u32)(top_from_1m - 4);
    *last = 0x5a5aa5a5u;
    report(*last == 0x5a5aa5a5u, "last dword of RAM at 0x%x is writable", (u32)last);
    return report_summary();
}
