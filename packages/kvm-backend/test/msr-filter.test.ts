import { KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE } from "@tsvmm/abi";
import { Kvm, requireKvm } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";

const hasKvm = requireKvm();

describe.runIf(hasKvm)("Vm.setMsrFilter validates before KVM sees the filter", () => {
  it("refuses the filter the vmm used to build by hand (a 1-byte bitmap KVM reads 8 bytes of) and accepts a valid one", () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    try {
      const rw = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
      expect(() => vm.setMsrFilter({ flags: KVM_MSR_FILTER_DEFAULT_ALLOW, ranges: [{ flags: rw, base: 0x10, nmsrs: 1, bitmap: Buffer.from([0]) }] })).toThrow(
        expect.objectContaining({ code: "KVM_MSR_FILTER_INVALID", message: expect.stringMatching(/at least 8 bytes/) }),
      );
      expect(() => vm.setMsrFilter({ flags: KVM_MSR_FILTER_DEFAULT_ALLOW, ranges: [{ flags: rw, base: 0xffffff00, nmsrs: 0x100, bitmap: Buffer.alloc(32) }] })).toThrow(
        expect.objectContaining({ code: "KVM_MSR_FILTER_INVALID", message: expect.stringMatching(/never matches/) }),
      );
      vm.setMsrFilter({ flags: KVM_MSR_FILTER_DEFAULT_ALLOW, ranges: [{ flags: rw, base: 0x10, nmsrs: 1, bitmap: Buffer.alloc(8) }] });
    } finally {
      vm.close();
      kvm.close();
    }
  });
});
