// Ethernet / IPv4 / UDP / virtio-net header field offsets for building and reading test frames.
// Network byte order fields are read with Buffer's BE methods; tap.test.ts checks every offset and
// size here against <linux/if_ether.h>, <linux/ip.h>, <linux/udp.h> and <linux/virtio_net.h>.

export const ETH = { HLEN: 14, DEST: 0, SOURCE: 6, PROTO: 12, P_IP: 0x0800 } as const;
export const IP = { HLEN: 20, VERSION_IHL: 0, TOT_LEN: 2, ID: 4, FRAG_OFF: 6, TTL: 8, PROTOCOL: 9, CHECK: 10, SADDR: 12, DADDR: 16, PROTO_UDP: 17 } as const;
export const UDP = { HLEN: 8, SOURCE: 0, DEST: 2, LEN: 4, CHECK: 6 } as const;
/** struct virtio_net_hdr_mrg_rxbuf (12 bytes; the first 10 are struct virtio_net_hdr). */
export const VNET = { SIZE: 12, LEGACY_SIZE: 10, FLAGS: 0, GSO_TYPE: 1, HDR_LEN: 2, GSO_SIZE: 4, CSUM_START: 6, CSUM_OFFSET: 8, NUM_BUFFERS: 10, F_NEEDS_CSUM: 1, GSO_NONE: 0 } as const;

const ip4 = (s: string): Buffer => Buffer.from(s.split(".").map(Number));
export const mac = (s: string): Buffer => Buffer.from(s.split(":").map((h) => Number.parseInt(h, 16)));

function ipChecksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An Ethernet frame carrying one IPv4/UDP datagram (UDP checksum 0: none, as IPv4 allows). */
export function udpFrame(o: { dstMac: Buffer; srcMac: Buffer; src: string; dst: string; sport: number; dport: number; payload: Buffer }): Buffer {
  const f = Buffer.alloc(ETH.HLEN + IP.HLEN + UDP.HLEN + o.payload.length);
  o.dstMac.copy(f, ETH.DEST);
  o.srcMac.copy(f, ETH.SOURCE);
  f.writeUInt16BE(ETH.P_IP, ETH.PROTO);
  const ip = f.subarray(ETH.HLEN, ETH.HLEN + IP.HLEN);
  ip[IP.VERSION_IHL] = 0x45;
  ip.writeUInt16BE(IP.HLEN + UDP.HLEN + o.payload.length, IP.TOT_LEN);
  ip[IP.TTL] = 64;
  ip[IP.PROTOCOL] = IP.PROTO_UDP;
  ip4(o.src).copy(ip, IP.SADDR);
  ip4(o.dst).copy(ip, IP.DADDR);
  ip.writeUInt16BE(ipChecksum(ip), IP.CHECK);
  const udp = f.subarray(ETH.HLEN + IP.HLEN);
  udp.writeUInt16BE(o.sport, UDP.SOURCE);
  udp.writeUInt16BE(o.dport, UDP.DEST);
  udp.writeUInt16BE(UDP.HLEN + o.payload.length, UDP.LEN);
  o.payload.copy(udp, UDP.HLEN);
  return f;
}

/** The UDP datagram in an Ethernet frame, or undefined if it is something else. */
export function parseUdpFrame(f: Buffer): { dstMac: string; src: string; dst: string; sport: number; dport: number; payload: Buffer } | undefined {
  if (f.length < ETH.HLEN + IP.HLEN + UDP.HLEN || f.readUInt16BE(ETH.PROTO) !== ETH.P_IP) return undefined;
  const ip = f.subarray(ETH.HLEN);
  if (ip[IP.PROTOCOL] !== IP.PROTO_UDP) return undefined;
  const ihl = (ip[IP.VERSION_IHL]! & 0xf) * 4;
  const udp = ip.subarray(ihl);
  const len = udp.readUInt16BE(UDP.LEN);
  return {
    dstMac: [...f.subarray(ETH.DEST, ETH.DEST + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":"),
    src: [...ip.subarray(IP.SADDR, IP.SADDR + 4)].join("."),
    dst: [...ip.subarray(IP.DADDR, IP.DADDR + 4)].join("."),
    sport: udp.readUInt16BE(UDP.SOURCE),
    dport: udp.readUInt16BE(UDP.DEST),
    payload: Buffer.from(udp.subarray(UDP.HLEN, len)),
  };
}
