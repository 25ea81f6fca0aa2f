/* hello: the console works both ways (CONSOLE_WRITE hypercall and the 16550 UART). */
#include "tsvmm.h"

int test_main(void) {
    puts("Hello from a tsvmm guest (hypercall console)\n");
    uart_puts("Hello from a tsvmm guest (uart)\n");
    printf("version=%d\n", hc_negotiated_version);
    report("hello", 1);
    return 0;
}
