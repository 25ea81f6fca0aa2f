/* virtio-vsock: two stream connections in Firecracker's hybrid model, each carrying more data
   than one credit window in both directions.
   1. The guest connects to host port arg[1] (the host listens on `${uds}_${port}`), sends
      arg[0] bytes (a pattern made at CPL3) while reading what the host sends, both ways under
      credit flow control: the device's buf_alloc limits what we send, ours (32 KiB) what it sends.
   2. The guest listens on port arg[2]; the host connects with "CONNECT <port>\n"; same exchange.
   Each side hashes what it received (FNV-1a 32, at CPL3); the test compares with the other end.
   Waits on the device's interrupt. Params: arg[0] bytes to send, arg[1] host port, arg[2] guest
   port, arg[3] pattern seed. */
#include "virtio.h"

#define RXQ 0
#define TXQ 1
#define EVQ 2
#define HOST_CID 2
#define TYPE_STREAM 1
enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST };
#define SHUT_RCV 1
#define SHUT_SEND 2

struct vsock_hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

#define RX_BUFS 4
#define RX_DATA 16384
#define BUF_ALLOC 32768 /* our receive window: the host must wait for our credit updates */
#define TX_SLOTS 8
#define TX_CHUNK 32768
#define MAX_TX (768u << 10)

static struct virtio_dev dev;
static struct vsock_hdr rx_hdr[RX_BUFS];
static u8 rx_data[RX_BUFS][RX_DATA] __attribute__((aligned(4096)));
static int rx_of_token[VIRTQ_MAX];
static struct vsock_hdr tx_hdr[TX_SLOTS];
static u8 tx_data[MAX_TX] __attribute__((aligned(4096)));
static u8 ev_buf[8];
static u64 guest_cid;
static u32 tx_seq, tx_inflight;

struct conn {
    u32 local_port, peer_port;
    int listening, connecting, established, peer_shutdown, shutdown_sent, rst;
    u64 to_send, sent;
    u32 tx_cnt, peer_buf_alloc, peer_fwd_cnt;
    u32 fwd_cnt, fwd_sent;
    u64 rx_bytes;
    u32 credit_updates_sent, credit_waits;
    u32 rx_window_max; /* most bytes the device had sent past the fwd_cnt we last told it */
};
static struct conn c;

/* ---- CPL3: pattern and FNV-1a 32 (chunk-independent, so per packet) ---- */
struct job {
    const u8 *p;
    u64 n;
    u64 seed;
    u32 h;
};
static struct job job;
static u64 hash_user(u64 arg) {
    struct job *j = (struct job *)arg;
    u32 h = j->h;
    for (u64 i = 0; i < j->n; i++) h = (h ^ j->p[i]) * 16777619u;
    j->h = h;
    return h;
}
static u64 fill_user(u64 arg) {
    struct job *j = (struct job *)arg;
    u64 s = j->seed;
    u8 *p = (u8 *)j->p;
    for (u64 i = 0; i < j->n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        p[i] = (u8)((s * 0x2545F4914F6CDD1Dull) >> 56);
    }
    return 0;
}
static u32 rx_hash;

/* ---- queues ---- */
static void post_rx(int i) {
    struct vbuf b[2] = {{&rx_hdr[i], sizeof rx_hdr[i], 1}, {rx_data[i], RX_DATA, 1}};
    int tok = virtq_add(&dev.vq[RXQ], b, 2);
    if (tok >= 0) rx_of_token[tok] = i;
}

static int reclaim_tx(void) {
    int any = 0;
    u32 len;
    while (virtq_get(&dev.vq[TXQ], &len) >= 0) {
        tx_inflight--;
        any = 1;
    }
    return any;
}

