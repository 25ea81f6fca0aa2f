/* virtio-blk-ro: a disk attached read-only offers VIRTIO_BLK_F_RO; a write is refused with
   VIRTIO_BLK_S_IOERR, a read works (the guest reports the hash of what it read), FLUSH succeeds.
   Params: arg[0] = 1 for a packed ring. */
#include "virtio.h"

struct blk_req_hdr {
    u32 type;
    u32 ioprio;
    u64 sector;
};

#define BYTES 4096
static u8 data[BYTES] __attribute__((aligned(4096)));
static struct blk_req_hdr hdr __attribute__((aligned(16)));
static volatile u8 status;
static struct virtio_dev dev;

static u64 hash_user(u64 arg) {
    const u64 *w = (const u64 *)arg;
    u64 h = 0xcbf29ce484222325ull;
    for (int i = 0; i < BYTES / 8; i++) h = (h ^ w[i]) * 0x100000001b3ull;
    return h;
}
static u64 fill_user(u64 arg) {
    u64 *w = (u64 *)arg;
    for (int i = 0; i < BYTES / 8; i++) w[i] = 0xdeadbeefcafef00dull ^ (u64)i;
    return 0;
}

static int request(u32 type, u64 sector, u32 len, u32 *used) {
    struct virtq *q = &dev.vq[0];
    hdr.type = type;
    hdr.sector = sector;
    status = 0xff;
    struct vbuf b[3];
    int n = 0;
    b[n++] = (struct vbuf){&hdr, sizeof hdr, 0};
    if (len) b[n++] = (struct vbuf){data, len, type == 0};
    b[n++] = (struct vbuf){(const void *)&status, 1, 1};
    if (virtq_add(q, b, n) < 0) return 0x100;
    virtq_kick(q);
    if (virtq_wait(q, used) < 0) return 0x101;
    return status;
}

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    int packed = p && p->arg[0] == 1;
    if (virtio_probe(&dev, 0, VIRTIO_ID_BLOCK) < 0) return 1;
    if (virtio_init(&dev, VIRTIO_BIT(5) /* RO */ | VIRTIO_BIT(9) /* FLUSH */ | (packed ? VIRTIO_BIT(VIRTIO_F_RING_PACKED) : 0))) return 2;
    report_value("ro.offered", dev.offered);
    report_value("ro.features", dev.features);
    if (virtq_setup(&dev, 0, 8)) return 3;
    virtio_driver_ok(&dev);
    u32 used = 0;
    run_user(fill_user, (u64)data);
    report_value("ro.write-status", (u64)request(1, 0, BYTES, &used));
    report_value("ro.write-used", used);
    report_value("ro.flush-status", (u64)request(4, 0, 0, &used));
    report_value("ro.read-status", (u64)request(0, 0, BYTES, &used));
    report_value("ro.read-used", used);
    report_value("ro.read-hash", run_user(hash_user, (u64)data));
    report_value("ro.device-status", virtio_status(&dev));
    return 0;
}
