import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { IFF, IFNAMSIZ, Tap, TUN_F } from "@tsvmm/kvm-backend";
import { buildSync } from "esbuild";
import { describe, expect, it } from "vitest";
import { ETH, IP, UDP, VNET } from "./net-frames.js";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "..");
const root = join(pkg, "..", "..");
const canNetns = existsSync("/dev/net/tun") && process.getuid?.() === 0;

describe("TAP constants and frame offsets against the C headers", () => {
  it("IFF_*, TUN_F_*, IFNAMSIZ and the Ethernet/IPv4/UDP/virtio-net offsets match", () => {
    const checks: Array<[string, string, number]> = [
      ...Object.entries(IFF).map(([k, v]) => [`IFF_${k}`, `IFF_${k}`, v] as [string, string, number]),
      ...Object.entries(TUN_F).map(([k, v]) => [`TUN_F_${k}`, `TUN_F_${k}`, v] as [string, string, number]),
      ["IFNAMSIZ", "IFNAMSIZ", IFNAMSIZ],
      ["ETH_HLEN", "ETH_HLEN", ETH.HLEN], ["ethhdr.h_dest", "offsetof(struct ethhdr, h_dest)", ETH.DEST],
      ["ethhdr.h_source", "offsetof(struct ethhdr, h_source)", ETH.SOURCE], ["ethhdr.h_proto", "offsetof(struct ethhdr, h_proto)", ETH.PROTO],
      ["ETH_P_IP", "ETH_P_IP", ETH.P_IP],
      ["sizeof iphdr", "sizeof(struct iphdr)", IP.HLEN], ["iphdr.tot_len", "offsetof(struct iphdr, tot_len)", IP.TOT_LEN],
      ["iphdr.id", "offsetof(struct iphdr, id)", IP.ID], ["iphdr.frag_off", "offsetof(struct iphdr, frag_off)", IP.FRAG_OFF],
      ["iphdr.ttl", "offsetof(struct iphdr, ttl)", IP.TTL], ["iphdr.protocol", "offsetof(struct iphdr, protocol)", IP.PROTOCOL],
      ["iphdr.check", "offsetof(struct iphdr, check)", IP.CHECK], ["iphdr.saddr", "offsetof(struct iphdr, saddr)", IP.SADDR],
      ["iphdr.daddr", "offsetof(struct iphdr, daddr)", IP.DADDR], ["IPPROTO_UDP", "IPPROTO_UDP", IP.PROTO_UDP],
      ["sizeof udphdr", "sizeof(struct udphdr)", UDP.HLEN], ["udphdr.source", "offsetof(struct udphdr, source)", UDP.SOURCE],
      ["udphdr.dest", "offsetof(struct udphdr, dest)", UDP.DEST], ["udphdr.len", "offsetof(struct udphdr, len)", UDP.LEN],
      ["udphdr.check", "offsetof(struct udphdr, check)", UDP.CHECK],
      ["sizeof virtio_net_hdr_mrg_rxbuf", "sizeof(struct virtio_net_hdr_mrg_rxbuf)", VNET.SIZE],
      ["sizeof virtio_net_hdr", "sizeof(struct virtio_net_hdr)", VNET.LEGACY_SIZE],
      ["vnet.flags", "offsetof(struct virtio_net_hdr, flags)", VNET.FLAGS], ["vnet.gso_type", "offsetof(struct virtio_net_hdr, gso_type)", VNET.GSO_TYPE],
      ["vnet.hdr_len", "offsetof(struct virtio_net_hdr, hdr_len)", VNET.HDR_LEN], ["vnet.gso_size", "offsetof(struct virtio_net_hdr, gso_size)", VNET.GSO_SIZE],
      ["vnet.csum_start", "offsetof(struct virtio_net_hdr, csum_start)", VNET.CSUM_START],
      ["vnet.csum_offset", "offsetof(struct virtio_net_hdr, csum_offset)", VNET.CSUM_OFFSET],
      ["vnet.num_buffers", "offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers)", VNET.NUM_BUFFERS],
      ["VIRTIO_NET_HDR_F_NEEDS_CSUM", "VIRTIO_NET_HDR_F_NEEDS_CSUM", VNET.F_NEEDS_CSUM], ["VIRTIO_NET_HDR_GSO_NONE", "VIRTIO_NET_HDR_GSO_NONE", VNET.GSO_NONE],
    ];
    const dir = mkdtempSync(join(tmpdir(), "tsvmm-tap-"));
    try {
      const lines = checks.map(([k, expr]) => `  printf("%s\\t%lu\\n", ${JSON.stringify(k)}, (unsigned long)(${expr}));`);
      const src = `#include <stddef.h>\n#include <stdio.h>\n#include <linux/if.h>\n#include <linux/if_tun.h>\n#include <linux/if_ether.h>\n#include <linux/in.h>\n#include <linux/ip.h>\n#include <linux/udp.h>\n#include <linux/virtio_net.h>\nint main(void) {\n${lines.join("\n")}\n  return 0;\n}\n`;
      writeFileSync(join(dir, "tap.c"), src);
      execFileSync("cc", ["-o", join(dir, "tap"), join(dir, "tap.c")], { stdio: "pipe" });
      const fromC = new Map(execFileSync(join(dir, "tap"), { encoding: "utf8" }).trim().split("\n").map((l) => l.split("\t") as [string, string]));
      expect(checks.filter(([k, , v]) => Number(fromC.get(k)) !== v).map(([k, , v]) => `${k}: ts=${v} c=${fromC.get(k)}`)).toEqual([]);
      expect(fromC.size).toBe(checks.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a bad interface name is refused before any fd is opened", () => {
    for (const name of ["", "x".repeat(IFNAMSIZ), "a/b", "a b"]) {
      expect(() => Tap.open(name)).toThrowError(expect.objectContaining({ code: "TAP_INVALID_NAME" }));
    }
  });
});

describe.runIf(canNetns)("TAP in a network namespace of its own", () => {
  it("creates a TAP there and exchanges frames with a UDP socket both ways; nothing outlives the namespace", () => {
    const linkInParent = (): boolean => spawnSync("ip", ["link", "show", "tsvmm0"], { stdio: "pipe" }).status === 0;
    expect(linkInParent()).toBe(false);
    // The fixture runs in a child process under `unshare -n`: bundle it (with this package's
    // sources) next to the addon, where the addon loader looks.
    mkdirSync(join(pkg, "build"), { recursive: true });
    const bundle = join(pkg, "build", `tap-netns-${process.pid}.cjs`);
    buildSync({
      entryPoints: [join(here, "fixtures", "tap-netns.ts")], bundle: true, platform: "node", format: "cjs", target: "node20",
      outfile: bundle, logLevel: "silent",
      alias: { "@tsvmm/abi": join(root, "packages", "abi", "src", "index.ts"), "@tsvmm/kvm-backend": join(pkg, "src", "index.ts") },
    });
    let r: ReturnType<typeof spawnSync>;
    try {
      r = spawnSync("unshare", ["-n", process.execPath, bundle], { encoding: "utf8", timeout: 20_000 });
    } finally {
      rmSync(bundle, { force: true });
    }
    expect(r.error).toBeUndefined();
    const out = JSON.parse(String(r.stdout).trim().split("\n").pop() ?? "{}") as Record<string, unknown>;
    expect(out.error, String(r.stderr)).toBeUndefined();
    expect(r.status).toBe(0);
    // The namespace (and the TAP in it) went with the child: the parent never saw the interface.
    expect(linkInParent()).toBe(false);

    // Typed errors, and no fd left behind by the failed opens.
    expect(out.invalidName).toBe("TAP_INVALID_NAME/-");
    expect(out.badVnetHdrSize).toBe("TAP_IOCTL_FAILED/EINVAL");
    expect(out.badOffload).toBe("TAP_IOCTL_FAILED/EINVAL");
    expect(out.fdsLeakedByFailures).toBe(0);
    expect(out.secondOpen).toBe("TAP_BUSY/EBUSY");

    // The interface is what was asked for: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, 12-byte headers.
    expect(out.name).toBe("tsvmm0");
    const info = out.info as { name: string; flags: number };
    expect(info.name).toBe("tsvmm0");
    expect(info.flags & (IFF.TAP | IFF.NO_PI | IFF.VNET_HDR)).toBe(IFF.TAP | IFF.NO_PI | IFF.VNET_HDR);
    expect(info.flags & IFF.TUN).toBe(0);
    expect(out.vnetHdrSize).toBe(VNET.SIZE);
    expect(out.emptyRead).toBe(true); // non-blocking: nothing to read is undefined, not a hang

    const toTap = out.toTap as Record<string, unknown>;
    expect(toTap.payload).toBe(toTap.sent);
    expect(toTap).toMatchObject({ dstMac: "02:00:00:00:00:02", src: "10.200.0.1", dst: "10.200.0.2", sport: toTap.socketPort, gsoType: VNET.GSO_NONE });

    const fromTap = out.fromTap as { sent: string; written: number; frameBytes: number; received: Array<{ msg: string; from: string }> };
    expect(fromTap.written).toBe(fromTap.frameBytes);
    expect(fromTap.received).toEqual([{ msg: fromTap.sent, from: "10.200.0.2:5555" }]);

    // TUNSETOFFLOAD(CSUM) took effect: the datagram comes with its checksum left to the reader.
    expect(out.offload).toEqual({
      flags: VNET.F_NEEDS_CSUM, csumStart: ETH.HLEN + IP.HLEN, csumOffset: UDP.CHECK, payload: "offloaded",
    });

    expect(out.closedTwice).toBe("ok");
    expect(out.readAfterClose).toBe("TAP_CLOSED/-");
    expect(out.interfaceAfterClose).toBe("gone");
    expect(out.fdsAtEnd).toBe(0);
  }, 30_000);
});
