/* virtio-mmio driver for the 64-bit guests: see virtio.h. */
#include "virtio.h"

u64 virtio_poll_limit = 3000000;

/* Ring memory. Page-aligned pieces (more than the 16/4/2-byte alignment the rings need). */
static u8 arena[128 * 4096] __attribute__((aligned(4096)));
static u64 arena_used;

void virtio_arena_reset(void) { arena_used = 0; }

static void *arena_alloc(u64 n) {
    u64 pages = (n + 4095) & ~4095ul;
    if (arena_used + pages > sizeof arena) return 0;
    void *p = arena + arena_used;
    arena_used += pages;
    vzero(p, n);
    return p;
}

const volatile struct virtio_params *virtio_params(void) {
    const volatile struct virtio_params *p = (const volatile struct virtio_params *)VIRTIO_PARAMS_ADDR;
    return p->magic == VIRTIO_PARAMS_MAGIC ? p : 0;
}

/* ---- device ---- */

u32 virtio_status(struct virtio_dev *d) { return virtio_read(d, VIRTIO_MMIO_STATUS); }
void virtio_set_status(struct virtio_dev *d, u32 s) { virtio_write(d, VIRTIO_MMIO_STATUS, s); }

int virtio_probe(struct virtio_dev *d, int index, u32 want_id) {
    static int mapped;
    if (!mapped) {
        /* One uncached 2 MiB page holds all 512 possible windows. */
        map_mmio_2m(VIRTIO_MMIO_BASE);
        mapped = 1;
    }
    /* Only the device part: queues are initialised by virtq_setup (zeroing them all costs ms). */
    vzero(d, (u64)((u8 *)&d->vq[0] - (u8 *)d));
    for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) d->vq[i].live = 0;
    d->index = index;
    d->base = VIRTIO_MMIO_BASE + (u64)index * VIRTIO_MMIO_STRIDE;
    d->gsi = VIRTIO_GSI_BASE + index;
    if (virtio_read(d, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC) return VIRTIO_E_NODEV;
    if (virtio_read(d, VIRTIO_MMIO_VERSION) != 2) return VIRTIO_E_VERSION;
    d->device_id = virtio_read(d, VIRTIO_MMIO_DEVICE_ID);
    if (want_id != 0 && d->device_id != want_id) return VIRTIO_E_ID;
    return (int)d->device_id;
}

void virtio_reset(struct virtio_dev *d) {
    virtio_set_status(d, 0);
    /* §4.2.3.1: the reset is complete when status reads back 0. */
    for (int i = 0; i < 1000 && virtio_status(d) != 0; i++) __asm__ volatile("pause");
    for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) d->vq[i].live = 0;
}

int virtio_init(struct virtio_dev *d, u64 want) {
    virtio_reset(d);
    virtio_set_status(d, VIRTIO_S_ACKNOWLEDGE);
    virtio_set_status(d, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
    virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    u64 lo = virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
    virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    u64 hi = virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
    d->offered = hi << 32 | lo;
    if (!(d->offered & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
        virtio_set_status(d, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FAILED);
        return VIRTIO_E_FEATURES;
    }
    u64 acc = d->offered & (want | VIRTIO_BIT(VIRTIO_F_VERSION_1));
    virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)acc);
    virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)(acc >> 32));
    virtio_set_status(d, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
    if (!(virtio_status(d) & VIRTIO_S_FEATURES_OK)) {
        virtio_set_status(d, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FAILED);
        return VIRTIO_E_FEATURES;
    }
    d->features = acc;
    return 0;
}

void virtio_driver_ok(struct virtio_dev *d) {
    virtio_set_status(d, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
}

u32 virtio_ack(struct virtio_dev *d) {
    u32 s = virtio_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
    if (s) virtio_write(d, VIRTIO_MMIO_INTERRUPT_ACK, s);
    return s;
}

u64 virtio_cfg64(struct virtio_dev *d, u32 off) {
    u32 gen, lo, hi;
    do {
        gen = virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
        lo = virtio_cfg32(d, off);
        hi = virtio_cfg32(d, off + 4);
    } while (gen != virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION));
    return (u64)hi << 32 | lo;
}

