/* smp-sipi: the BSP reads the MADT and starts every other processor it lists with INIT, SIPI,
   SIPI addressed to that local APIC id, as an OS does. tsvmm boots secondaries in the same state
   as the BSP, so they first park in `cli; hlt`; the INIT puts each one back into wait-for-SIPI and
   the SIPI restarts it in real mode at 0x8000. The trampoline goes real mode -> 32-bit protected
   mode -> long mode on the VMM's identity map, and the AP reports its APIC id (CPUID and LAPIC ID
   register) and the CS it started with, then exits. Needs the in-kernel irqchip. */
#include "tsvmm.h"
#include "acpi.h"

#define TRAMPOLINE 0x8000u
#define MAX_APS 8

volatile u32 ap_cr3;
volatile u32 ap_arrived;
volatile u32 ap_slot;
u8 ap_stacks[MAX_APS][4096] __attribute__((aligned(16)));

/* The GDT the trampoline loads: 0x08 64-bit code, 0x10 data, 0x18 32-bit code. */
u64 ap_gdt[4] __attribute__((aligned(16))) = {0, 0x00af9b000000ffffull, 0x00cf93000000ffffull, 0x00cf9b000000ffffull};

void ap_entry(void);

__asm__(
    "    .section .text\n"
    "    .code16\n"
    "    .globl ap_tramp_start, ap_tramp_end, ap_tramp_cs\n"
    "ap_tramp_start:\n"
    "    cli\n"
    "    movw %cs, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, (ap_tramp_cs - ap_tramp_start)\n"
    "    lgdtl (ap_tramp_gdtr - ap_tramp_start)\n"
    "    movl %cr0, %eax\n"
    "    orl $1, %eax\n"
    "    movl %eax, %cr0\n"
    "    ljmpl $0x18, $ap_pm32\n"
    "    .balign 4\n"
    "ap_tramp_gdtr:\n"
    "    .word 4 * 8 - 1\n"
    "    .long ap_gdt\n"
    "ap_tramp_cs:\n"
    "    .word 0\n"
    "ap_tramp_end:\n"
    "    .code32\n"
    "ap_pm32:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %ss\n"
    "    movl %cr4, %eax\n"
    "    orl $0x20, %eax\n" /* PAE */
    "    movl %eax, %cr4\n"
    "    movl ap_cr3, %eax\n"
    "    movl %eax, %cr3\n"
    "    movl $0xC0000080, %ecx\n"
    "    rdmsr\n"
    "    orl $0x100, %eax\n" /* EFER.LME */
    "    wrmsr\n"
    "    movl %cr0, %eax\n"
    "    orl $0x80000000, %eax\n" /* PG */
    "    movl %eax, %cr0\n"
    "    ljmpl $0x08, $ap_long64\n"
    "    .code64\n"
    "ap_long64:\n"
    "    movl $1, %eax\n"
    "    lock xaddl %eax, ap_slot\n"
    "    cmpl $8, %eax\n"
    "    jae 2f\n"
    "    addl $1, %eax\n"
    "    shll $12, %eax\n"
    "    leaq ap_stacks(%rax), %rsp\n"
    "    call ap_entry\n"
    "2:  cli\n"
    "    hlt\n"
    "    jmp 2b\n");

extern const u8 ap_tramp_start[], ap_tramp_end[], ap_tramp_cs[];

static int lapic_id(void) { return (int)(lapic_read(0x20) >> 24); }

void ap_entry(void) {
    report_value("ap.cpuid-id", (u64)cpu_apic_id());
    report_value("ap.lapic-id", (u64)lapic_id());
    report_value("ap.start-cs", *(volatile u16 *)(u64)(TRAMPOLINE + (u32)(ap_tramp_cs - ap_tramp_start)));
    __atomic_add_fetch(&ap_arrived, 1, __ATOMIC_SEQ_CST);
    exit(0);
}

static void icr(u32 dest, u32 low) {
    lapic_write(0x310, dest << 24);
    lapic_write(0x300, low);
    for (int i = 0; i < 1000 && (lapic_read(0x300) & (1u << 12)); i++) __asm__ volatile("pause");
}

int test_main(void) {
    if (cpu_apic_id() != 0) {
        for (;;) __asm__ volatile("cli; hlt");
    }
    lapic_enable();
    const struct acpi_rsdp *rsdp = acpi_find_rsdp();
    const struct acpi_madt *madt = rsdp ? (const struct acpi_madt *)acpi_find_table(rsdp, "APIC") : 0;
    report("madt-found", madt != 0);
    if (!madt) return 1;
    memcpy((void *)(u64)TRAMPOLINE, ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
    ap_cr3 = (u32)read_cr3();
    int self = lapic_id();
    u32 listed = 0, started = 0;
    const u8 *p = (const u8 *)(madt + 1), *end = (const u8 *)madt + madt->h.length;
    for (; p + 2 <= end && ((const struct madt_entry *)p)->length >= 2; p += ((const struct madt_entry *)p)->length) {
        const struct madt_lapic *l = (const struct madt_lapic *)p;
        if (l->e.type != MADT_LAPIC || !(l->flags & 1)) continue;
        listed++;
        if (l->apic_id == self) continue;
        icr(l->apic_id, 0x4500);                            /* INIT, assert, physical */
        icr(l->apic_id, 0x4600 | (TRAMPOLINE >> 12));       /* SIPI, vector 0x08 -> 0x8000 */
        icr(l->apic_id, 0x4600 | (TRAMPOLINE >> 12));
        started++;
    }
    for (u32 i = 0; i < 2000000 && ap_arrived < started; i++) __asm__ volatile("pause");
    report_value("bsp.lapic-id", (u64)self);
    report_value("bsp.madt-cpus", listed);
    report_value("bsp.sipi-sent", started);
    report_value("bsp.aps-arrived", ap_arrived);
    return 0;
}
