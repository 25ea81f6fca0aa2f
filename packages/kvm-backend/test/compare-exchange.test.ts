import { GuestRam, requireKvm } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";
import { assemble, closeTestVm, enterRealMode, openTestVm } from "./helpers.js";

// GuestRam.compareExchangeAt: the addon's locked 8/16-byte compare-exchange on mapped memory, which
// the vmm's emulator uses so an emulated LOCK CMPXCHG16B stays atomic against vCPUs running natively.

const le = (v: bigint, n: number) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return b;
};
const val = (b: Uint8Array) => b.reduceRight((a, x) => (a << 8n) | BigInt(x), 0n);

describe("compareExchangeAt", () => {
  it("stores only on a match and always returns the bytes that were there (8 and 16 bytes)", () => {
    const ram = new GuestRam(0x1000);
    try {
      const view = ram.buffer;
      for (const size of [8, 16]) {
        const at = 0x100;
        view.set(le(0x1122334455667788_99aabbccddeeff00n, size), at);
        const before = val(view.subarray(at, at + size));
        const miss = GuestRam.compareExchangeAt(view, at, le(before + 1n, size), le(5n, size));
        expect([miss.swapped, val(miss.old), val(view.subarray(at, at + size))]).toEqual([false, before, before]);
        const hit = ram.compareExchange(at, le(before, size), le(0xfeedn << BigInt(8 * size - 16), size));
        expect([hit.swapped, val(hit.old), val(view.subarray(at, at + size))]).toEqual([true, before, 0xfeedn << BigInt(8 * size - 16)]);
      }
      // A slice is a view of the same mapping: offsets count from the slice.
      const slice = view.subarray(0x200, 0x300);
      expect(GuestRam.compareExchangeAt(slice, 0x10, le(0n, 16), le(7n, 16)).swapped).toBe(true);
      expect(view[0x210]).toBe(7);
    } finally {
      ram.close();
    }
  });

  it("refuses misaligned operands, operands outside the view, and sizes other than 8/16", () => {
    const ram = new GuestRam(0x1000);
    try {
      const v = ram.buffer;
      const bad = (f: () => unknown) => expect(f).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
      bad(() => GuestRam.compareExchangeAt(v, 4, le(0n, 8), le(1n, 8)));
      bad(() => GuestRam.compareExchangeAt(v, 8, le(0n, 16), le(1n, 16)));
      bad(() => GuestRam.compareExchangeAt(v, 0x1000 - 8, le(0n, 16), le(1n, 16)));
      bad(() => GuestRam.compareExchangeAt(v, 0x1000, le(0n, 8), le(1n, 8)));
      bad(() => GuestRam.compareExchangeAt(v, -8, le(0n, 8), le(1n, 8)));
      bad(() => GuestRam.compareExchangeAt(v, 0, le(0n, 4), le(1n, 4)));
      bad(() => GuestRam.compareExchangeAt(v, 0, le(0n, 8), le(1n, 16)));
      bad(() => GuestRam.compareExchangeAt(new Uint8Array(new SharedArrayBuffer(16)), 0, le(0n, 8), le(1n, 8)));
      // The misaligned attempts stored nothing.
      expect(v.subarray(0, 0x20).every((b) => b === 0)).toBe(true);
    } finally {
      ram.close();
    }
  });
});

describe.runIf(requireKvm())("compareExchangeAt against a running vCPU", () => {
  it("host CAS increments and the guest's LOCK ADD on the same counter lose nothing", async () => {
    const { kvm, vm } = openTestVm();
    try {
      const GUEST_ADDS = 60_000;
      const MIN_HOST_ADDS = 20_000;
      const COUNTER = 0x2000;
      const DONE = 0x2100;
      vm.memory.write(0x1000, assemble(`mov ecx, ${GUEST_ADDS}\n1: lock add dword ptr [${COUNTER}], 1\n dec ecx\n jnz 1b\n mov byte ptr [${DONE}], 1\n hlt`, 16, 0x1000));
      const vcpu = vm.createVcpu(0);
      enterRealMode(vcpu, 0x1000);
      const slot = vm.memory.slice(0, 1 << 20);
      const done = vcpu.runAsync();
      // Start once the guest is counting, so the two loops overlap.
      const t0 = Date.now();
      while (vm.memory.readU32(COUNTER) === 0 && Date.now() - t0 < 5000);
      let movedUnderUs = 0;
      // Add until the guest has finished (and at least MIN_HOST_ADDS times), so the loops overlap
      // however the two threads are scheduled.
      let hostAdds = 0;
      for (let i = 0; i < MIN_HOST_ADDS || vm.memory.readU8(DONE) === 0; i++, hostAdds++) {
        const size = i % 2 === 0 ? 8 : 16;
        // A copy: Buffer#slice would be a live view of guest memory.
        let cur: Uint8Array = Uint8Array.from(slot.subarray(COUNTER, COUNTER + size));
        for (;;) {
          const r = GuestRam.compareExchangeAt(slot, COUNTER, cur, le(val(cur) + 1n, size));
          if (r.swapped) break;
          movedUnderUs++;
          cur = r.old;
        }
      }
      const exit = await done;
      expect(exit.kind).toBe("hlt");
      // The guest wrote between our read and our exchange: the loops really ran at the same time.
      expect(movedUnderUs).toBeGreaterThan(0);
      expect(vm.memory.readU32(COUNTER)).toBe(GUEST_ADDS + hostAdds);
    } finally {
      closeTestVm(kvm, vm);
    }
  });
});
