/* A small virtio-mmio (version 2) driver for the 64-bit test guests: probe, negotiate, split and
   packed queues in identity-mapped guest memory, chains, kicks, polling or the device's
   level-triggered IOAPIC interrupt. Facts from the virtio 1.2 specification (§2.7 split, §2.8
   packed, §4.2.2 virtio-mmio). Everything here runs at CPL0, where each instruction is emulated on
   PVM hosts: data is moved in a few large descriptors, never touched byte by byte. */
#ifndef TSVMM_VIRTIO_H
#define TSVMM_VIRTIO_H

#include "tsvmm.h"

/* Where tsvmm's VmmBuilder puts device i (in attach order): window and IOAPIC pin. */
#define VIRTIO_MMIO_BASE 0xd0000000ul
#define VIRTIO_MMIO_STRIDE 0x1000ul
#define VIRTIO_GSI_BASE 16

/* Register offsets (§4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100
#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */

/* Device status (§2.1). */
#define VIRTIO_S_ACKNOWLEDGE 1
#define VIRTIO_S_DRIVER 2
#define VIRTIO_S_DRIVER_OK 4
#define VIRTIO_S_FEATURES_OK 8
#define VIRTIO_S_NEEDS_RESET 0x40
#define VIRTIO_S_FAILED 0x80

/* Interrupt status bits. */
#define VIRTIO_INT_VRING 1
#define VIRTIO_INT_CONFIG 2

/* Feature bits (numbers). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_RING_PACKED 34
#define VIRTIO_BIT(n) (1ull << (n))

/* Device ids. */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_VSOCK 19

/* Descriptor flags. */
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_PACKED_DESC_F_AVAIL (1u << 7)
#define VRING_PACKED_DESC_F_USED (1u << 15)
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_PACKED_EVENT_FLAG_ENABLE 0
#define VRING_PACKED_EVENT_FLAG_DISABLE 1
#define VRING_PACKED_EVENT_FLAG_DESC 2

struct virtq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};
struct virtq_avail {
    u16 flags;
    u16 idx;
    u16 ring[]; /* then used_event */
};
struct virtq_used_elem {
    u32 id;
    u32 len;
};
struct virtq_used {
    u16 flags;
    u16 idx;
    struct virtq_used_elem ring[]; /* then avail_event */
};
struct vring_packed_desc {
    u64 addr;
    u32 len;
    u16 id;
    u16 flags;
};
struct vring_packed_event {
    u16 off_wrap;
    u16 flags;
};

/* Driver errors (negative returns). */
enum {
    VIRTIO_E_NODEV = -1,    /* no magic at the window */
    VIRTIO_E_VERSION = -2,  /* not version 2 */
    VIRTIO_E_ID = -3,       /* another device id than asked for */
    VIRTIO_E_FEATURES = -4, /* VERSION_1 missing, or FEATURES_OK did not stick */
    VIRTIO_E_QUEUE = -5,    /* queue absent, too small, or already live */
    VIRTIO_E_NOMEM = -6,    /* the ring arena is used up */
    VIRTIO_E_FULL = -7,     /* no free descriptors / buffer ids */
    VIRTIO_E_TIMEOUT = -8,
};

/* One buffer of a chain: guest-physical (= virtual) address, length, device-writable or not. */
struct vbuf {
    const void *addr;
    u32 len;
    u32 write;
};

#define VIRTQ_MAX 256
#define VIRTIO_MAX_QUEUES 3

struct virtio_dev;
struct virtq {
    struct virtio_dev *dev;
    u16 index, size;
    u8 packed, event_idx, live;
    /* split */
    volatile struct virtq_desc *desc;
    volatile struct virtq_avail *avail;
    volatile struct virtq_used *used;
    /* packed */
    volatile struct vring_packed_desc *pdesc;
    volatile struct vring_packed_event *driver_event, *device_event;
    /* split: head of the free-descriptor list (linked through `next`); packed: unused */
    u16 free_head;
    u16 num_free;
    /* split: our avail idx; packed: next slot to fill */
    u16 next_avail;
    /* split: used idx consumed so far; packed: next slot to look at */
    u16 last_used;
    u8 avail_wrap, used_wrap;
    /* split: avail idx at the last kick (event-idx decides on the range since) */
    u16 kicked_avail;
    /* packed: free buffer ids */
    u16 n_ids;
    u16 ids[VIRTQ_MAX];
    /* descriptors per chain, by head (split) or buffer id (packed) */
    u16 chain_len[VIRTQ_MAX];
    /* statistics: kicks written, kicks the device's suppression let us skip */
    u32 kicks, kicks_skipped;
};

struct virtio_dev {
    u64 base;
    int index, gsi;
    u32 device_id;
    u64 offered, features;
    int vector;              /* IDT vector when interrupts are on, else 0 (polling) */
    volatile u32 irq_count;  /* interrupts the default handler took */
    volatile u32 isr_seen;   /* InterruptStatus bits it acknowledged, OR-ed */
    struct virtq vq[VIRTIO_MAX_QUEUES];
};

/* ---- device ---- */
/* Map window `index` and check magic, version 2 and (when want_id != 0) the device id.
   Returns the device id, or VIRTIO_E_NODEV / _VERSION / _ID. Leaves the device untouched. */
