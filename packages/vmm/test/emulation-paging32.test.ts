import { Kvm, requireKvm, type Vcpu } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";
import { KvmCpu } from "../src/emulation/kvm-cpu.js";
import { xsaveLayoutFromCpuid } from "../src/emulation/vcpu-emulation.js";

// KvmCpu.translate under 32-bit and PAE paging on a real vCPU, with the control state KVM holds
// (CR3, CR4.PSE/PAE/SMAP, CR0.WP, EFER.NXE, RFLAGS.AC): @tsvmm/x86's walkPaging on tables in guest
// RAM, Accessed/Dirty set through the addon's locked compare-exchange, #PF error codes.
//
// Why no guest runs here: this host's KVM (PVM) keeps no legacy paging. KVM_SET_SREGS drops CR0.PG
// without EFER.LMA (KVM_GET_SREGS reads it back clear), and a 32-bit guest's own MOV to CR0 that turns on 32-bit or
// PAE paging triple-faults (tried with a prot32 guest, 2026-12-06). Hosts that do keep legacy paging
// run CPL0 natively (VMX), where these instructions never reach the VMM's emulator. So the walk is
// driven directly, as test/emulation-kvm-cpu.test.ts does for IA-32e paging.

const hasKvm = requireKvm();
const PG = 1n << 31n, WP = 1n << 16n, PE = 1n, ET = 0x10n;
const CR4_PSE = 0x10n, CR4_PAE = 0x20n, CR4_SMAP = 1n << 21n;
const NXE = 1n << 11n;
const AC = 1n << 18n;

function protectedMode(vcpu: Vcpu, cr0: bigint, cr4: bigint, cr3: bigint, efer: bigint): void {
  const s = vcpu.getSregs();
  const flat = (code: boolean) => ({ base: 0n, limit: 0xffffffff, selector: code ? 0x10 : 0x18, type: code ? 11 : 3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 });
  for (const k of ["ds", "es", "fs", "gs", "ss"] as const) s[k] = flat(false);
  s.cs = flat(true);
  vcpu.setSregs({ ...s, cr0, cr4, cr3, efer });
}