/* ---- interrupts ---- */

static struct virtio_dev *vector_dev[IDT_ENTRIES];

static void virtio_irq(struct frame *f) {
    struct virtio_dev *d = vector_dev[f->vector];
    if (d) {
        d->irq_count++;
        /* Acknowledge before the EOI: the line is level-triggered and would fire again. */
        d->isr_seen |= virtio_ack(d);
    }
    lapic_eoi();
}

void ioapic_route_level(int gsi, int vector, int dest_apic) {
    ioapic_route(gsi, vector, dest_apic); /* maps the IOAPIC, sets the destination */
    mmio_write32(IOAPIC_BASE, 0x10 + 2 * (u32)gsi);
    mmio_write32(IOAPIC_BASE + 0x10, (u32)vector | 1u << 15); /* level, active high, unmasked */
}

void virtio_enable_irq(struct virtio_dev *d, int vector) {
    d->vector = vector;
    vector_dev[vector] = d;
    set_irq_handler(vector, virtio_irq);
    lapic_enable();
    ioapic_route_level(d->gsi, vector, cpu_apic_id());
}

/* ---- queues ---- */

int virtq_setup(struct virtio_dev *d, int qi, u16 size) {
    if (qi < 0 || qi >= VIRTIO_MAX_QUEUES || size == 0 || size > VIRTQ_MAX || (size & (size - 1))) return VIRTIO_E_QUEUE;
    struct virtq *q = &d->vq[qi];
    virtio_write(d, VIRTIO_MMIO_QUEUE_SEL, (u32)qi);
    if (virtio_read(d, VIRTIO_MMIO_QUEUE_READY) != 0) return VIRTIO_E_QUEUE;
    if (virtio_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX) < size) return VIRTIO_E_QUEUE;
    int packed = (d->features & VIRTIO_BIT(VIRTIO_F_RING_PACKED)) != 0;
    u64 ring = 16ul * size, drv, dev, total;
    if (packed) {
        drv = ring;
        dev = ring + 4;
        total = ring + 8;
    } else {
        drv = ring;
        dev = (drv + 6 + 2ul * size + 3) & ~3ul;
        total = dev + 6 + 8ul * size;
    }
    u8 *mem = arena_alloc(total);
    if (!mem) return VIRTIO_E_NOMEM;

    q->dev = d;
    q->index = (u16)qi;
    q->size = size;
    q->packed = (u8)packed;
    q->event_idx = (d->features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) != 0;
    q->num_free = size;
    q->next_avail = q->last_used = q->kicked_avail = 0;
    q->avail_wrap = q->used_wrap = 1;
    q->kicks = q->kicks_skipped = 0;
    if (packed) {
        q->pdesc = (volatile struct vring_packed_desc *)mem;
        q->driver_event = (volatile struct vring_packed_event *)(mem + drv);
        q->device_event = (volatile struct vring_packed_event *)(mem + dev);
        for (u16 i = 0; i < size; i++) q->ids[i] = (u16)(size - 1 - i);
        q->n_ids = size;
        if (q->event_idx) {
            /* Interrupt me when slot 0 of the first lap is used. */
            q->driver_event->off_wrap = 1u << 15;
            q->driver_event->flags = VRING_PACKED_EVENT_FLAG_DESC;
        }
    } else {
        q->desc = (volatile struct virtq_desc *)mem;
        q->avail = (volatile struct virtq_avail *)(mem + drv);
        q->used = (volatile struct virtq_used *)(mem + dev);
        for (u16 i = 0; i < size; i++) q->desc[i].next = (u16)(i + 1);
        q->free_head = 0;
    }
    u64 a_desc = (u64)mem, a_drv = (u64)mem + drv, a_dev = (u64)mem + dev;
    virtio_write(d, VIRTIO_MMIO_QUEUE_NUM, size);
    virtio_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)a_desc);
    virtio_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (u32)(a_desc >> 32));
    virtio_write(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u32)a_drv);
    virtio_write(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (u32)(a_drv >> 32));
    virtio_write(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u32)a_dev);
    virtio_write(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (u32)(a_dev >> 32));
    virtio_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
    q->live = 1;
    return 0;
}

