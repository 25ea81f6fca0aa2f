/* exit-code: the value test_main returns reaches the VMM as the EXIT hypercall's code. */
#include "tsvmm.h"

int test_main(void) {
    report("before-exit", 1);
    return 42;
}
