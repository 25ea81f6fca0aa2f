/* virtio-hostile: a guest that breaks its own queues. Each time the device must refuse, set
   DEVICE_NEEDS_RESET (status bit 0x40, with a config interrupt cause), write nothing, and keep
   working after the guest resets it. Scenarios on the rng device: a split descriptor loop, a
   buffer outside RAM, a buffer straddling the end of RAM (a canary just below the end stays), an
   avail index more than the queue size ahead, and a packed chain longer than the ring.
   Params: arg[0] = guest RAM size in bytes. */
#include "virtio.h"

static struct virtio_dev dev;
static u8 good[16] __attribute__((aligned(16)));

static int start(int packed) {
    if (virtio_init(&dev, packed ? VIRTIO_BIT(VIRTIO_F_RING_PACKED) : 0)) return -1;
    virtio_arena_reset(); /* the device was reset: its old rings are ours again */
    if (virtq_setup(&dev, 0, 8)) return -2;
    virtio_driver_ok(&dev);
    return 0;
}

/* Poll status for NEEDS_RESET; then report it and the interrupt cause, and show the device works. */
static void expect_reset(const char *name, int packed) {
    u32 s = 0;
    for (int i = 0; i < 20000 && !((s = virtio_status(&dev)) & VIRTIO_S_NEEDS_RESET); i++) __asm__ volatile("pause");
    printf("%s: status %x isr %x\n", name, s, virtio_read(&dev, VIRTIO_MMIO_INTERRUPT_STATUS));
    report_value(name, s);
    report_value("hostile.isr", virtio_ack(&dev));
    /* Recover: reset, set up again, and read 16 random bytes normally. */
    if (start(packed)) {
        report_value("hostile.recovered", 0);
        return;
    }
    struct vbuf b = {good, sizeof good, 1};
    virtq_add(&dev.vq[0], &b, 1);
    virtq_kick(&dev.vq[0]);
    u32 len = 0;
    int got = virtq_wait(&dev.vq[0], &len);
    report_value("hostile.recovered", got >= 0 && len == sizeof good);
}

static void post_raw_split(struct virtq *q, u16 head) {
    q->avail->ring[q->next_avail & (q->size - 1)] = head;
    q->next_avail++;
    q->avail->idx = q->next_avail;
    virtio_write(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    u64 ram = p ? p->arg[0] : 16ul << 20;
    if (virtio_probe(&dev, 0, VIRTIO_ID_RNG) < 0) return 1;
    struct virtq *q = &dev.vq[0];

    /* 1. split: 0 -> 1 -> 0 -> ... */
    if (start(0)) return 2;
    q->desc[0] = (struct virtq_desc){(u64)good, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1};
    q->desc[1] = (struct virtq_desc){(u64)good + 8, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0};
    post_raw_split(q, 0);
    expect_reset("hostile.loop", 0);

    /* 2. split: a buffer 1 GiB past the end of RAM. */
    q->desc[0] = (struct virtq_desc){ram + (1ul << 30), 16, VRING_DESC_F_WRITE, 0};
    post_raw_split(q, 0);
    expect_reset("hostile.outside-ram", 0);

    /* 3. split: 64 bytes from 8 below the end of RAM; the 8 inside must stay as they were. */
    volatile u64 *canary = (volatile u64 *)(ram - 8);
    *canary = 0x0123456789abcdefull;
    q->desc[0] = (struct virtq_desc){ram - 8, 64, VRING_DESC_F_WRITE, 0};
    post_raw_split(q, 0);
    expect_reset("hostile.straddle", 0);
    report_value("hostile.canary", *canary);

    /* 4. split: avail idx 100 ahead of an 8-entry queue. */
    q->desc[0] = (struct virtq_desc){(u64)good, 16, VRING_DESC_F_WRITE, 0};
    q->avail->idx = 100;
    virtio_write(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    expect_reset("hostile.index-jump", 0);

    /* 5. packed: every slot chained to the next, the last one too. */
    if (start(1)) return 3;
    for (int i = 0; i < 8; i++) {
        q->pdesc[i].addr = (u64)good;
        q->pdesc[i].len = 2;
        q->pdesc[i].id = 0;
        q->pdesc[i].flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT | VRING_PACKED_DESC_F_AVAIL;
    }
    virtio_write(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    expect_reset("hostile.packed-too-long", 1);
    return 0;
}
