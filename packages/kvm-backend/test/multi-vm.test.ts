import { EventFd, GuestRam, Kvm, requireKvm } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";
import { assemble, enableLapic, enterRealMode, routeIoapicPin } from "./helpers.js";

const hasKvm = requireKvm();


describe.runIf(hasKvm)("two VMs in one process", () => {
  it("share a memory region and signal through ioeventfd -> irqfd without the VMM relaying", async () => {
    const kvm = Kvm.open();
    const shared = new GuestRam(0x1000);
    const bell = new EventFd();
    const a = kvm.createVm();
    const b = kvm.createVm();
    try {
      for (const vm of [a, b]) {
        vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
        vm.addMemory({ slot: 1, guestPhysAddr: 0x10000, size: 0x1000, ram: shared });
      }
      b.createIrqchip();
      routeIoapicPin(b, 5, 0x45);
      // A's OUT to port 0x700 signals the eventfd inside KVM; B has the same eventfd as IRQ 5.
      a.registerIoeventfd(bell, { addr: 0x700, len: 1, pio: true });
      b.registerIrqfd(bell, 5);

      const message = `hello from A ${Math.random().toString(36).slice(2, 8)}`;
      const bytes = [...Buffer.from(`${message}\0`)].map((c) => `.byte ${c}`).join("\n");
      // A copies its message into the shared page (0x1000:0 = 0x10000), rings the bell, halts.
      a.memory.write(0x1000, assemble(`mov ax, 0x1000\n mov es, ax\n mov si, offset msg\n xor di, di\n1: lodsb\n stosb\n test al, al\n jnz 1b\n mov al, 1\n mov dx, 0x700\n out dx, al\n hlt\nmsg:\n${bytes}`, 16, 0x1000));
      // B waits for IRQ 5 (vector 0x45); its handler prints the shared page to port 0x3f8.
      b.memory.writeU16(0x45 * 4, 0x1800);
      b.memory.writeU16(0x45 * 4 + 2, 0);
      b.memory.write(0x1800, assemble("mov ax, 0x1000\n mov ds, ax\n xor si, si\n mov dx, 0x3f8\n1: lodsb\n test al, al\n jz 2f\n out dx, al\n jmp 1b\n2: mov al, 0xdd\n out 0x71, al\n hlt", 16, 0x1800));
      b.memory.write(0x1000, assemble("sti\n hlt\n 1: jmp 1b", 16, 0x1000));
      const va = a.createVcpu(0);
      const vb = b.createVcpu(0);
      enableLapic(vb);
      enterRealMode(va, 0x1000);
      enterRealMode(vb, 0x1000);

      let received = "";
      const bDone = (async () => {
        for (;;) {
          const e = await vb.runAsync();
          if (e.kind !== "io") return e.kind;
          if (e.port === 0x3f8) received += String.fromCharCode(e.value);
          if (e.port === 0x71) return "done";
        }
      })();
      await new Promise((r) => setTimeout(r, 30)); // B is asleep in HLT inside KVM
      expect(received).toBe("");
      const aExit = await va.runAsync();
      // The bell never reached userspace: A's next exit is its HLT, not the OUT.
      expect(aExit.kind).toBe("hlt");
      expect(await bDone).toBe("done");
      expect(received).toBe(message);
      expect(bell.read()).toBeUndefined(); // the irqfd consumed the signal
    } finally {
      a.close();
      b.close();
      shared.close();
      bell.close();
      kvm.close();
    }
  });

  it("a GuestRam in use cannot be closed, and is cleared when its last VM releases it", () => {
    using kvm = Kvm.open();
    const ram = new GuestRam(0x2000);
    const a = kvm.createVm();
    const b = kvm.createVm();
    a.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x2000, ram });
    b.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x2000, ram });
    ram.buffer[5] = 9;
    expect(a.memory.readU8(5)).toBe(9);
    expect(b.memory.readU8(5)).toBe(9);
    expect(() => ram.close()).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
    a.close();
    expect([ram.inUse, ram.buffer[5]]).toEqual([1, 9]); // B still uses it: contents stay
    b.close();
    // No VM has it now: cleared before it can be given to another (Jailhouse's rule).
    expect(ram.inUse).toBe(0);
    expect(ram.buffer.every((x) => x === 0)).toBe(true);
    ram.close();
    expect(() => ram.buffer).toThrowError(expect.objectContaining({ code: "KVM_CLOSED" }));
  });

  it("a GuestRam created with clearOnRelease: false keeps its contents across VMs", () => {
    using kvm = Kvm.open();
    const ram = new GuestRam(0x1000, { clearOnRelease: false });
    const vm = kvm.createVm();
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x1000, ram });
    vm.memory.writeU32(0x10, 0xfeedf00d);
    vm.close();
    expect(ram.buffer.readUInt32LE(0x10)).toBe(0xfeedf00d);
    ram.close();
  });
});