/* Queue one packet to the host; 0, or -1 when every tx slot is in flight. */
static int send_pkt(u16 op, u32 flags, const void *data, u32 len) {
    reclaim_tx();
    if (tx_inflight == TX_SLOTS) return -1;
    struct vsock_hdr *h = &tx_hdr[tx_seq % TX_SLOTS];
    h->src_cid = guest_cid;
    h->dst_cid = HOST_CID;
    h->src_port = c.local_port;
    h->dst_port = c.peer_port;
    h->len = len;
    h->type = TYPE_STREAM;
    h->op = op;
    h->flags = flags;
    h->buf_alloc = BUF_ALLOC;
    h->fwd_cnt = c.fwd_cnt;
    struct vbuf b[2] = {{h, sizeof *h, 0}, {data, len, 0}};
    if (virtq_add(&dev.vq[TXQ], b, len ? 2 : 1) < 0) return -1;
    c.fwd_sent = c.fwd_cnt; /* every header carries our credit */
    tx_seq++;
    tx_inflight++;
    virtq_kick(&dev.vq[TXQ]);
    return 0;
}

static void on_packet(struct vsock_hdr *h, const u8 *data) {
    if (h->src_cid != HOST_CID || h->dst_cid != guest_cid || h->type != TYPE_STREAM) return;
    if (c.listening && h->op == OP_REQUEST && h->dst_port == c.local_port && !c.established) {
        c.peer_port = h->src_port;
        c.peer_buf_alloc = h->buf_alloc;
        c.peer_fwd_cnt = h->fwd_cnt;
        c.listening = 0;
        c.established = 1;
        send_pkt(OP_RESPONSE, 0, 0, 0);
        return;
    }
    if (h->dst_port != c.local_port || h->src_port != c.peer_port) return;
    c.peer_buf_alloc = h->buf_alloc;
    c.peer_fwd_cnt = h->fwd_cnt;
    switch (h->op) {
    case OP_RESPONSE:
        if (c.connecting) {
            c.connecting = 0;
            c.established = 1;
        }
        break;
    case OP_RW:
        if (h->len > RX_DATA) {
            c.rst = 1;
            break;
        }
        job.p = data;
        job.n = h->len;
        job.h = rx_hash;
        rx_hash = (u32)run_user(hash_user, (u64)&job);
        c.rx_bytes += h->len;
        if ((u32)c.rx_bytes - c.fwd_sent > c.rx_window_max) c.rx_window_max = (u32)c.rx_bytes - c.fwd_sent;
        c.fwd_cnt += h->len; /* consumed at once */
        break;
    case OP_SHUTDOWN:
        c.peer_shutdown = 1;
        break;
    case OP_RST:
        c.rst = 1;
        c.established = 0;
        break;
    default:
        break;
    }
}

static int handle_rx(void) {
    int any = 0, tok;
    u32 len;
    while ((tok = virtq_get(&dev.vq[RXQ], &len)) >= 0) {
        int i = rx_of_token[tok];
        on_packet(&rx_hdr[i], rx_data[i]);
        post_rx(i);
        any = 1;
    }
    if (any) virtq_kick(&dev.vq[RXQ]);
    return any;
}

static void wait_any(void) {
    cli();
    if (!virtq_has_used(&dev.vq[RXQ]) && !virtq_has_used(&dev.vq[TXQ])) sti_hlt();
    cli();
}

