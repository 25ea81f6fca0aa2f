import { KVM_MSR_FILTER_DEFAULT_DENY, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE } from "@tsvmm/abi";
import { MsrPolicy, toKvmMsrFilter, VmxMsrBitmap } from "@tsvmm/msr-io-bitmaps";
import { expect, it } from "vitest";

it("the README example produces the filter it shows", () => {
  const policy = MsrPolicy.fromAllowList([0x10, { msrs: 0x1b, access: "read" }, { first: 0xc000_0080, last: 0xc000_0084 }]);
  const filter = toKvmMsrFilter(policy);
  expect(filter.flags).toBe(KVM_MSR_FILTER_DEFAULT_DENY);
  expect(filter.ranges.map((r) => ({ flags: r.flags, base: r.base, nmsrs: r.nmsrs, bitmap: [...r.bitmap] }))).toEqual([
    { flags: KVM_MSR_FILTER_READ, base: 0x10, nmsrs: 12, bitmap: [0x01, 0x08, 0, 0, 0, 0, 0, 0] },
    { flags: KVM_MSR_FILTER_WRITE, base: 0x10, nmsrs: 1, bitmap: [0x01, 0, 0, 0, 0, 0, 0, 0] },
    { flags: KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, base: 0xc000_0080, nmsrs: 5, bitmap: [0x1f, 0, 0, 0, 0, 0, 0, 0] },
  ]);
  const page = VmxMsrBitmap.fromPolicy(policy).toBuffer();
  expect(page.length).toBe(4096);
  // EFER read is allowed: bit 0x80 of read-high (byte 0x410) is clear; its neighbour 0x7f is set.
  expect(page[0x410]! & 1).toBe(0);
  expect(page[0x40f]! & 0x80).toBe(0x80);
});
