/* tsvmm test-kernel library: the whole public face of lib/ for a test case. */
#ifndef TSVMM_H
#define TSVMM_H

#include <stdint.h>
#include <stddef.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;
typedef int64_t i64;
typedef unsigned long ulong; /* the native word: 16/32-bit builds have no 64-bit division */

/* Every case defines this; its return value becomes the EXIT code. */
int test_main(void);

/* ---- hypercall ABI v1 (packages/abi/README.md) ---- */
#define HC_PORT 0x0EF0
#define HC_SIGNATURE_PORT 0x0EF4
#define HC_SIGNATURE 0x4D565354u
#define HC_MAGIC 0x43485354u
#define HC_VERSION 1
enum { HC_CALL_VERSION = 0, HC_CALL_CONSOLE_WRITE = 1, HC_CALL_REPORT = 2, HC_CALL_EXIT = 3, HC_CALL_REPORT_VALUE = 4 };
enum { HC_OK = 0, HC_E_NOSYS = -1, HC_E_VERSION = -2, HC_E_FAULT = -3, HC_E_INVAL = -4, HC_E_BADBLOCK = -5, HC_E_ACCESS = -6 };

struct tsvmm_hc {
    u32 magic;
    u16 version;
    u16 call;
    u64 arg[4];
    i64 result;
} __attribute__((aligned(8)));

/* One call through a well-formed block on the caller's stack (so every vCPU has its own). */
i64 hypercall(u16 call, u64 a0, u64 a1, u64 a2);
/* A raw call: fill `hc` yourself; the result stays in hc->result. Returns the IN status. */
i32 hypercall_raw(struct tsvmm_hc *hc);
/* Status of this vCPU's last call (32-bit IN from the doorbell). */
i32 hc_status(void);
/* The version negotiated at boot (the lib calls VERSION before test_main). */
extern int hc_negotiated_version;

void report(const char *name, int pass);
void report_value(const char *name, u64 value);
void exit(int code) __attribute__((noreturn));

/* ---- console ---- */
void console_write(const char *s, ulong len); /* CONSOLE_WRITE hypercall */
void puts(const char *s);                      /* console_write(s, strlen(s)) */
void uart_putc(char c);                        /* 16550 at 0x3f8, polls LSR.THRE */
void uart_puts(const char *s);
/* Formats into a small buffer and writes it with one hypercall: %s %c %d %u %x %lx %llx %p %%. */
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- freestanding string helpers (gcc may also call these itself) ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* ---- port I/O (CPL0 only: on PVM hosts port I/O from CPL3 is always #GP) ---- */
static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u16 inw(u16 p) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }

/* ---- CPUID / CR ---- */
struct cpuid { u32 a, b, c, d; };
static inline struct cpuid cpuid(u32 leaf, u32 sub) {
    struct cpuid r;
    __asm__ volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(leaf), "c"(sub));
    return r;
}
static inline ulong read_cr0(void) { ulong v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline ulong read_cr2(void) { ulong v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline ulong read_cr3(void) { ulong v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline ulong read_cr4(void) { ulong v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr3(ulong v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline u16 read_cs(void) { u16 v; __asm__ volatile("mov %%cs, %0" : "=r"(v)); return v; }

/* ---- MMIO ---- */
static inline u8 mmio_read8(ulong a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(ulong a) { return *(volatile u16 *)a; }
static inline u32 mmio_read32(ulong a) { return *(volatile u32 *)a; }
static inline void mmio_write8(ulong a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(ulong a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_write32(ulong a, u32 v) { *(volatile u32 *)a = v; }

#ifdef __x86_64__
/* ---- 64-bit only: MSRs, exceptions, user mode, paging, APIC ---- */
static inline u64 mmio_read64(u64 a) { return *(volatile u64 *)a; }
static inline void mmio_write64(u64 a, u64 v) { *(volatile u64 *)a = v; }
static inline u64 rdmsr(u32 i) { u32 lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(i)); return ((u64)hi << 32) | lo; }
static inline void wrmsr(u32 i, u64 v) { __asm__ volatile("wrmsr" ::"c"(i), "a"((u32)v), "d"((u32)(v >> 32)) : "memory"); }
static inline u64 read_efer(void) { return rdmsr(0xC0000080); }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
/* `sti; hlt` as one unit: the STI shadow guarantees the wake-up interrupt cannot slip in before HLT. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

/* The saved state the exception stubs hand to C. */
struct frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error, rip, cs, rflags, rsp, ss;
};

/*
 * Fault recovery. Wrap the instruction(s) that may fault:
 *     asm volatile(TRY_BEGIN "ud2" TRY_END ::: "memory");
 *     if (last_vector == 6) ...
 * The handler resumes at TRY_END and fills last_vector/last_error/last_rip/last_cr2;
 * try_rip is the address of the first wrapped instruction. Labels 9997/9998 are taken.
 */
#define TRY_BEGIN "movl $-1, last_vector\n\tmovq $9997f, try_rip\n\tmovq $9998f, fixup_rip\n9997:\n\t"
#define TRY_END "\n9998:\n\tmovq $0, fixup_rip\n\t"
extern volatile u64 fixup_rip, try_rip;
extern volatile int last_vector;
extern volatile u64 last_error, last_rip, last_cr2;
/* 0: exception handlers report exception.{vector,error,rip,cr2} through REPORT_VALUE (default). */
extern int quiet_exceptions;

typedef void (*irq_handler)(struct frame *f);
#define IDT_ENTRIES 64
void set_irq_handler(int vector, irq_handler h);

/*
 * Runs fn(arg) at CPL3 on the user stack and returns its result. Returns to CPL0 when fn
 * returns (the user trampoline executes `int3` at a known address) or when user code takes
 * any exception other than #BP; then user_fault_vector is that vector (else -1).
 */
u64 run_user(u64 (*fn)(u64), u64 arg);
extern volatile int user_fault_vector;
extern volatile u64 user_bp_count; /* #BPs taken at CPL3 (other than the return) and resumed */

/* Identity-map the 2 MiB page containing pa, uncached (for LAPIC/IOAPIC/MMIO above 1 GiB). */
void map_mmio_2m(u64 pa);

#define LAPIC_BASE 0xFEE00000ul
#define IOAPIC_BASE 0xFEC00000ul
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
void lapic_eoi(void);
/* Maps the LAPIC, software-enables it, masks LINT0/LINT1 and the legacy PICs. */
void lapic_enable(void);
void ioapic_route(int gsi, int vector, int dest_apic);
/* APIC id from CPUID.1 EBX[31:24] (the VMM sets it per vCPU). */
int cpu_apic_id(void);
#endif

#endif
