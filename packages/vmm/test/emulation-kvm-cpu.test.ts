import { longMode64State } from "@tsvmm/elf-loader";
import { PagingTables, TableAllocator } from "@tsvmm/ept";
import { Kvm, requireKvm } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";
import { KvmCpu } from "../src/emulation/kvm-cpu.js";
import { xsaveLayoutFromCpuid } from "../src/emulation/vcpu-emulation.js";

// KvmCpu over a real vCPU: its linear->physical walk takes CR3/CR0.WP/CR4/EFER.NXE from KVM's
// state, sets Accessed/Dirty in the guest's tables as the processor does, and turns a failed walk
// into the #PF error code the SDM gives (P, W, U, I/D); writes go back to KVM only at commit().

const PG = 1n << 31n;
const WP = 1n << 16n;
const NXE = 1n << 11n;
const A = 0x20n;
const D = 0x40n;

describe.runIf(requireKvm())("KvmCpu over a KVM vCPU", () => {
  it("walks the guest's tables with KVM's control registers, sets A/D, and gives #PF error codes", () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    try {
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 8 << 20, name: "ram" });
      const mem = vm.memory;
      const tables = new PagingTables(mem, new TableAllocator(mem, 0x100000, 0x40000));
      tables.map(0x400000, 0x600000, 0x1000, { write: true, user: true });
      tables.map(0x401000, 0x601000, 0x1000, { write: false, user: true });
      tables.map(0x402000, 0x602000, 0x1000, { write: true, user: true, execute: false });
      tables.map(0xffff800000200000n, 0x200000, 0x200000, { write: true, user: false });
      tables.map(0xffffffc000000000n, 0, 0x40000000, { write: true, user: false });
      const vcpu = vm.createVcpu(0);
      vcpu.setCpuid2(kvm.supportedCpuid());
      const st = longMode64State(0x1000n, 0x500, tables.cr3());
      vcpu.setSregs({ ...st.sregs, cr0: st.sregs.cr0 | WP | PG, efer: st.sregs.efer | NXE });
      vcpu.setRegs(st.regs);
      const cpu = new KvmCpu({ vcpu, memory: mem, layout: xsaveLayoutFromCpuid(vcpu.getCpuid2()) });
      cpu.begin();
      const leafOf = (lin: bigint) => tables.translate(lin).steps.at(-1)!;

      expect(cpu.translate(0x400123n, "read", 3)).toBe(0x600123n);
      expect(tables.translate(0x400123n).steps.every((s) => (s.entry & A) === A)).toBe(true);
      expect(leafOf(0x400000n).entry & D).toBe(0n);
      expect(cpu.translate(0x400ff8n, "write", 3)).toBe(0x600ff8n);
      expect(leafOf(0x400000n).entry & D).toBe(D);
      expect(cpu.translate(0xffff800000234567n, "read", 0)).toBe(0x234567n);
      expect(cpu.translate(0xffffffc012345678n, "write", 0)).toBe(0x12345678n);

      const pf = (lin: bigint, access: "read" | "write" | "fetch", cpl: number) => {
        const r = cpu.translate(lin, access, cpl);
        return typeof r === "bigint" ? r : { code: r.errorCode, cr2: r.cr2 };
      };
      expect(pf(0x403000n, "read", 0)).toEqual({ code: 0, cr2: 0x403000n });
      expect(pf(0x403000n, "write", 3)).toEqual({ code: 0b110, cr2: 0x403000n });
      expect(pf(0xffff800000200000n, "read", 3)).toEqual({ code: 0b101, cr2: 0xffff800000200000n });
      // CR0.WP: a supervisor write to a read-only page faults.
      expect(pf(0x401010n, "write", 0)).toEqual({ code: 0b011, cr2: 0x401010n });
      // EFER.NXE: fetch from an XD page, I/D set.
      expect(pf(0x402000n, "fetch", 0)).toEqual({ code: 0b10001, cr2: 0x402000n });
      expect(pf(0x402000n, "read", 0)).toBe(0x602000n);

      // Without WP the same supervisor write goes through; KvmCpu reads the state KVM holds.
      vcpu.setSregs({ ...vcpu.getSregs(), cr0: vcpu.getSregs().cr0 & ~WP });
      cpu.begin();
      expect(cpu.translate(0x401010n, "write", 0)).toBe(0x601010n);

      // Nothing is written back until commit(); then only what changed.
      cpu.begin();
      cpu.writeGpr(3, 0x1234n);
      cpu.writeRip(0x2000n);
      expect(vcpu.getRegs().rbx).toBe(0n);
      cpu.commit();
      expect([vcpu.getRegs().rbx, vcpu.getRegs().rip]).toEqual([0x1234n, 0x2000n]);
    } finally {
      vm.close();
      kvm.close();
    }
  });
});
