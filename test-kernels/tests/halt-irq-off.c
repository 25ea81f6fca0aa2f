/* halt-irq-off: `cli; hlt` can never wake (no NMI comes). With the in-kernel irqchip KVM sleeps
   through HLT without an exit; the VMM must notice and end the VM with a guest error. */
#include "tsvmm.h"

int test_main(void) {
    report("about-to-halt", 1);
    __asm__ volatile("cli; hlt" ::: "memory");
    report("woke", 1);
    return 0;
}
