/* probe: the ports kvm-unit-tests' x86 library and tests touch at start-up, and what a VMM
   gives back. fw_cfg (selector 0x510, data 0x511) must name QEMU's interface and carry the CPU
   count and RAM size the VMM was started with; the POST port 0x80, CMOS 0x70/0x71, the i8042
   status and the in-kernel PIC/PIT ports must answer without ending the VM; ports nobody owns
   (COM2, LPT1, PCI config) must read all-ones at every width. Values are printed for the host
   side to check against --smp and --mem. */
#include "kut.h"

static void unclaimed(u16 port) {
    u8 b = inb(port);
    u16 w = inw(port);
    u32 l = inl(port);
    printf("port 0x%x: inb 0x%x inw 0x%x inl 0x%x\n", port, b, w, l);
    report(b == 0xff && w == 0xffff && l == 0xffffffffu, "unclaimed port 0x%x reads all-ones", port);
}

int kut_main(void) {
    u32 sig = (u32)fwcfg_get(FW_CFG_SIGNATURE, 4);
    report(sig == 0x554d4551u, "fw_cfg signature is QEMU (0x%08x)", sig);
    u32 id = (u32)fwcfg_get(FW_CFG_ID, 4);
    printf("fw_cfg: id 0x%x\n", id);
    u32 cpus = (u32)fwcfg_get(FW_CFG_NB_CPUS, 2);
    u32 max_cpus = (u32)fwcfg_get(FW_CFG_MAX_CPUS, 2);
    u64 ram = fwcfg_get(FW_CFG_RAM_SIZE, 8);
    printf("fw_cfg: cpus %u max_cpus %u ram 0x%llx\n", cpus, max_cpus, ram);
    report(cpus >= 1 && max_cpus >= cpus, "fw_cfg CPU counts are sane");
    report(ram != 0 && (ram & 0xfffff) == 0, "fw_cfg RAM size is whole MiB");
    u64 absent = fwcfg_get(0x7fff, 4);
    report(absent == 0, "an absent fw_cfg item reads as zeros (0x%llx)", absent);

    for (int i = 0; i < 4; i++) outb(0x80, (u8)(0x10 + i)); /* POST codes: an I/O delay too */
    printf("port 0x80 reads 0x%x\n", inb(0x80));

    outb(0x70, 0x0b);
    u8 cmos_b = inb(0x71);
    outb(0x70, 0x0a);
    u8 cmos_a = inb(0x71);
    printf("cmos: A 0x%x B 0x%x\n", cmos_a, cmos_b);
    report(1, "CMOS 0x70/0x71 answered");

    printf("i8042 status 0x%x\n", inb(0x64));
    report(1, "i8042 status port answered");
    printf("pic masks 0x%x 0x%x, pit status read done\n", inb(0x21), inb(0xa1));
    outb(0x43, 0xe2); /* read-back: status of counter 0 */
    (void)inb(0x40);

    /* pc-testdev's scratch register: what the suite's string-I/O tests bounce data off. */
    outl(0xe0, 0x12345678u);
    u8 b1 = inb(0xe1);
    u16 w2 = inw(0xe2);
    outb(0xe3, 0x9a);
    u32 all = inl(0xe0);
    report(b1 == 0x56 && w2 == 0x1234 && all == 0x9a345678u, "testdev 0xe0 reads back at every width (0x%x 0x%x 0x%x)", b1, w2, all);

    unclaimed(0x2f8); /* COM2 */
    unclaimed(0x378); /* LPT1 */
    outl(0xcf8, 0x80000000u);
    u32 vendor = inl(0xcfc);
    printf("pci 00:00.0 id 0x%08x\n", vendor);
    report(vendor == 0xffffffffu, "no PCI host: config data reads all-ones");
    return report_summary();
}