static int post_split(struct virtq *q, const struct vbuf *b, int n, u16 extra) {
    if (n < 1 || n > q->num_free) return VIRTIO_E_FULL;
    u16 head = q->free_head, i = head;
    for (int k = 0; k < n; k++) {
        volatile struct virtq_desc *d = &q->desc[i];
        d->addr = (u64)b[k].addr;
        d->len = b[k].len;
        d->flags = (u16)((b[k].write ? VRING_DESC_F_WRITE : 0) | (k + 1 < n ? VRING_DESC_F_NEXT : 0) | extra);
        /* `next` already links the free list, which is the chain's order: keep it. */
        i = d->next;
    }
    q->free_head = i;
    q->num_free = (u16)(q->num_free - n);
    q->chain_len[head] = (u16)n;
    q->avail->ring[q->next_avail & (q->size - 1)] = head;
    __asm__ volatile("" ::: "memory"); /* x86 keeps stores in order: the entry before the index */
    q->next_avail++;
    q->avail->idx = q->next_avail;
    return head;
}

static int post_packed(struct virtq *q, const struct vbuf *b, int n, u16 extra) {
    if (n < 1 || n > q->num_free || q->n_ids == 0) return VIRTIO_E_FULL;
    u16 id = q->ids[--q->n_ids];
    u16 slot = q->next_avail, first = slot, first_flags = 0;
    u8 wrap = q->avail_wrap;
    for (int k = 0; k < n; k++) {
        volatile struct vring_packed_desc *d = &q->pdesc[slot];
        u16 f = (u16)((b[k].write ? VRING_DESC_F_WRITE : 0) | (k + 1 < n ? VRING_DESC_F_NEXT : 0) | extra);
        f |= wrap ? VRING_PACKED_DESC_F_AVAIL : VRING_PACKED_DESC_F_USED;
        d->addr = (u64)b[k].addr;
        d->len = b[k].len;
        d->id = id;
        if (k == 0) first_flags = f;
        else d->flags = f;
        if (++slot == q->size) {
            slot = 0;
            wrap ^= 1;
        }
    }
    /* §2.8.21: the head's flags go last, so the device never sees half a chain. */
    __asm__ volatile("" ::: "memory");
    q->pdesc[first].flags = first_flags;
    q->next_avail = slot;
    q->avail_wrap = wrap;
    q->num_free = (u16)(q->num_free - n);
    q->chain_len[id] = (u16)n;
    return id;
}

int virtq_add(struct virtq *q, const struct vbuf *b, int n) {
    return q->packed ? post_packed(q, b, n, 0) : post_split(q, b, n, 0);
}

int virtq_add_indirect(struct virtq *q, const struct vbuf *b, int n, void *table) {
    if (q->packed) {
        volatile struct vring_packed_desc *t = table;
        for (int k = 0; k < n; k++) {
            t[k].addr = (u64)b[k].addr;
            t[k].len = b[k].len;
            t[k].id = 0;
            t[k].flags = b[k].write ? VRING_DESC_F_WRITE : 0;
        }
    } else {
        volatile struct virtq_desc *t = table;
        for (int k = 0; k < n; k++) {
            t[k].addr = (u64)b[k].addr;
            t[k].len = b[k].len;
            t[k].flags = (u16)((b[k].write ? VRING_DESC_F_WRITE : 0) | (k + 1 < n ? VRING_DESC_F_NEXT : 0));
            t[k].next = (u16)(k + 1);
        }
    }
    struct vbuf one = {table, (u32)(16 * n), 0};
    return q->packed ? post_packed(q, &one, 1, VRING_DESC_F_INDIRECT) : post_split(q, &one, 1, VRING_DESC_F_INDIRECT);
}

