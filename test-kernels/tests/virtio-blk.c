/* virtio-blk: GET_ID, then (optionally) read a region back and check it against the pattern an
   earlier VM wrote, then write a fresh xorshift pattern there, FLUSH, and read it back; and one
   read past the end, which must fail with IOERR. Patterns are made and checked at CPL3 (native
   speed); CPL0 only moves descriptors, so 1 MiB goes in one data descriptor.
   Params (lib/virtio.h block at 0x6000), all optional (the CLI run has none):
     arg[0] flags: 1 packed ring, 2 EVENT_IDX, 4 interrupt (else polling), 8 indirect descriptors
     arg[1] seed of the pattern to verify first (0: none)   arg[2] seed to write (0: none)
     arg[3] first sector                                     arg[4] bytes (multiple of 512, <= 1 MiB)
     arg[5] timed reads of the region after the rest (blk.bench-start / blk.bench-done) */
#include "virtio.h"

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define MAX_BYTES (1u << 20)

struct blk_req_hdr {
    u32 type;
    u32 ioprio;
    u64 sector;
};

static u8 wbuf[MAX_BYTES] __attribute__((aligned(4096)));
static u8 rbuf[MAX_BYTES] __attribute__((aligned(4096)));
static struct blk_req_hdr hdr __attribute__((aligned(16)));
static volatile u8 status;
static u8 idbuf[20];
static struct virtq_desc table[4] __attribute__((aligned(16)));

/* ---- CPL3 work ---- */
struct job {
    u64 *buf;
    u64 words;
    u64 seed;
};
static struct job job;