describe.runIf(hasKvm)("KvmCpu walks 32-bit and PAE tables with the control state KVM holds", () => {
  it("translations, A/D in guest RAM, #PF error codes (WP, SMAP with AC, XD with NXE, RSVD)", () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    try {
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 8 << 20, name: "ram" });
      const mem = vm.memory;
      const vcpu = vm.createVcpu(0);
      vcpu.setCpuid2(kvm.supportedCpuid());
      const cpu = new KvmCpu({ vcpu, memory: mem, layout: xsaveLayoutFromCpuid(vcpu.getCpuid2()), maxPhyAddr: 36 });
      const tr = (lin: bigint, access: "read" | "write" | "fetch", cpl: number) => {
        const r = cpu.translate(lin, access, cpl);
        return typeof r === "bigint" ? r : { code: r.errorCode, cr2: r.cr2 };
      };

      // 32-bit paging: PD at 0x10000; PDE 0x100 -> PT at 0x11000 (user, writable); PDE 0x101: 4 MiB page at 8 MiB... above RAM
      // is fine for a translation; PTE 0 -> 0x200000 (user, read-only), PTE 1 not present.
      mem.writeU32(0x10000 + 0x100 * 4, 0x11000 | 0x7);
      mem.writeU32(0x10000 + 0x101 * 4, 0x00800000 | 0x83);
      mem.writeU32(0x11000, 0x200000 | 0x5);
      protectedMode(vcpu, PE | ET | PG | WP, CR4_PSE | CR4_SMAP, 0x10000n, 0n);
      cpu.begin();
      expect(cpu.readCr(3)).toBe(0x10000n); // KVM holds CR3 and CR4 even where it drops CR0.PG
      expect(tr(0x40000123n, "read", 3)).toBe(0x200123n);
      expect(mem.readU32(0x11000) & 0x60).toBe(0x20);
      expect(mem.readU32(0x10000 + 0x100 * 4) & 0x20).toBe(0x20);
      expect(tr(0x40000123n, "write", 3)).toEqual({ code: 0b111, cr2: 0x40000123n });
      expect(tr(0x40000123n, "write", 0)).toEqual({ code: 0b011, cr2: 0x40000123n }); // CR0.WP
      expect(tr(0x40000123n, "read", 0)).toEqual({ code: 0b001, cr2: 0x40000123n }); // SMAP, AC clear
      expect(tr(0x40001000n, "read", 0)).toEqual({ code: 0, cr2: 0x40001000n });
      expect(tr(0x40456789n, "write", 0)).toBe(0x856789n);
      expect(mem.readU32(0x10000 + 0x101 * 4) & 0x60).toBe(0x60);
      // RFLAGS.AC from KVM's registers lifts SMAP; CR0.WP off lets the supervisor write.
      vcpu.setRegs({ ...vcpu.getRegs(), rflags: 2n | AC });
      protectedMode(vcpu, PE | ET | WP, CR4_PSE | CR4_SMAP, 0x10000n, 0n);
      cpu.begin();
      expect(tr(0x40000123n, "read", 0)).toBe(0x200123n);
      protectedMode(vcpu, PE | ET, CR4_PSE, 0x10000n, 0n);
      cpu.begin();
      expect(tr(0x40000123n, "write", 0)).toBe(0x200123n);
      expect(mem.readU32(0x11000) & 0x60).toBe(0x60);

      // PAE: PDPT at 0x12020; PDPTE 1 -> PD 0x13000; PDE 0 -> PT 0x14000 (XD); PTE 5 -> 0x300000; PDE 1: 2 MiB at 4 MiB.
      mem.writeU64(0x12020 + 8, 0x13000n | 1n);
      mem.writeU64(0x13000, (1n << 63n) | 0x14000n | 0x7n);
      mem.writeU64(0x14000 + 5 * 8, 0x300000n | 0x7n);
      mem.writeU64(0x13000 + 8, 0x400000n | 0x83n);
      mem.writeU64(0x13000 + 16, (1n << 40n) | 0x500000n | 0x83n); // a physical bit above MAXPHYADDR 36
      vcpu.setRegs({ ...vcpu.getRegs(), rflags: 2n });
      protectedMode(vcpu, PE | ET | PG | WP, CR4_PAE, 0x12020n, NXE);
      cpu.begin();
      expect(tr(0x40005abcn, "read", 3)).toBe(0x300abcn);
      expect(mem.readU64(0x14000 + 5 * 8) & 0x60n).toBe(0x20n);
      expect(tr(0x40005abcn, "fetch", 3)).toEqual({ code: 0b10101, cr2: 0x40005abcn }); // XD, I/D
      expect(tr(0x40212345n, "write", 0)).toBe(0x412345n);
      expect(mem.readU64(0x13000 + 8) & 0x60n).toBe(0x60n);
      expect(tr(0x40400000n, "read", 0)).toEqual({ code: 0b1001, cr2: 0x40400000n }); // RSVD
      expect(tr(0x80000000n, "read", 0)).toEqual({ code: 0, cr2: 0x80000000n }); // PDPTE 2 not present
      // Without EFER.NXE bit 63 is reserved.
      protectedMode(vcpu, PE | ET | PG | WP, CR4_PAE, 0x12020n, 0n);
      cpu.begin();
      expect(tr(0x40005abcn, "read", 3)).toEqual({ code: 0b1101, cr2: 0x40005abcn });
      // Tables outside RAM stop the emulation with a typed error instead of reading MMIO.
      protectedMode(vcpu, PE | ET | PG, CR4_PSE, 0x7ff000n + 0x1000000n, 0n);
      cpu.begin();
      expect(() => cpu.translate(0n, "read", 0)).toThrowError(expect.objectContaining({ code: "EMULATION_UNSUPPORTED" }));
    } finally {
      vm.close();
      kvm.close();
    }
  });
});
