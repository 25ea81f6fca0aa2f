import { KVM_CAP } from "@tsvmm/abi";
import { type DirtyPage, type Kvm, requireKvm, type Vm } from "@tsvmm/kvm-backend";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemble, closeTestVm, enterLongMode, enterRealMode, openTestVm } from "./helpers.js";

const hasKvm = requireKvm();
// KVM logs a page each time it marks it dirty: writes KVM emulates (all CPL0 code on a PVM host)
// can log a page more than once before the reset. Compare the distinct pages, in first-seen order.
const pages = (d: DirtyPage[]): string[] => [...new Set(d.map((p) => `${p.addressSpace}:${p.slot}:${p.page}`))];

describe.runIf(hasKvm)("dirty ring (KVM_CAP_DIRTY_LOG_RING)", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("reports exactly the pages the guest wrote, in first-written order, and a page again only after the reset", () => {
    const max = kvm.checkExtension(KVM_CAP.DIRTY_LOG_RING);
    console.log(`dirty ring: KVM offers up to ${max} bytes per vCPU (${max / 16} entries)`);
    expect(max).toBeGreaterThanOrEqual(4096);
    vm.enableDirtyRing(65536);
    vm.addMemory({ slot: 1, guestPhysAddr: 0x100000, size: 0x10000, logDirty: true });
    // 0xffff:0x10 = 0x100000. Writes to pages 0, 2 (twice), 5 of slot 1, a read of page 7, and a
    // write to slot 0 (not logged); then, after the first HLT, pages 5 (again) and 9.
    vm.memory.write(0x1000, assemble(
      "mov ax, 0xffff\n mov es, ax\n mov byte ptr es:[0x10], 1\n mov byte ptr es:[0x2010], 1\n mov byte ptr es:[0x5ff0], 1\n" +
      " mov byte ptr es:[0x2020], 2\n mov al, es:[0x7010]\n mov byte ptr [0x5000], 1\n hlt\n" +
      " mov byte ptr es:[0x5010], 3\n mov byte ptr es:[0x9010], 1\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    expect(vcpu.dirtyRing?.size).toBe(65536 / 16);
    enterRealMode(vcpu, 0x1000);
    expect(vcpu.run().kind).toBe("hlt");
    expect(pages(vm.harvestDirtyRings())).toEqual(["0:1:0", "0:1:2", "0:1:5"]);
    expect(vm.harvestDirtyRings()).toEqual([]);
    expect(vcpu.run().kind).toBe("hlt");
    // Page 5 was re-protected by the reset: its second write is logged again.
    expect(pages(vm.harvestDirtyRings())).toEqual(["0:1:5", "0:1:9"]);
    expect(vcpu.dirtyRing?.fetched).toBeGreaterThanOrEqual(5);
  });

  it("a full ring stops the vCPU with dirty_ring_full; harvesting lets it finish with every page reported once", () => {
    vm.enableDirtyRing(4096); // 256 entries: fewer than the pages written below
    vm.addMemory({ slot: 2, guestPhysAddr: 0x400000, size: 0x400000, logDirty: true });
    // KVM checks the ring's soft limit when it enters the guest; code KVM emulates (CPL0 on a PVM
    // host) can dirty many pages without an entry, so the writer leaves to the VMM every 16 pages,
    // well inside the ring's reserve (64 entries).
    vm.memory.write(0x10000, assemble(
      "mov rdi, 0x400000\n mov ecx, 1024\n1: mov byte ptr [rdi], 1\n add rdi, 4096\n test ecx, 15\n jnz 2f\n out 0x80, al\n2: dec ecx\n jnz 1b\n hlt", 64, 0x10000));
    const vcpu = vm.createVcpu(0);
    enterLongMode(vm, vcpu, 0x10000);
    const seen: DirtyPage[] = [];
    let full = 0;
    for (;;) {
      const e = vcpu.run();
      if (e.kind === "hlt") break;
      if (e.kind === "io" && e.port === 0x80) continue; // the VMM does not harvest here
      expect(e.kind).toBe("dirty_ring_full");
      full++;
      seen.push(...vm.harvestDirtyRings());
    }
    seen.push(...vm.harvestDirtyRings());
    console.log(`1024 pages through a 256-entry ring: ${full} dirty_ring_full exits`);
    expect(full).toBeGreaterThanOrEqual(3);
    expect(pages(seen)).toEqual([...Array(1024).keys()].map((i) => `0:2:${i}`));
  });

  it("the ring is refused after the first vCPU and for sizes that are not a power of two", () => {
    expect(() => vm.enableDirtyRing(5000)).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
    expect(() => vm.enableDirtyRing(2048)).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
    const max = kvm.checkExtension(KVM_CAP.DIRTY_LOG_RING);
    expect(() => vm.enableDirtyRing(max * 2)).toThrowError(expect.objectContaining({ code: "KVM_IOCTL_FAILED", ioctl: "KVM_ENABLE_CAP" }));
    vm.createVcpu(0);
    expect(() => vm.enableDirtyRing(4096)).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
  });
});
