import { KVM_CAP } from "@tsvmm/abi";
import { type Kvm, requireKvm, type Vcpu, type Vm } from "@tsvmm/kvm-backend";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemble, closeTestVm, enterRealMode, openTestVm } from "./helpers.js";

const hasKvm = requireKvm();

/** A real-mode guest at 0x1000 that OUTs `count` bytes 0, 1, 2, ... (mod 256) to port 0x3f8, then HLTs. */
function byteWriter(count: number, tail = ""): Buffer {
  return assemble(`mov dx, 0x3f8\n xor al, al\n mov cx, ${count}\n1: out dx, al\n inc al\n dec cx\n jnz 1b\n${tail}\n hlt`, 16, 0x1000);
}

interface Seen {
  bytes: number[];
  ioExits: number;
}

/** Runs to HLT, draining the ring before each exit as a VMM must, and collects every byte written to 0x3f8 in order. */
function runCollect(vm: Vm, vcpu: Vcpu, seen: Seen = { bytes: [], ioExits: 0 }): Seen {
  const ring = vm.coalescedRing();
  const sink = (addr: number, data: Buffer, pio: boolean): void => {
    expect([addr, pio, data.length]).toEqual([0x3f8, true, 1]);
    seen.bytes.push(data[0]!);
  };
  for (;;) {
    const e = vcpu.run();
    ring.drain(sink);
    if (e.kind === "hlt") return seen;
    expect(e.kind).toBe("io");
    if (e.kind !== "io") return seen;
    seen.ioExits++;
    if (e.direction === "out" && e.port === 0x3f8) for (let i = 0; i < e.data.length; i += e.size) seen.bytes.push(e.data[i]!);
  }
}

const expectedBytes = (n: number): number[] => Array.from({ length: n }, (_, i) => i & 0xff);

