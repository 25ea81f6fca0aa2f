import { Kvm, requireKvm, runLoopAsync, type Vcpu } from "@tsvmm/kvm-backend";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { assemble, enterRealMode, openFds, threadsNamed } from "./helpers.js";

const hasKvm = requireKvm();

/** Runner threads alive in this process. */
const threads = (): number => threadsNamed("tsvmm-vcpu");

/** Real-mode code for vCPU `i`: take `n` tickets with IN from port 0x10, store each at 0x2000 + i*0x1000. */
function ticketTaker(i: number, n: number): Buffer {
  return assemble(`mov ecx, ${n}\n mov di, ${0x2000 + i * 0x1000}\n1: in eax, 0x10\n mov [di], eax\n add di, 4\n dec ecx\n jnz 1b\n hlt`, 16, 0x1000 + i * 0x100);
}

describe.runIf(hasKvm)("runLoopAsync: the path Vmm uses", () => {
  it("vCPUs hammering one device see its state consistent: every ticket handed out exactly once, in each vCPU's order", async () => {
    const kvm = Kvm.open();
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 2, max: 4 }), fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 4, maxLength: 4 }), async (nv, counts) => {
          const vm = kvm.createVm();
          try {
            vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 1 << 20 });
            const vcpus: Vcpu[] = [];
            for (let i = 0; i < nv; i++) {
              vm.memory.write(0x1000 + i * 0x100, ticketTaker(i, counts[i]!));
              const v = vm.createVcpu(i);
              enterRealMode(v, 0x1000 + i * 0x100);
              vcpus.push(v);
            }
            // The device: a ticket counter read by IN, with a read-modify-write per access. If two
            // accesses ever interleaved, a ticket would be handed out twice.
            let next = 0;
            const results = await Promise.all(
              vcpus.map((v) =>
                runLoopAsync(v, {
                  io: (e) => {
                    if (e.port !== 0x10 || e.direction !== "in") throw new Error(`unexpected io ${JSON.stringify(e.toJSON())}`);
                    const t = next;
                    e.setValue(t);
                    next = t + 1;
                    return false;
                  },
                  hlt: () => true,
                }),
              ),
            );
            const total = counts.slice(0, nv).reduce((a, b) => a + b, 0);
            expect(next).toBe(total);
            const seen: number[] = [];
            for (let i = 0; i < nv; i++) {
              expect(results[i]!.exit?.kind).toBe("hlt");
              expect(results[i]!.exits).toBe(counts[i]! + 1);
              const mine: number[] = [];
              for (let k = 0; k < counts[i]!; k++) mine.push(vm.memory.readU32(0x2000 + i * 0x1000 + k * 4));
              // A vCPU's tickets increase: the device never went back in time for it.
              for (let k = 1; k < mine.length; k++) expect(mine[k]!).toBeGreaterThan(mine[k - 1]!);
              seen.push(...mine);
            }
            seen.sort((a, b) => a - b);
            expect(seen).toEqual(Array.from({ length: total }, (_, k) => k));
          } finally {
            vm.close();
          }
        }),
        { numRuns: 12 },
      );
    } finally {
      kvm.close();
    }
  });

  it("128 VMs run at once on one JavaScript thread; every thread and fd is released afterwards", async () => {
    const kvm = Kvm.open();
    const fds0 = openFds();
    const threads0 = threads();
    const code = assemble("mov ecx, 50\n1: out 0x10, al\n inc al\n dec ecx\n jnz 1b\n hlt", 16, 0x1000);
    const vms = Array.from({ length: 128 }, () => kvm.createVm());
    try {
      const runs = vms.map((vm, i) => {
        vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
        vm.memory.write(0x1000, code);
        const v = vm.createVcpu(0);
        enterRealMode(v, 0x1000);
        v.setRegs({ ...v.getRegs(), rax: BigInt(i) });
        const got: number[] = [];
        return runLoopAsync(v, {
          io: (e) => {
            got.push(e.value);
            return false;
          },
          hlt: () => true,
        }).then((r) => ({ r, got, i }));
      });
      // The event loop stays free while they run: a timer fires in between.
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const all = await Promise.all(runs);
      clearInterval(timer);
      for (const { r, got, i } of all) {
        expect(r.exit?.kind).toBe("hlt");
        expect(got).toEqual(Array.from({ length: 50 }, (_, k) => (i + k) & 0xff));
      }
      expect(ticks).toBeGreaterThan(0);
    } finally {
      for (const vm of vms) vm.close();
    }
    expect(threads()).toBe(threads0);
    kvm.close();
    expect(openFds()).toBeLessThanOrEqual(fds0);
  });

  it("kick() stops a vCPU that never exits, and one that exits back to back; each run's threads are gone after close", async () => {
    const kvm = Kvm.open();
    try {
      for (const src of ["1: jmp 1b", "1: out 0x10, al\n jmp 1b"]) {
        const vm = kvm.createVm();
        vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
        vm.memory.write(0x1000, assemble(src, 16, 0x1000));
        const v = vm.createVcpu(0);
        enterRealMode(v, 0x1000);
        const threads0 = threads();
        let ios = 0;
        const done = runLoopAsync(v, {
          io: () => {
            ios++;
            return false;
          },
          interrupted: () => true,
        });
        await new Promise((r) => setTimeout(r, 20));
        expect(threads()).toBe(threads0 + 1); // the runner
        v.kick();
        const r = await done;
        expect(r.exit?.kind).toBe("interrupted");
        expect(r.exits).toBe(ios + 1);
        if (src.includes("out")) {
          // The vCPU runs again after a kick, and shouldStop ends the loop between two exits.
          let left = 3;
          const again = await runLoopAsync(v, { io: () => false }, { shouldStop: () => left-- === 0 });
          expect(again).toEqual({ exit: undefined, exits: 3 });
        }
        vm.close();
        expect(threads()).toBe(threads0);
      }
    } finally {
      kvm.close();
    }
  });

  it("a throwing handler rejects the loop with its error and leaves the vCPU usable; close() while running rejects with KVM_CLOSED", async () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    try {
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
      vm.memory.write(0x1000, assemble("1: out 0x10, al\n jmp 1b", 16, 0x1000));
      const v = vm.createVcpu(0);
      enterRealMode(v, 0x1000);
      let n = 0;
      await expect(
        runLoopAsync(v, {
          io: () => {
            if (++n === 5) throw new Error("device fault");
            return false;
          },
        }),
      ).rejects.toThrow("device fault");
      expect(n).toBe(5);
      const next = await runLoopAsync(v, { io: () => true });
      expect(next.exit?.kind).toBe("io");
      const p = runLoopAsync(v, { io: () => false });
      await expect(v.runAsync()).rejects.toMatchObject({ code: "KVM_VCPU_BUSY" });
      setTimeout(() => v.close(), 5);
      await expect(p).rejects.toMatchObject({ code: "KVM_CLOSED" });
    } finally {
      vm.close();
      kvm.close();
    }
  });
});
