/* triple-fault: #UD with an empty IDT escalates to #DF and then a triple fault: the VMM must
   see a clean shutdown. (`ud2`, not `int3`: int3 at CPL0 cannot be emulated on PVM hosts.) */
#include "tsvmm.h"

int test_main(void) {
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) empty = {0, 0};
    report("about-to-triple-fault", 1);
    __asm__ volatile("lidt %0; ud2" ::"m"(empty));
    report("survived", 0);
    return 1;
}