describe.runIf(hasKvm)("coalesced port I/O (KVM_CAP_COALESCED_PIO)", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("the host offers the ring in the vCPU mapping and port coalescing, measured here", () => {
    const page = vm.coalescedRingPage;
    console.log(`coalesced ring: page ${page} of a ${kvm.vcpuMmapSize}-byte vCPU mapping; COALESCED_PIO=${vm.checkExtension(KVM_CAP.COALESCED_PIO)}`);
    expect(page).toBe(vm.checkExtension(KVM_CAP.COALESCED_MMIO));
    expect(page).toBeGreaterThan(0);
    expect(vm.coalescedPioOffered).toBe(vm.checkExtension(KVM_CAP.COALESCED_PIO) > 0);
    expect(() => vm.coalescedRing()).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
    vm.createVcpu(0);
    // (4096 - head) / entry, from the layouts checked against <linux/kvm.h>.
    expect(vm.coalescedRing().capacity).toBe(170);
    expect(vm.coalescedRing().pending).toBe(0);
  });

  it("writes to a registered port are queued without an exit, in order, and the same bytes come out as without the zone", () => {
    vm.memory.write(0x1000, byteWriter(100));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const plain = runCollect(vm, vcpu);
    expect(plain.bytes).toEqual(expectedBytes(100));
    expect(plain.ioExits).toBe(100);

    vm.registerCoalescedPio(0x3f8, 1);
    enterRealMode(vcpu, 0x1000);
    const ring = vm.coalescedRing();
    expect(vcpu.run().kind).toBe("hlt");
    expect(ring.pending).toBe(100);
    const seen: number[] = [];
    expect(ring.drain((addr, data, pio) => {
      expect([addr, pio, data.length]).toEqual([0x3f8, true, 1]);
      seen.push(data[0]!);
    })).toBe(100);
    expect(seen).toEqual(plain.bytes);
    expect(ring.pending).toBe(0);
  });

  it("a full ring makes the next write exit; draining before each exit loses nothing and keeps the order", () => {
    vm.registerCoalescedPio(0x3f8, 1);
    vm.memory.write(0x1000, byteWriter(2000));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const seen = runCollect(vm, vcpu);
    const cap = vm.coalescedRing().capacity;
    console.log(`2000 OUTs through a ${cap}-entry ring: ${seen.ioExits} io exits`);
    expect(seen.bytes).toEqual(expectedBytes(2000));
    // KVM keeps one entry unused: every cap-th write exits.
    expect(seen.ioExits).toBe(Math.floor(2000 / cap));
  });

  it("only writes wholly inside the zone are queued: a word OUT, an IN and another port exit, in order with the queued bytes", () => {
    vm.registerCoalescedPio(0x3f8, 1);
    vm.memory.write(0x1000, assemble(
      "mov dx, 0x3f8\n mov al, 1\n out dx, al\n mov al, 2\n out dx, al\n mov ax, 0x0403\n out dx, ax\n mov al, 5\n out dx, al\n" +
      " in al, dx\n mov al, 6\n out dx, al\n mov dx, 0x3f9\n out dx, al\n hlt", 16, 0x1000));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const ring = vm.coalescedRing();
    const log: string[] = [];
    for (;;) {
      const e = vcpu.run();
      ring.drain((addr, data) => log.push(`ring ${addr.toString(16)} ${data.toString("hex")}`));
      if (e.kind === "hlt") break;
      if (e.kind !== "io") throw new Error(`unexpected ${e.kind}`);
      log.push(`${e.direction} ${e.port.toString(16)} ${e.direction === "out" ? e.data.toString("hex") : e.size}`);
    }
    expect(log).toEqual(["ring 3f8 01", "ring 3f8 02", "out 3f8 0304", "ring 3f8 05", "in 3f8 1", "ring 3f8 06", "out 3f9 06"]);
  });

  it("rep outsb through a zone: every byte once, in order, across ring-full exits", () => {
    vm.registerCoalescedPio(0x3f8, 1);
    const n = 1000;
    // The bytes at 0x2000, then one rep outsb of all of them.
    vm.memory.write(0x2000, Buffer.from(expectedBytes(n)));
    vm.memory.write(0x1000, assemble(`mov dx, 0x3f8\n mov si, 0x2000\n mov cx, ${n}\n cld\n rep outsb\n hlt`, 16, 0x1000));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const seen = runCollect(vm, vcpu);
    console.log(`rep outsb of ${n} bytes through the ring: ${seen.ioExits} io exits`);
    expect(seen.bytes).toEqual(expectedBytes(n));
  });

  it("after unregistering, writes exit again; a zone is refused outside the port space", () => {
    vm.registerCoalescedPio(0x3f8, 1);
    vm.unregisterCoalescedPio(0x3f8, 1);
    vm.memory.write(0x1000, byteWriter(10));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    expect(runCollect(vm, vcpu).ioExits).toBe(10);
    expect(() => vm.registerCoalescedPio(0xffff, 2)).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
    expect(() => vm.registerCoalescedPio(0x3f8, 0)).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
  });

  it("a drain started from inside the sink hands nothing over; the outer one goes on in order", () => {
    vm.registerCoalescedPio(0x3f8, 1);
    vm.memory.write(0x1000, byteWriter(5));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    expect(vcpu.run().kind).toBe("hlt");
    const ring = vm.coalescedRing();
    const got: number[] = [];
    const inner: number[] = [];
    expect(ring.drain((_a, d) => {
      got.push(d[0]!);
      inner.push(ring.drain(() => got.push(-1)));
    })).toBe(5);
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(inner).toEqual([0, 0, 0, 0, 0]);
  });

  it("coalesced MMIO: writes to an unbacked guest-physical zone are queued with their size and address", () => {
    vm.registerCoalescedMmio(0x100000, 0x100);
    // 0xffff:0x10 = 0x100000, just past the 1 MiB of RAM.
    vm.memory.write(0x1000, assemble(
      "mov ax, 0xffff\n mov es, ax\n mov byte ptr es:[0x10], 0x11\n mov word ptr es:[0x20], 0x2233\n mov dword ptr es:[0x30], 0x44556677\n" +
      " mov byte ptr es:[0x110], 0x99\n hlt", 16, 0x1000));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const ring = vm.coalescedRing();
    const log: string[] = [];
    for (;;) {
      const e = vcpu.run();
      ring.drain((addr, data, pio) => log.push(`ring ${addr.toString(16)} ${data.toString("hex")} ${pio}`));
      if (e.kind === "hlt") break;
      if (e.kind !== "mmio") throw new Error(`unexpected ${e.kind}`);
      log.push(`mmio ${e.address.toString(16)} ${e.data.toString("hex")}`);
    }
    expect(log).toEqual(["ring 100000 11 false", "ring 100010 3322 false", "ring 100020 77665544 false", "mmio 100100 99"]);
  });
});
