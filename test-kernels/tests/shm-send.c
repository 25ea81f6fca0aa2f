/* shm-send: one half of the two-VM test. Writes a message into the memory region it shares with
   the other VM, then rings the doorbell port, which the VMM wired to the other VM's IRQ through an
   ioeventfd/irqfd pair: the signal goes from KVM to KVM without either VMM relaying it. */
#include "tsvmm.h"

#define SHARED ((volatile char *)0x800000)
#define READY ((volatile u32 *)0x800800) /* set by the receiver once its doorbell pin is routed */
#define DOORBELL 0x700

int test_main(void) {
    u64 nonce = rdtsc();
    static const char hex[] = "0123456789abcdef";
    char msg[48] = "greetings from VM A #";
    int n = 21;
    for (int i = 60; i >= 0; i -= 4) msg[n++] = hex[(nonce >> i) & 0xf];
    msg[n] = 0;
    while (*READY != 1) __asm__ volatile("pause");
    for (int i = 0; i <= n; i++) SHARED[i] = msg[i];
    printf("sent: %s\n", msg);
    outb(DOORBELL, 1);
    outb(0x80, 0xaa); /* a POST code after the doorbell: this one does exit to the VMM */
    return 0;
}
