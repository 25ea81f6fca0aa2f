/* virtio-rng: the guest reads 32 bytes from the OS CSPRNG through a split ring (polling) and
   reports them; the test checks that two runs differ. Params: arg[0] = 1 to use a packed ring. */
#include "virtio.h"

static u8 buf[32] __attribute__((aligned(64)));

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    int packed = p && p->arg[0] == 1;
    struct virtio_dev d;
    int id = virtio_probe(&d, 0, VIRTIO_ID_RNG);
    report_value("rng.device-id", (u64)(i64)id);
    if (id < 0) return 1;
    int r = virtio_init(&d, packed ? VIRTIO_BIT(VIRTIO_F_RING_PACKED) : 0);
    report_value("rng.features", d.features);
    if (r) return 2;
    if (virtq_setup(&d, 0, 8)) return 3;
    virtio_driver_ok(&d);
    report_value("rng.status", virtio_status(&d));
    u64 t0 = rdtsc();
    struct vbuf b = {buf, sizeof buf, 1};
    int tok = virtq_add(&d.vq[0], &b, 1);
    virtq_kick(&d.vq[0]);
    u32 len = 0;
    int got = virtq_wait(&d.vq[0], &len);
    u64 t1 = rdtsc();
    report_value("rng.token-match", got == tok);
    report_value("rng.len", len);
    for (int i = 0; i < 4; i++) report_value("rng.word", ((volatile u64 *)buf)[i]);
    report_value("rng.tsc", t1 - t0);
    return 0;
}
