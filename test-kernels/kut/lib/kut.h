/* kut: a tiny library for Multiboot guests that follow kvm-unit-tests' x86 conventions
   (32-bit Multiboot entry, console on the 16550 at 0x3f8, results as "PASS:/FAIL:/SKIP:" lines
   and a "SUMMARY:" line, exit through a 4-byte OUT to port 0xf4, CPU count and RAM size from
   fw_cfg). Written for tsvmm; nothing here is taken from that suite. */
#ifndef KUT_H
#define KUT_H

#include <stdint.h>
#include <stddef.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Every guest defines this; its return value is handed to exit(). */
int kut_main(void);

/* ---- what the loader handed over (saved by the entry stub) ---- */
#define MB_BOOTLOADER_MAGIC 0x2badb002u
#define MB_INFO_MEMORY (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MODS (1u << 3)
#define MB_INFO_MMAP (1u << 6)
#define MB_INFO_LOADER_NAME (1u << 9)

struct mb_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    u32 syms[4];
    u32 mmap_length, mmap_addr;
    u32 drives_length, drives_addr, config_table, boot_loader_name;
} __attribute__((packed));

/* One memory-map record; `size` counts the bytes after itself. */
struct mb_mmap {
    u32 size;
    u64 addr, len;
    u32 type;
} __attribute__((packed));

extern u32 mb_magic;            /* EAX at entry */
extern struct mb_info *mb_info; /* EBX at entry */

/* ---- port I/O ---- */
static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u16 inw(u16 p) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 mmio_read32(u32 a) { return *(volatile u32 *)a; }
static inline void mmio_write32(u32 a, u32 v) { *(volatile u32 *)a = v; }
static inline u64 rdmsr(u32 msr) { u32 lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr)); return ((u64)hi << 32) | lo; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* ---- console (16550 at 0x3f8, polled) ---- */
void serial_init(void);
void putchar(char c);
void puts(const char *s);
/* %s %c %d %u %x %08x-style widths, %llx; one lock around each call so vCPUs never interleave. */
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- results, in the suite's words ---- */
void report(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "SUMMARY: n tests[, m unexpected failures][, k skipped]"; returns the exit code:
   0 all passed, 1 any failure, 77 nothing ran but skips. */
int report_summary(void);
/* A 4-byte OUT of `code` to port 0xf4 (QEMU's isa-debug-exit: status (code << 1) | 1). */
void exit(int code) __attribute__((noreturn));

/* ---- fw_cfg, traditional port interface (selector 0x510, data 0x511) ---- */
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID 0x01
#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NB_CPUS 0x05
#define FW_CFG_MAX_CPUS 0x0f
u64 fwcfg_get(u16 selector, int bytes);

/* ---- SMP: local APIC (xAPIC MMIO, paging is off) and the AP start-up ---- */
#define APIC_BASE 0xfee00000u
u32 apic_id(void);
void apic_enable(void);
/* Copies the real-mode trampoline below 1 MiB and broadcasts INIT, SIPI, SIPI. Each AP ends up
   in ap_main(index) on its own stack, index 1, 2, ... in arrival order. */
void smp_start_aps(void);
void ap_main(u32 index);
extern volatile u32 ap_started;

/* ---- small helpers ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);
void spin_lock(volatile u32 *l);
void spin_unlock(volatile u32 *l);

#endif
