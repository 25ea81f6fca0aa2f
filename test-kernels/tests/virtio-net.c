/* virtio-net: frames through a TAP device in the test's network namespace. The guest
   (10.201.0.2, the device's MAC) asks ARP for 10.201.0.1 (the TAP's host side): the host kernel
   answers; then it sends a UDP datagram "ping <nonce>" to 10.201.0.1:7777, where a host socket
   answers "pong ping <nonce>", which the guest receives and prints. Frames that are neither are
   skipped (the host may send others). Waits on the device's interrupt.
   Params: arg[0] = nonce. */
#include "virtio.h"

#define RXQ 0
#define TXQ 1
#define HDR 12 /* struct virtio_net_hdr_v1 (VERSION_1: num_buffers always present) */
#define RX_BUFS 8
#define RX_SIZE 2048
#define GUEST_PORT 4444
#define HOST_PORT 7777

static const u8 guest_ip[4] = {10, 201, 0, 2};
static const u8 host_ip[4] = {10, 201, 0, 1};
static struct virtio_dev dev;
static u8 rx[RX_BUFS][RX_SIZE] __attribute__((aligned(64)));
static int rx_of_token[VIRTQ_MAX];
static u8 tx[HDR + 128] __attribute__((aligned(64)));
static u8 mac[6], host_mac[6];

static void post_rx(int i) {
    struct vbuf b = {rx[i], RX_SIZE, 1};
    int tok = virtq_add(&dev.vq[RXQ], &b, 1);
    if (tok >= 0) rx_of_token[tok] = i;
}

static void put16(u8 *p, u16 v) {
    p[0] = (u8)(v >> 8);
    p[1] = (u8)v;
}
static u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static void put_bytes(u8 *p, const u8 *s, int n) {
    for (int i = 0; i < n; i++) p[i] = s[i];
}
static int same(const u8 *a, const u8 *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int send_frame(u32 len) {
    vzero(tx, HDR);
    struct vbuf b = {tx, HDR + len, 0};
    if (virtq_add(&dev.vq[TXQ], &b, 1) < 0) return -1;
    virtq_kick(&dev.vq[TXQ]);
    u32 used;
    return virtq_wait(&dev.vq[TXQ], &used) < 0 ? -2 : 0;
}

/* Wait for a frame `want` accepts; returns its buffer index (still posted-out) or -1. */
static int receive(int (*want)(const u8 *f, u32 len), u32 *flen, u32 *skipped) {
    for (int n = 0; n < 64; n++) {
        u32 len = 0;
        int tok = virtq_wait(&dev.vq[RXQ], &len);
        if (tok < 0) return -1;
        int i = rx_of_token[tok];
        if (len > HDR && want(rx[i] + HDR, len - HDR)) {
            *flen = len - HDR;
            return i;
        }
        (*skipped)++;
        post_rx(i);
        virtq_kick(&dev.vq[RXQ]);
    }
    return -1;
}

static int is_arp_reply(const u8 *f, u32 len) {
    return len >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 2 && same(f + 28, host_ip, 4) && same(f + 38, guest_ip, 4);
}
static int is_udp_answer(const u8 *f, u32 len) {
    return len >= 42 && get16(f + 12) == 0x0800 && f[23] == 17 && same(f + 26, host_ip, 4) && same(f + 30, guest_ip, 4) &&
           get16(f + 34) == HOST_PORT && get16(f + 36) == GUEST_PORT;
}

int test_main(void) {
    const volatile struct virtio_params *p = virtio_params();
    u64 nonce = p ? p->arg[0] : 0;
    if (virtio_probe(&dev, 0, VIRTIO_ID_NET) < 0) return 1;
    if (virtio_init(&dev, VIRTIO_BIT(5) /* MAC */ | VIRTIO_BIT(16) /* STATUS */)) return 2;
    report_value("net.features", dev.features);
    u64 m = 0;
    for (int i = 0; i < 6; i++) {
        mac[i] = virtio_cfg8(&dev, (u32)i);
        m = m << 8 | mac[i];
    }
    report_value("net.mac", m);
    report_value("net.link", virtio_cfg16(&dev, 6));
    if (virtq_setup(&dev, RXQ, 16) || virtq_setup(&dev, TXQ, 4)) return 3;
    virtio_enable_irq(&dev, 0x35);
    virtio_driver_ok(&dev);
    for (int i = 0; i < RX_BUFS; i++) post_rx(i);
    virtq_kick(&dev.vq[RXQ]);
    u32 skipped = 0, flen = 0;

    /* ARP who-has 10.201.0.1 tell 10.201.0.2 */
    u8 *f = tx + HDR;
    for (int i = 0; i < 6; i++) f[i] = 0xff;
    put_bytes(f + 6, mac, 6);
    put16(f + 12, 0x0806);
    put16(f + 14, 1);      /* Ethernet */
    put16(f + 16, 0x0800); /* IPv4 */
    f[18] = 6;
    f[19] = 4;
    put16(f + 20, 1); /* request */
    put_bytes(f + 22, mac, 6);
    put_bytes(f + 28, guest_ip, 4);
    vzero(f + 32, 6);
    put_bytes(f + 38, host_ip, 4);
    report_value("net.arp-sent", (u64)(i64)send_frame(42));
    int i = receive(is_arp_reply, &flen, &skipped);
    report_value("net.arp-reply", (u64)(i64)i);
    if (i < 0) return 4;
    put_bytes(host_mac, rx[i] + HDR + 22, 6);
    m = 0;
    for (int k = 0; k < 6; k++) m = m << 8 | host_mac[k];
    report_value("net.host-mac", m);
    post_rx(i);
    virtq_kick(&dev.vq[RXQ]);

    /* UDP 10.201.0.2:4444 -> 10.201.0.1:7777 "ping <nonce>" */
    u8 payload[21] = "ping ";
    for (int k = 0; k < 16; k++) payload[5 + k] = (u8)"0123456789abcdef"[(nonce >> (60 - 4 * k)) & 15];
    u32 plen = sizeof payload, ulen = 8 + plen, iplen = 20 + ulen;
    put_bytes(f, host_mac, 6);
    put_bytes(f + 6, mac, 6);
    put16(f + 12, 0x0800);
    u8 *ip = f + 14;
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, (u16)iplen);
    put16(ip + 4, 1);
    put16(ip + 6, 0x4000); /* DF */
    ip[8] = 64;
    ip[9] = 17;
    put16(ip + 10, 0);
    put_bytes(ip + 12, guest_ip, 4);
    put_bytes(ip + 16, host_ip, 4);
    u32 sum = 0;
    for (int k = 0; k < 20; k += 2) sum += get16(ip + k);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    put16(ip + 10, (u16)~sum);
    u8 *udp = ip + 20;
    put16(udp, GUEST_PORT);
    put16(udp + 2, HOST_PORT);
    put16(udp + 4, (u16)ulen);
    put16(udp + 6, 0); /* no checksum (IPv4 allows it) */
    put_bytes(udp + 8, payload, (int)plen);
    report_value("net.udp-sent", (u64)(i64)send_frame(14 + iplen));
    i = receive(is_udp_answer, &flen, &skipped);
    report_value("net.udp-reply", (u64)(i64)i);
    if (i < 0) return 5;
    const u8 *rf = rx[i] + HDR;
    u32 rlen = get16(rf + 38) - 8;
    if (rlen > flen - 42) return 6;
    console_write("net.rx=", 7);
    console_write((const char *)rf + 42, rlen);
    console_write("\n", 1);
    report_value("net.rx-len", rlen);
    report_value("net.skipped", skipped);
    return 0;
}
