/* Local APIC / IOAPIC access. Both live above the 1 GiB the boot map covers, so they are
   mapped on demand with uncached 2 MiB pages. */
#include "tsvmm.h"

#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_US 0x4ull
#define PTE_PWT 0x8ull
#define PTE_PCD 0x10ull
#define PTE_PS 0x80ull
#define PTE_ADDR 0x000ffffffffff000ull

static u64 table_pool[4][512] __attribute__((aligned(4096)));
static int tables_used;

static u64 *next_level(u64 *table, int index) {
    if (!(table[index] & PTE_P)) {
        if (tables_used == 4) exit(0xfe);
        table[index] = (u64)table_pool[tables_used++] | PTE_P | PTE_RW | PTE_US;
    }
    return (u64 *)(table[index] & PTE_ADDR);
}

static volatile int map_lock;

void map_mmio_2m(u64 pa) {
    /* vCPUs share the page tables and the pool */
    while (__atomic_exchange_n(&map_lock, 1, __ATOMIC_ACQUIRE)) __asm__ volatile("pause");
    u64 *pml4 = (u64 *)(read_cr3() & PTE_ADDR);
    u64 *pdpt = next_level(pml4, (int)(pa >> 39 & 511));
    u64 *pd = next_level(pdpt, (int)(pa >> 30 & 511));
    pa &= ~0x1fffffull;
    pd[pa >> 21 & 511] = pa | PTE_P | PTE_RW | PTE_PS | PTE_PCD | PTE_PWT;
    __asm__ volatile("invlpg (%0)" ::"r"(pa) : "memory");
    __atomic_store_n(&map_lock, 0, __ATOMIC_RELEASE);
}

u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }
void lapic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }
void lapic_eoi(void) { lapic_write(0xB0, 0); }

void lapic_enable(void) {
    static int mapped;
    if (!mapped) {
        map_mmio_2m(LAPIC_BASE);
        mapped = 1;
    }
    outb(0x21, 0xff); /* legacy PICs masked: interrupts come through the IOAPIC */
    outb(0xa1, 0xff);
    lapic_write(0x80, 0);          /* TPR: accept everything */
    lapic_write(0x350, 1u << 16);  /* LVT LINT0 masked */
    lapic_write(0x360, 1u << 16);  /* LVT LINT1 masked */
    lapic_write(0xF0, 0x100 | 0x3F); /* software enable; spurious vector inside our 64-entry IDT */
}

static void ioapic_write(u32 reg, u32 v) {
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, v);
}

void ioapic_route(int gsi, int vector, int dest_apic) {
    static int mapped;
    if (!mapped) {
        map_mmio_2m(IOAPIC_BASE);
        mapped = 1;
    }
    ioapic_write(0x11 + 2 * gsi, (u32)dest_apic << 24);
    ioapic_write(0x10 + 2 * gsi, (u32)vector); /* fixed, physical, edge, active high, unmasked */
}

int cpu_apic_id(void) { return (int)(cpuid(1, 0).b >> 24); }