void virtq_kick(struct virtq *q) {
    /* The avail update must be visible before we read the device's suppression fields. */
    vmb();
    int need;
    if (q->packed) {
        /* With EVENT_FLAG_DESC a kick may be more than needed, never fewer. */
        need = q->device_event->flags != VRING_PACKED_EVENT_FLAG_DISABLE;
    } else if (q->event_idx) {
        u16 ev = ((volatile u16 *)q->used)[2 + 4 * q->size]; /* avail_event, after the ring */
        u16 now = q->next_avail, old = q->kicked_avail;
        need = (u16)(now - ev - 1) < (u16)(now - old);
    } else {
        need = !(q->used->flags & VRING_USED_F_NO_NOTIFY);
    }
    q->kicked_avail = q->next_avail;
    if (need) {
        q->kicks++;
        virtio_write(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
    } else {
        q->kicks_skipped++;
    }
}

static inline int has_used(struct virtq *q) {
    if (q->packed) {
        u16 f = q->pdesc[q->last_used].flags;
        int a = (f & VRING_PACKED_DESC_F_AVAIL) != 0, u = (f & VRING_PACKED_DESC_F_USED) != 0;
        return a == u && u == q->used_wrap;
    }
    return q->used->idx != q->last_used;
}

int virtq_has_used(struct virtq *q) { return has_used(q); }

int virtq_get(struct virtq *q, u32 *len) {
    if (!has_used(q)) return -1;
    __asm__ volatile("" ::: "memory"); /* loads stay in order on x86: the element after the index */
    int id;
    if (q->packed) {
        volatile struct vring_packed_desc *d = &q->pdesc[q->last_used];
        id = d->id;
        if (len) *len = d->len;
        u16 n = q->chain_len[id];
        q->last_used = (u16)(q->last_used + n);
        if (q->last_used >= q->size) {
            q->last_used = (u16)(q->last_used - q->size);
            q->used_wrap ^= 1;
        }
        q->num_free = (u16)(q->num_free + n);
        q->ids[q->n_ids++] = (u16)id;
        if (q->event_idx) {
            q->driver_event->off_wrap = (u16)(q->last_used | (u16)q->used_wrap << 15);
            vmb(); /* published before the caller looks at the ring again */
        }
    } else {
        volatile struct virtq_used_elem *e = &q->used->ring[q->last_used & (q->size - 1)];
        id = (int)e->id;
        if (len) *len = e->len;
        u16 n = q->chain_len[id], last = (u16)id;
        for (u16 k = 1; k < n; k++) last = q->desc[last].next;
        q->desc[last].next = q->free_head;
        q->free_head = (u16)id;
        q->num_free = (u16)(q->num_free + n);
        q->last_used++;
        if (q->event_idx) {
            q->avail->ring[q->size] = q->last_used; /* used_event: interrupt at the next one */
            vmb(); /* published before the caller looks at used->idx again */
        }
    }
    return id;
}

int virtq_wait(struct virtq *q, u32 *len) {
    int id;
    if (q->dev->vector) {
        /* Check with interrupts off, then `sti; hlt`: a completion in between still wakes us. */
        cli();
        while ((id = virtq_get(q, len)) < 0) {
            sti_hlt();
            cli();
        }
        return id;
    }
    for (u64 i = 0; i < virtio_poll_limit; i++) {
        if (has_used(q)) return virtq_get(q, len);
        __asm__ volatile("pause");
    }
    return VIRTIO_E_TIMEOUT;
}