int virtio_probe(struct virtio_dev *d, int index, u32 want_id);
/* Reset, ACKNOWLEDGE, DRIVER, then accept offered & (want | VERSION_1) and set FEATURES_OK.
   0, or VIRTIO_E_FEATURES (VERSION_1 not offered, or the device refused). d->features = accepted. */
int virtio_init(struct virtio_dev *d, u64 want);
/* Give queue `qi` `size` entries (a power of two, <= QueueNumMax and VIRTQ_MAX) in the format the
   features chose. Ring memory comes from a lib arena; 0 or VIRTIO_E_*. */
int virtq_setup(struct virtio_dev *d, int qi, u16 size);
void virtio_driver_ok(struct virtio_dev *d);
/* Status 0: the device forgets every queue; d's queues are marked dead (set them up again). */
void virtio_reset(struct virtio_dev *d);
u32 virtio_status(struct virtio_dev *d);
void virtio_set_status(struct virtio_dev *d, u32 s);
/* Read InterruptStatus and acknowledge exactly those bits; returns them. */
u32 virtio_ack(struct virtio_dev *d);

static inline u32 virtio_read(struct virtio_dev *d, u32 reg) { return mmio_read32(d->base + reg); }
static inline void virtio_write(struct virtio_dev *d, u32 reg, u32 v) { mmio_write32(d->base + reg, v); }
static inline u8 virtio_cfg8(struct virtio_dev *d, u32 off) { return mmio_read8(d->base + VIRTIO_MMIO_CONFIG + off); }
static inline u16 virtio_cfg16(struct virtio_dev *d, u32 off) { return mmio_read16(d->base + VIRTIO_MMIO_CONFIG + off); }
static inline u32 virtio_cfg32(struct virtio_dev *d, u32 off) { return mmio_read32(d->base + VIRTIO_MMIO_CONFIG + off); }
/* A 64-bit field as two 32-bit reads, retried while the config generation moves (§4.2.2.2). */
u64 virtio_cfg64(struct virtio_dev *d, u32 off);

/* ---- interrupts ---- */
/* Route the device's GSI to `vector` on this CPU, level-triggered active-high (as the VMM wires
   it), with the default handler: count, acknowledge InterruptStatus, EOI. Waits then halt. */
void virtio_enable_irq(struct virtio_dev *d, int vector);
/* The IOAPIC redirection entry itself (level, active-high, fixed, physical, unmasked). */
void ioapic_route_level(int gsi, int vector, int dest_apic);

/* ---- queues ---- */
/* Post one chain (readable buffers first, then writable). Returns its token (split: head index,
   packed: buffer id) or VIRTIO_E_FULL. Does not notify. */
int virtq_add(struct virtq *q, const struct vbuf *b, int n);
/* The same chain through one indirect descriptor pointing at `table` (n * 16 bytes, 16-aligned,
   the caller's memory; needs VIRTIO_F_INDIRECT_DESC). */
int virtq_add_indirect(struct virtq *q, const struct vbuf *b, int n, void *table);
/* QueueNotify, unless the device asked not to be notified (flags or event index). */
void virtq_kick(struct virtq *q);
/* Is a used chain waiting? (No side effects.) */
int virtq_has_used(struct virtq *q);
/* One used chain if there is one: its token, with *len = bytes the device wrote; else -1. */
int virtq_get(struct virtq *q, u32 *len);
/* Like virtq_get, but waits: halts for the interrupt when the device has one, else polls
   (about `virtio_poll_limit` rounds). VIRTIO_E_TIMEOUT when nothing came. */
int virtq_wait(struct virtq *q, u32 *len);
extern u64 virtio_poll_limit;

/* ---- helpers ---- */
/* Lay out ring memory afresh (after every device that used it is reset). */
void virtio_arena_reset(void);
/* rep stos / rep movs, 8 bytes per step: the emulator still takes each step separately (about a
   microsecond each on PVM), so zero or copy large buffers at CPL3 (run_user) instead. */
static inline void vzero(void *d, u64 n) {
    u64 q = n / 8, r = n % 8;
    __asm__ volatile("rep stosq" : "+D"(d), "+c"(q) : "a"(0) : "memory");
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(r) : "a"(0) : "memory");
}
static inline void vcopy(void *d, const void *s, u64 n) {
    u64 q = n / 8, r = n % 8;
    __asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(q) : : "memory");
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(r) : : "memory");
}
/* Full fence that the PVM emulator runs at CPL0 (a locked read-modify-write). */
static inline void vmb(void) { __asm__ volatile("lock orl $0, (%%rsp)" ::: "memory", "cc"); }

/* ---- test parameters: the host writes them at guest-physical 0x6000 ---- */
#define VIRTIO_PARAMS_ADDR 0x6000ul
#define VIRTIO_PARAMS_MAGIC 0x736d7261706f6976ull /* "vioparms" */
struct virtio_params {
    u64 magic;
    u64 arg[15];
};
/* The host's block if it wrote one, else NULL (then a case runs with its defaults). */
const volatile struct virtio_params *virtio_params(void);

#endif
