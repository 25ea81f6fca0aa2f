/* virtio-console: guest -> host through transmitq (and one byte through the emergency-write
   register), host -> guest through receiveq: the guest posts a buffer, says "con.ready", the test
   feeds a line with vmm.consoleInput, and the guest reports what arrived (on the hypercall console)
   and echoes it back through transmitq. Waits on the device's interrupt.
   Params: arg[0] = a nonce the guest prints. */
#include "virtio.h"

#define RXQ 0
#define TXQ 1
#define EMERG_WR 8 /* struct virtio_console_config: cols, rows, max_nr_ports, emerg_wr */

static struct virtio_dev dev;
static char txbuf[128] __attribute__((aligned(64)));
static char rxbuf[64] __attribute__((aligned(64)));

static int send(const char *s, u32 len) {
    struct vbuf b = {s, len, 0};
    if (virtq_add(&dev.vq[TXQ], &b, 1) < 0) return -1;
    virtq_kick(&dev.vq[TXQ]);
    u32 used;
    return virtq_wait(&dev.vq[TXQ], &used) < 0 ? -2 : 0;
}

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    u64 nonce = p ? p->arg[0] : 0;
    if (virtio_probe(&dev, 0, VIRTIO_ID_CONSOLE) < 0) return 1;
    if (virtio_init(&dev, VIRTIO_BIT(0) /* SIZE */ | VIRTIO_BIT(2) /* EMERG_WRITE */)) return 2;
    report_value("con.features", dev.features);
    report_value("con.cols", virtio_cfg16(&dev, 0));
    report_value("con.rows", virtio_cfg16(&dev, 2));
    if (virtq_setup(&dev, RXQ, 4) || virtq_setup(&dev, TXQ, 4)) return 3;
    virtio_enable_irq(&dev, 0x32);
    virtio_driver_ok(&dev);

    mmio_write32(dev.base + VIRTIO_MMIO_CONFIG + EMERG_WR, '!');
    static const char head[] = "virtio-console says ";
    u32 n = 0;
    for (; head[n]; n++) txbuf[n] = head[n];
    for (int s = 60; s >= 0; s -= 4) txbuf[n++] = "0123456789abcdef"[(nonce >> s) & 15];
    txbuf[n++] = '\n';
    report_value("con.tx", (u64)send(txbuf, n));

    struct vbuf rb = {rxbuf, sizeof rxbuf, 1};
    if (virtq_add(&dev.vq[RXQ], &rb, 1) < 0) return 4;
    virtq_kick(&dev.vq[RXQ]);
    report_value("con.ready", 1); /* the host types now */
    u32 len = 0;
    int got = virtq_wait(&dev.vq[RXQ], &len);
    report_value("con.rx-token", (u64)(i64)got);
    report_value("con.rx-len", len);
    if (len > sizeof rxbuf) return 5;
    console_write("rx=", 3);
    console_write(rxbuf, len);
    static const char echo[] = "echo:";
    for (n = 0; echo[n]; n++) txbuf[n] = echo[n];
    vcopy(txbuf + n, rxbuf, len);
    report_value("con.echo", (u64)send(txbuf, n + len));
    report_value("con.irqs", dev.irq_count);
    return 0;
}
