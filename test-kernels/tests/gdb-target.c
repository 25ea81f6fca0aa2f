/*
 * gdb-target: a guest to debug with the real gdb (packages/vmm/test/gdb.test.ts). gdb breaks
 * on gdb_checkpoint, reads and writes gdb_counter by name, watches the store in gdb_bump, and
 * may set gdb_spin so the guest spins (for Ctrl-C) until gdb sets gdb_go.
 */
#include "tsvmm.h"

volatile u32 gdb_counter = 5;
volatile u32 gdb_spin;
volatile u32 gdb_go;

/* Not inlined and not removable (the asm): a function gdb can break on by name. */
__attribute__((noinline)) void gdb_checkpoint(void) { __asm__ volatile("" ::: "memory"); }

/* The only store to gdb_counter: a watchpoint on it stops right after this instruction. */
__attribute__((noinline)) void gdb_bump(void) { gdb_counter = gdb_counter + 1; }

int test_main(void) {
    report_value("counter-start", gdb_counter);
    gdb_checkpoint();
    gdb_bump();
    report_value("counter", gdb_counter);
    while (gdb_spin && !gdb_go) __asm__ volatile("pause");
    report_value("spun", gdb_spin);
    return 7;
}