static inline u64 next_word(u64 *s) {
    u64 x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static u64 fill_user(u64 arg) {
    struct job *j = (struct job *)arg;
    u64 s = j->seed;
    for (u64 i = 0; i < j->words; i++) j->buf[i] = next_word(&s);
    return 0;
}
static u64 mismatches_user(u64 arg) {
    struct job *j = (struct job *)arg;
    u64 s = j->seed, bad = 0;
    for (u64 i = 0; i < j->words; i++) bad += j->buf[i] != next_word(&s);
    return bad;
}
static u64 zero_user(u64 arg) {
    struct job *j = (struct job *)arg;
    for (u64 i = 0; i < j->words; i++) j->buf[i] = 0;
    return 0;
}
static u64 hash_user(u64 arg) {
    struct job *j = (struct job *)arg;
    u64 h = 0xcbf29ce484222325ull;
    for (u64 i = 0; i < j->words; i++) h = (h ^ j->buf[i]) * 0x100000001b3ull;
    return h;
}
static u64 on_user(u64 (*fn)(u64), u8 *buf, u64 bytes, u64 seed) {
    job.buf = (u64 *)buf;
    job.words = bytes / 8;
    job.seed = seed;
    return run_user(fn, (u64)&job);
}

/* ---- requests ---- */
static struct virtio_dev dev;
static int use_indirect;

/* One request: header, optional data (device-readable for OUT, writable for IN), status byte.
   Returns the status, or 0x100 + error; *used = bytes the device reported written. */
static int request(u32 type, u64 sector, void *data, u32 len, u32 *used) {
    struct virtq *q = &dev.vq[0];
    hdr.type = type;
    hdr.ioprio = 0;
    hdr.sector = sector;
    status = 0xff;
    struct vbuf b[3];
    int n = 0;
    b[n++] = (struct vbuf){&hdr, sizeof hdr, 0};
    if (len) b[n++] = (struct vbuf){data, len, type != BLK_T_OUT};
    b[n++] = (struct vbuf){(const void *)&status, 1, 1};
    int tok = use_indirect ? virtq_add_indirect(q, b, n, table) : virtq_add(q, b, n);
    if (tok < 0) return 0x100 - tok;
    virtq_kick(q);
    int got = virtq_wait(q, used);
    if (got < 0) return 0x100 - got;
    if (got != tok) return 0x1ff;
    return status;
}

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    u64 flags = p ? p->arg[0] : 0;
    u64 verify_seed = p ? p->arg[1] : 0;
    u64 write_seed = p ? p->arg[2] : 0x5eed5eed12345678ull;
    u64 sector = p ? p->arg[3] : 8;
    u64 bytes = p ? p->arg[4] : 65536;
    if (bytes > MAX_BYTES || bytes % 512) return 9;
    use_indirect = (flags & 8) != 0;

    if (virtio_probe(&dev, 0, VIRTIO_ID_BLOCK) < 0) return 1;
    u64 want = (flags & 1 ? VIRTIO_BIT(VIRTIO_F_RING_PACKED) : 0) | (flags & 2 ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0) |
               (flags & 8 ? VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) : 0) | VIRTIO_BIT(9) /* FLUSH */;
    if (virtio_init(&dev, want)) return 2;
    report_value("blk.features", dev.features);
    report_value("blk.capacity", virtio_cfg64(&dev, 0));
    report_value("blk.blk-size", virtio_cfg32(&dev, 20));
    if (virtq_setup(&dev, 0, 16)) return 3;
    if (flags & 4) virtio_enable_irq(&dev, 0x31);
    virtio_driver_ok(&dev);

    /* Anything but the expected outcome counts, so the EXIT code alone tells (the CLI run). */
    int failures = 0;
    u32 used = 0;
    int s = request(BLK_T_GET_ID, 0, idbuf, sizeof idbuf, &used);
    failures += s != 0;
    report_value("blk.get-id-status", (u64)s);
    report_value("blk.get-id-used", used);
    printf("blk.id=%s\n", (const char *)idbuf);

    if (verify_seed) {
        on_user(zero_user, rbuf, bytes, 0);
        s = request(BLK_T_IN, sector, rbuf, (u32)bytes, &used);
        u64 bad = on_user(mismatches_user, rbuf, bytes, verify_seed);
        failures += s != 0 || bad != 0;
        report_value("blk.verify-status", (u64)s);
        report_value("blk.verify-used", used);
        report_value("blk.verify-mismatches", bad);
        report_value("blk.verify-hash", on_user(hash_user, rbuf, bytes, 0));
    }
    if (write_seed) {
        on_user(fill_user, wbuf, bytes, write_seed);
        report_value("blk.write-start", bytes);
        s = request(BLK_T_OUT, sector, wbuf, (u32)bytes, &used);
        report_value("blk.write-done", bytes);
        failures += s != 0;
        report_value("blk.write-status", (u64)s);
        report_value("blk.write-used", used);
        s = request(BLK_T_FLUSH, 0, 0, 0, &used);
        failures += s != 0;
        report_value("blk.flush-status", (u64)s);
        report_value("blk.flushed", 1); /* the host reads the file now */
        on_user(zero_user, rbuf, bytes, 0);
        report_value("blk.read-start", bytes);
        s = request(BLK_T_IN, sector, rbuf, (u32)bytes, &used);
        report_value("blk.read-done", bytes);
        u64 bad = on_user(mismatches_user, rbuf, bytes, write_seed);
        failures += s != 0 || bad != 0;
        report_value("blk.read-status", (u64)s);
        report_value("blk.read-used", used);
        report_value("blk.readback-mismatches", bad);
    }
    u64 rounds = p ? p->arg[5] : 0;
    if (rounds) {
        report_value("blk.bench-start", rounds);
        for (u64 k = 0; k < rounds; k++) failures += request(BLK_T_IN, sector, rbuf, (u32)bytes, &used) != 0;
        report_value("blk.bench-done", rounds);
    }
    u64 cap = virtio_cfg64(&dev, 0);
    s = request(BLK_T_IN, cap, rbuf, 512, &used);
    failures += s != 1; /* VIRTIO_BLK_S_IOERR */
    report_value("blk.past-end-status", (u64)s);
    report_value("blk.irqs", dev.irq_count);
    report_value("blk.kicks", dev.vq[0].kicks);
    printf("virtio-blk: %d failures\n", failures);
    return failures ? 0x40 + failures : 0;
}