/* Stream until both directions are done; 0, or why not. */
static int exchange(void) {
    for (u64 rounds = 0; rounds < 100000; rounds++) {
        int progress = handle_rx() | reclaim_tx();
        if (c.rst) return c.peer_shutdown ? 0 : -1;
        if (!c.established) {
            if (!progress) wait_any();
            continue;
        }
        if (c.sent < c.to_send) {
            u32 credit = c.peer_buf_alloc - (c.tx_cnt - c.peer_fwd_cnt);
            u64 n = c.to_send - c.sent;
            if (n > TX_CHUNK) n = TX_CHUNK;
            if (n > credit) n = credit;
            if (n == 0) c.credit_waits++;
            else if (send_pkt(OP_RW, 0, tx_data + c.sent, (u32)n) == 0) {
                c.sent += n;
                c.tx_cnt += (u32)n;
                progress = 1;
            }
        }
        if (c.fwd_cnt - c.fwd_sent >= RX_DATA && send_pkt(OP_CREDIT_UPDATE, 0, 0, 0) == 0) {
            c.credit_updates_sent++;
            progress = 1;
        }
        if (c.sent == c.to_send && !c.shutdown_sent && send_pkt(OP_SHUTDOWN, SHUT_SEND, 0, 0) == 0) {
            c.shutdown_sent = 1;
            progress = 1;
        }
        if (c.shutdown_sent && c.peer_shutdown) {
            /* Both directions finished: close; the device answers with RST. */
            while (send_pkt(OP_SHUTDOWN, SHUT_RCV | SHUT_SEND, 0, 0) < 0) wait_any();
            for (int i = 0; i < 1000 && !c.rst; i++) {
                if (!handle_rx()) wait_any();
            }
            return c.rst ? 0 : -2;
        }
        if (!progress) wait_any();
    }
    return -3;
}

static void start_conn(u64 to_send) {
    vzero(&c, sizeof c);
    c.to_send = to_send;
    rx_hash = 2166136261u;
}

static void report_conn(const char *prefix, int result) {
    char name[32];
    const char *fields[] = {"result", "rx-bytes", "rx-hash", "sent", "credit-updates", "credit-waits", "peer-buf-alloc", "rx-window-max"};
    u64 vals[] = {(u64)(i64)result, c.rx_bytes, rx_hash, c.sent, c.credit_updates_sent, c.credit_waits, c.peer_buf_alloc, c.rx_window_max};
    for (int f = 0; f < 8; f++) {
        int n = 0;
        for (const char *s = prefix; *s; s++) name[n++] = *s;
        for (const char *s = fields[f]; *s; s++) name[n++] = *s;
        name[n] = 0;
        report_value(name, vals[f]);
    }
}

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    if (!p) return 9;
    u64 bytes = p->arg[0];
    if (bytes > MAX_TX) return 8;
    if (virtio_probe(&dev, 0, VIRTIO_ID_VSOCK) < 0) return 1;
    if (virtio_init(&dev, 0)) return 2;
    guest_cid = virtio_cfg64(&dev, 0);
    report_value("vsock.cid", guest_cid);
    if (virtq_setup(&dev, RXQ, 16) || virtq_setup(&dev, TXQ, 16) || virtq_setup(&dev, EVQ, 4)) return 3;
    virtio_enable_irq(&dev, 0x34);
    virtio_driver_ok(&dev);
    for (int i = 0; i < RX_BUFS; i++) post_rx(i);
    virtq_kick(&dev.vq[RXQ]);
    struct vbuf eb = {ev_buf, sizeof ev_buf, 1};
    virtq_add(&dev.vq[EVQ], &eb, 1);
    virtq_kick(&dev.vq[EVQ]);

    job.p = tx_data;
    job.n = bytes;
    job.seed = p->arg[3];
    run_user(fill_user, (u64)&job);
    job.h = 2166136261u;
    report_value("vsock.tx-hash", run_user(hash_user, (u64)&job));

    /* 1. guest -> host listener */
    start_conn(bytes);
    c.local_port = 1024;
    c.peer_port = (u32)p->arg[1];
    c.connecting = 1;
    send_pkt(OP_REQUEST, 0, 0, 0);
    report_conn("vsock.out.", exchange());

    /* 2. host -> guest listener */
    start_conn(bytes);
    c.local_port = (u32)p->arg[2];
    c.listening = 1;
    report_value("vsock.listening", c.local_port); /* the host connects now */
    report_conn("vsock.in.", exchange());
    report_value("vsock.irqs", dev.irq_count);
    return 0;
}
