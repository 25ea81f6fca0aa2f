import {
  HC_SIGNATURE, HcStatus, KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE, type KvmCpuidEntry2,
} from "@tsvmm/abi";
import { BOOT_CS, BOOT_PAGE_TABLES_ADDR } from "@tsvmm/elf-loader";
import { EventFd, kvmAvailable, type Vm, x86DefaultGsiRoutes, x86Msi } from "@tsvmm/kvm-backend";
import { beforeAll, describe, expect, it } from "vitest";
import { BootMode } from "../harness/elf.js";
import { fibMod32, gcd, randomU32, randomU64, s64, vendorRegs, xorshiftSum } from "../harness/expect.js";
import { buildGuests, type RunResult, runGuest } from "../harness/guest.js";

// One `it` per guest in test-kernels/tests. Every case boots its guest on the real /dev/kvm and
// checks what the guest reported against what the VMM side set up or computed independently.

const ACCESSED_DIRTY = 0x60n;
// The boot identity map (boot contract): ept's allocator hands out its pages in order from
// BOOT_PAGE_TABLES_ADDR: the PML4, then the PDPT, then the first page directory.
const BOOT_PML4 = BOOT_PAGE_TABLES_ADDR;
const BOOT_PDPT = BOOT_PAGE_TABLES_ADDR + 0x1000;
const BOOT_PD = BOOT_PAGE_TABLES_ADDR + 0x2000;
const KERNEL_CS = 0x08n;

beforeAll(() => {
  buildGuests();
  // These cases exist to run guests on KVM: without /dev/kvm they fail here, loudly, rather than pass.
  expect(kvmAvailable(), "/dev/kvm must be readable and writable to run the test kernels").toBe(true);
});

function expectCleanExit(r: RunResult, code = 0): void {
  expect(r.end, `console: ${r.console} hypercalls: ${JSON.stringify(r.hypercalls)}`).toEqual({ kind: "exit" });
  expect(r.exitCode).toBe(code);
}

function cpuidEdit(entries: KvmCpuidEntry2[], fn: number, index: number, edit: Partial<KvmCpuidEntry2>): KvmCpuidEntry2[] {
  const hit = entries.some((e) => e.function === fn && e.index === index);
  if (hit) return entries.map((e) => (e.function === fn && e.index === index ? { ...e, ...edit } : e));
  return [...entries, { function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...edit }];
}

describe("test-kernels on /dev/kvm", () => {
  it("hello: hypercall console and UART", async () => {
    const r = await runGuest({ name: "hello" });
    expectCleanExit(r);
    expect(r.console).toContain("Hello from a tsvmm guest (hypercall console)\n");
    expect(r.console).toContain("version=1\n");
    expect(r.uart).toBe("Hello from a tsvmm guest (uart)\n");
    expect(r.passed("hello")).toBe(true);
  });

  it("exit-code: test_main's return value is the EXIT code", async () => {
    const r = await runGuest({ name: "exit-code" });
    expectCleanExit(r, 42);
    expect(r.passed("before-exit")).toBe(true);
  });

  it("realmode-arith: 16-bit real mode arithmetic", async () => {
    const r = await runGuest({ name: "realmode-arith" });
    expectCleanExit(r);
    expect(r.mode).toBe(BootMode.real16);
    let squares = 0;
    for (let i = 1; i <= 100; i++) squares += i * i;
    expect(r.value("sum-of-squares-1-100")).toBe(BigInt(squares));
    expect(r.value("gcd-1071-462")).toBe(BigInt(gcd(1071, 462)));
    expect(r.value("u16-0xbeef-times-3")).toBe(BigInt((0xbeef * 3) & 0xffff));
    expect(r.value("1000000-div-7")).toBe(BigInt(Math.floor(1_000_000 / 7)));
    expect(r.value("1000000-mod-7")).toBe(BigInt(1_000_000 % 7));
    expect(r.value("cr0") & 1n).toBe(0n);
    expect(r.value("cs")).toBe(0n);
    expect(r.passed("realmode")).toBe(true);
  });

  it("pmode-flat: flat 32-bit protected mode without paging", async () => {
    let at8m = 0;
    const r = await runGuest({ name: "pmode-flat", inspect: ({ vm }) => (at8m = vm.memory.readU32(0x800000)) });
    expectCleanExit(r);
    expect(r.mode).toBe(BootMode.prot32);
    expect(r.value("cr0") & 0x80000001n).toBe(1n);
    expect(r.value("cs")).toBe(BigInt(BOOT_CS));
    expect(r.value("fib47-mod-2^32")).toBe(BigInt(fibMod32(47)));
    expect(r.value("readback-8mib")).toBe(0xc0ffee11n);
    expect(at8m).toBe(0xc0ffee11);
  });

  it("longmode-self-paged: prot32 entry builds its own tables and enters long mode", async () => {
    const r = await runGuest({ name: "longmode-self-paged" });
    expectCleanExit(r);
    expect(r.mode).toBe(BootMode.prot32);
    expect(r.value("cr3")).toBe(r.value("self_pml4"));
    expect(r.value("cr3")).not.toBe(BigInt(BOOT_PML4));
    expect(r.value("efer") & 0x500n).toBe(0x500n);
    expect(r.value("cr4") & 0x20n).toBe(0x20n);
    expect(r.value("cr0") & 0x80000001n).toBe(0x80000001n);
    expect(r.value("cs")).toBe(KERNEL_CS);
    expect(r.value("pd511") & ~ACCESSED_DIRTY).toBe((511n << 21n) | 0x87n);
    expect(r.passed("long-mode-active")).toBe(true);
  });

  it("longmode-vmm-paged: long64 entry on the VMM's identity map", async () => {
    let written = 0n;
    const r = await runGuest({ name: "longmode-vmm-paged", inspect: ({ vm }) => (written = vm.memory.readU64(0xf00000)) });
    expectCleanExit(r);
    expect(r.mode).toBe(BootMode.long64);
    expect(r.value("cr3")).toBe(BigInt(BOOT_PML4));
    expect(r.value("efer") & 0x500n).toBe(0x500n);
    expect(r.value("cr0") & 0x80000001n).toBe(0x80000001n);
    expect(r.value("cr4") & 0x20n).toBe(0x20n);
    // The CPU may set Accessed/Dirty while walking: compare the rest.
    expect(r.value("pml4[0]") & ~ACCESSED_DIRTY).toBe(BigInt(BOOT_PDPT) | 7n);
    expect(r.value("pdpt[0]") & ~ACCESSED_DIRTY).toBe(BigInt(BOOT_PD) | 7n);
    expect(r.value("pdpt[1]")).toBe(0n);
    expect(r.value("pd[0]") & ~ACCESSED_DIRTY).toBe(0x87n);
    expect(r.value("pd[511]") & ~ACCESSED_DIRTY).toBe((511n << 21n) | 0x87n);
    expect(written).toBe(0x5a5a5a5aa5a5a5a5n);
  });

  it("pio-out-sizes: 8/16/32-bit OUT", async () => {
    const r = await runGuest({ name: "pio-out-sizes" });
    expectCleanExit(r);
    expect(r.io.map(({ port, size, direction, values }) => ({ port, size, direction, values }))).toEqual([
      { port: 0x500, size: 1, direction: "out", values: [0x12] },
      { port: 0x502, size: 2, direction: "out", values: [0x3456] },
      { port: 0x504, size: 4, direction: "out", values: [0x789abcde] },
      { port: 0x501, size: 1, direction: "out", values: [0xff] },
    ]);
  });

  it("pio-in: 8/16/32-bit IN see the VMM's answers", async () => {
    const answers = new Map([
      [0x520, randomU32() & 0xff],
      [0x522, randomU32() & 0xffff],
      [0x524, randomU32()],
    ]);
    const r = await runGuest({ name: "pio-in", onIo: (port, _size, dir) => (dir === "in" ? answers.get(port) : undefined) });
    expectCleanExit(r);
    expect(r.value("inb-0x520")).toBe(BigInt(answers.get(0x520)!));
    expect(r.value("inw-0x522")).toBe(BigInt(answers.get(0x522)!));
    expect(r.value("inl-0x524")).toBe(BigInt(answers.get(0x524)!));
    expect(r.value("signature")).toBe(BigInt(HC_SIGNATURE));
  });

  it("string-pio: rep outsb / rep insb", async () => {
    const feed = Buffer.from(Array.from({ length: 16 }, () => randomU32() & 0xff));
    let next = 0;
    const r = await runGuest({ name: "string-pio", onIo: (port, _s, dir) => (dir === "in" && port === 0x531 ? feed[next++ % 16] : undefined) });
    expectCleanExit(r);
    const out = r.io.filter((x) => x.port === 0x530 && x.direction === "out").flatMap((x) => x.values);
    expect(Buffer.from(out).toString("latin1")).toBe("tsvmm string pio");
    expect(r.io.filter((x) => x.port === 0x531).flatMap((x) => x.values)).toEqual([...feed]);
    expect(r.value("outsb-left")).toBe(0n);
    expect(r.value("insb-left")).toBe(0n);
    expect(r.value("insb-0-7")).toBe(feed.readBigUInt64LE(0));
    expect(r.value("insb-8-15")).toBe(feed.readBigUInt64LE(8));
  });

  it("mmio-read: loads outside RAM exit and read the VMM's answer", async () => {
    const salt = randomU64();
    const answer = (a: bigint, len: number): bigint => BigInt.asUintN(len * 8, (a * 0x9e3779b97f4a7c15n) ^ salt);
    const r = await runGuest({ name: "mmio-read", onMmioRead: answer });
    expectCleanExit(r);
    const dev = 0x20000000n;
    expect(r.mmio.map((m) => [m.address, m.length, m.isWrite])).toEqual([
      [dev, 1, false],
      [dev + 0x10n, 2, false],
      [dev + 0x20n, 4, false],
      [dev + 0x30n, 8, false],
    ]);
    expect(r.value("read8")).toBe(answer(dev, 1));
    expect(r.value("read16")).toBe(answer(dev + 0x10n, 2));
    expect(r.value("read32")).toBe(answer(dev + 0x20n, 4));
    expect(r.value("read64")).toBe(answer(dev + 0x30n, 8));
  });

  it("mmio-write: stores outside RAM exit with address, size and data", async () => {
    const r = await runGuest({ name: "mmio-write" });
    expectCleanExit(r);
    const dev = 0x20000000n;
    expect(r.mmio.map((m) => [m.address, m.length, m.isWrite, m.value])).toEqual([
      [dev + 0x1n, 1, true, 0xabn],
      [dev + 0x12n, 2, true, 0xcdefn],
      [dev + 0x24n, 4, true, 0x01234567n],
      [dev + 0x38n, 8, true, 0x89abcdef02468acen],
    ]);
  });

  it("ro-memory-write-exits: a read-only slot reads freely, a write exits and changes nothing", async () => {
    const rom = 0x1000000;
    const fill = Buffer.from(Array.from({ length: 16 }, () => randomU32() & 0xff));
    let after = Buffer.alloc(0);
    const r = await runGuest({
      name: "ro-memory-write-exits",
      slots: [{ base: rom, size: 0x10000, readonly: true, fill }],
      inspect: ({ vm }) => (after = Buffer.from(vm.memory.slice(rom, 16))),
    });
    expectCleanExit(r);
    expect(r.value("before")).toBe(fill.readBigUInt64LE(0));
    expect(r.value("after")).toBe(fill.readBigUInt64LE(0));
    expect(r.value("after+8")).toBe(fill.readBigUInt64LE(8));
    expect(r.mmio.map((m) => [m.address, m.length, m.isWrite, m.value])).toEqual([[BigInt(rom + 8), 4, true, 0xdeadbeefn]]);
    expect(after.equals(fill)).toBe(true);
  });

  it("cpuid-basic: leaves 0 and 1 are what KVM_SET_CPUID2 set", async () => {
    const sig = 0x000a0f00 | (randomU32() & 0xff); // family/model/stepping bits the guest must echo
    const r = await runGuest({ name: "cpuid-basic", cpuid: (t) => cpuidEdit(t, 1, 0, { eax: sig }) });
    expectCleanExit(r);
    const { set, held } = r.cpuid[0]!;
    const leaf = (t: KvmCpuidEntry2[], fn: number) => t.find((e) => e.function === fn && e.index === 0)!;
    // The guest sees exactly the table KVM holds after KVM_SET_CPUID2 ...
    for (const fn of [0, 1]) {
      const e = leaf(held, fn);
      expect([`eax`, `ebx`, `ecx`, `edx`].map((reg) => r.value(`cpuid.${fn}.${reg}`))).toEqual(
        [e.eax, e.ebx, e.ecx, e.edx].map((v) => BigInt(v)),
      );
    }
    expect(r.value("cpuid.1.eax")).toBe(BigInt(sig));
    // ... which is what we set for leaf 0 and for leaf 1 EAX/EBX. For leaf 1 ECX/EDX KVM only ever
    // adds bits: on this PVM host KVM_GET_CPUID2 returned e.g. ECX 0xf7fa3203 for a table that
    // said 0x81203000 (SSE3, SSSE3, ... added) and EDX.HTT set; OSXSAVE follows CR4.OSXSAVE.
    expect(leaf(held, 0)).toEqual(leaf(set, 0));
    const s1 = leaf(set, 1);
    const h1 = leaf(held, 1);
    expect([h1.eax, h1.ebx]).toEqual([s1.eax, s1.ebx]);
    expect((s1.ecx & ~h1.ecx & ~(1 << 27)) >>> 0).toBe(0);
    expect((s1.edx & ~h1.edx) >>> 0).toBe(0);
  });

  it("cpuid-vendor-and-brand: vendor and brand string set by the VMM", async () => {
    const vendor = "TsvmmTestCPU";
    const brand = `tsvmm test-kernels vCPU #${randomU32().toString(16)}`.padEnd(48, "\0");
    const r = await runGuest({
      name: "cpuid-vendor-and-brand",
      cpuid: (t) => {
        let out = cpuidEdit(t, 0, 0, vendorRegs(vendor));
        const b = Buffer.from(brand, "latin1");
        for (let i = 0; i < 3; i++) {
          const o = 16 * i;
          out = cpuidEdit(out, 0x80000002 + i, 0, { eax: b.readUInt32LE(o), ebx: b.readUInt32LE(o + 4), ecx: b.readUInt32LE(o + 8), edx: b.readUInt32LE(o + 12) });
        }
        return out;
      },
    });
    expectCleanExit(r);
    expect(r.console).toContain(`vendor=${vendor}\n`);
    expect(r.console).toContain(`brand=${brand.replace(/\0+$/, "")}\n`);
    const v = Buffer.from(vendor, "latin1");
    expect(r.value("vendor[0..8]")).toBe(v.readBigUInt64LE(0));
    expect(r.value("vendor[8..12]")).toBe(BigInt(v.readUInt32LE(8)));
    expect(r.value("max-extended-leaf")).toBeGreaterThanOrEqual(0x80000004n);
  });

  it("cpuid-hypervisor-leaf: hypervisor bit and the 0x40000000 signature", async () => {
    const maxLeaf = 0x40000000 + (randomU32() % 16) + 1;
    const r = await runGuest({
      name: "cpuid-hypervisor-leaf",
      cpuid: (t) => cpuidEdit(t, 0x40000000, 0, { eax: maxLeaf, ...vendorRegs("TsvmmTsvmm\0\0") }),
    });
    expectCleanExit(r);
    const sig = Buffer.from("TsvmmTsvmm\0\0", "latin1");
    expect(r.value("hypervisor-bit")).toBe(1n);
    expect(r.value("0x40000000.eax")).toBe(BigInt(maxLeaf));
    expect(r.value("0x40000000.ebx")).toBe(BigInt(sig.readUInt32LE(0)));
    expect(r.value("0x40000000.edx")).toBe(BigInt(sig.readUInt32LE(4)));
    expect(r.value("0x40000000.ecx")).toBe(BigInt(sig.readUInt32LE(8)));
  });

  it("msr-read-allowed: allowed RDMSRs stay in KVM, a read-filtered one asks the VMM", async () => {
    const host = randomU64();
    const r = await runGuest({
      name: "msr-read-allowed",
      msrFilter: { flags: KVM_MSR_FILTER_DEFAULT_ALLOW, ranges: [{ flags: KVM_MSR_FILTER_READ, base: 0x174, nmsrs: 1, bitmap: new Uint8Array(8) }] },
      onMsr: (kind, index) => (kind === "rdmsr" && index === 0x174 ? host : "fail"),
    });
    expectCleanExit(r);
    expect(r.msrs.map((m) => [m.kind, m.index, m.outcome])).toEqual([["rdmsr", 0x174, "ok"]]);
    expect(r.value("sysenter_cs")).toBe(host);
    expect(r.value("apic_base") & ~0xfffn).toBe(0xfee00000n);
    expect(r.value("apic_base") & 0x900n).toBe(0x900n); // BSP, xAPIC enabled
    expect(r.value("efer") & 0x500n).toBe(0x500n);
    expect(r.passed("tsc-advances")).toBe(true);
  });

  it("msr-write-filtered: the VMM accepts one filtered WRMSR and refuses another (#GP)", async () => {
    const r = await runGuest({
      name: "msr-write-filtered",
      msrFilter: { flags: KVM_MSR_FILTER_DEFAULT_ALLOW, ranges: [{ flags: KVM_MSR_FILTER_WRITE, base: 0x174, nmsrs: 2, bitmap: new Uint8Array(8) }] },
      onMsr: (kind, index) => (kind === "wrmsr" && index === 0x174 ? true : "fail"),
    });
    expectCleanExit(r);
    expect(r.msrs.map((m) => [m.kind, m.index, m.data, m.outcome])).toEqual([
      ["wrmsr", 0x174, 0x10n, "ok"],
      ["wrmsr", 0x175, 0xffffdead0000n, "fail"],
    ]);
    expect(r.value("sysenter_eip")).toBe(0x1234f0n);
    expect(s64(r.value("accepted-write-vector"))).toBe(-1n);
    expect(r.value("refused-write-vector")).toBe(13n);
    expect(r.value("refused-write-rip-ok")).toBe(1n);
  });

  it("exceptions-ud: #UD at the ud2, handler reports vector/error/RIP", async () => {
    const r = await runGuest({ name: "exceptions-ud" });
    expectCleanExit(r);
    expect(r.value("vector")).toBe(6n);
    expect(r.value("exception.vector")).toBe(6n);
    expect(r.value("exception.error")).toBe(0n);
    expect(r.value("exception.rip")).toBe(r.value("expected-rip"));
    expect(r.passed("rip-is-the-ud2")).toBe(true);
  });

  it("exceptions-gp: #GP(0) on a non-canonical load", async () => {
    const r = await runGuest({ name: "exceptions-gp" });
    expectCleanExit(r);
    expect(r.value("vector")).toBe(13n);
    expect(r.value("error")).toBe(0n);
    expect(r.value("exception.rip")).toBe(r.value("expected-rip"));
    expect(r.passed("rip-is-the-load")).toBe(true);
  });

  it("exceptions-pf: #PF with CR2 and a write/not-present error code", async () => {
    const r = await runGuest({ name: "exceptions-pf" });
    expectCleanExit(r);
    expect(r.value("vector")).toBe(14n);
    expect(r.value("error")).toBe(2n); // W=1, P=0, U=0
    expect(r.value("cr2")).toBe(0x40001008n);
    expect(r.value("exception.cr2")).toBe(0x40001008n);
    expect(r.value("exception.rip")).toBe(r.value("expected-rip"));
    expect(r.passed("rip-is-the-store")).toBe(true);
  });

  it("int3-at-cpl3: #BP from user mode, user code resumes", async () => {
    const r = await runGuest({ name: "int3-at-cpl3" });
    expectCleanExit(r);
    expect(r.value("user-result")).toBe(16n);
    expect(r.value("bp-count")).toBe(2n);
    expect(s64(r.value("fault-vector"))).toBe(-1n);
    const bps = r.values.filter((v) => v.name === "exception.vector").map((v) => v.value);
    expect(bps).toEqual([3n, 3n]);
    const rips = r.values.filter((v) => v.name === "exception.rip").map((v) => v.value);
    expect(rips[1]!).toBeGreaterThan(rips[0]!);
  });

  it("user-mode-roundtrip: CPL3 work runs natively and returns; CPL3 port I/O faults back to CPL0", async () => {
    const n = 10_000_000;
    const r = await runGuest({ name: "user-mode-roundtrip" });
    expectCleanExit(r);
    expect(r.value("xorshift-sum-10M")).toBe(BigInt(xorshiftSum(n)));
    expect(s64(r.value("user-fault"))).toBe(-1n);
    // CPL3 is what matters. On this PVM host `mov %cs` at CPL3 reads the host's user selector
    // (0x33), not the guest's 0x23: user code runs natively in the host's user segment.
    expect(r.value("user-cs") & 3n).toBe(3n);
    expect(r.value("kernel-cs")).toBe(KERNEL_CS);
    expect(r.value("port-io-result")).toBe(0n);
    expect(r.value("port-io-fault")).toBe(13n);
    // 10M iterations in well under a second: impossible at ~1 µs per emulated instruction.
    expect(r.elapsedMs).toBeLessThan(5000);
  });

  it("interrupt-injection: GSI 4 through the in-kernel IOAPIC reaches the IDT handler", async () => {
    const r = await runGuest({
      name: "interrupt-injection",
      irqchip: true,
      onValue: (name, _v, { vm }) => {
        if (name !== "irq.ready") return;
        vm.irqLine(4, 1);
        vm.irqLine(4, 0);
      },
    });
    expectCleanExit(r);
    expect(r.value("irq.hits")).toBe(1n);
    expect(r.value("irq.vector")).toBe(0x30n);
  });

  it("halt-and-wake: HLT sleeps until the LAPIC timer fires", async () => {
    const r = await runGuest({ name: "halt-and-wake", irqchip: true });
    expectCleanExit(r);
    const start = r.values.find((v) => v.name === "halt.start")!;
    const woke = r.values.find((v) => v.name === "halt.woke")!;
    expect(woke.value).toBeGreaterThanOrEqual(1n);
    const ms = woke.at - start.at;
    expect(ms).toBeGreaterThanOrEqual(Number(start.value) / 1e6 * 0.9);
    expect(ms).toBeLessThan(2000);
  });

  it("pit-timer: the PIT appears at the first access to its ports, and counts and interrupts as KVM's i8254", async () => {
    let atBuild: boolean | undefined;
    let vmRef: Vm | undefined;
    let tscKhz = 0;
    const r = await runGuest({
      name: "pit-timer",
      irqchip: true,
      prepare: ({ vm }) => {
        atBuild = vm.hasPit2;
        vmRef = vm;
        return undefined;
      },
      inspect: ({ vcpus }) => {
        tscKhz = vcpus[0]!.getTscKhz();
      },
    });
    expectCleanExit(r);
    expect(atBuild).toBe(false);
    expect(vmRef?.hasPit2).toBe(true);
    // Its interrupts arrive where the MADT and MP table say ISA IRQ 0 is, GSI 2, and nowhere else.
    expect(r.value("pit.pin2")).toBeGreaterThanOrEqual(10n);
    expect(r.value("pit.pin0")).toBe(0n);
    // Ten periods of 1193 counts at 1.193182 MHz, in the guest's TSC (KVM's rate for this vCPU).
    expect(tscKhz).toBeGreaterThan(0);
    expect(Number(r.value("pit.tsc")) / tscKhz).toBeGreaterThanOrEqual(10 * (1193 / 1193.182) * 0.98);
    expect(r.value("pit.count")).toBeLessThanOrEqual(r.value("pit.armed"));
    // No access reached the port bus: KVM's PIT answered every one (the first replayed into it).
    expect(r.io.filter((a) => (a.port >= 0x40 && a.port <= 0x43) || a.port === 0x61)).toEqual([]);
  });

  it("pit-timer on two vCPUs: both touch the absent PIT at once; one PIT is created and both writes reach it", async () => {
    const r = await runGuest({ name: "pit-timer", irqchip: true, vcpus: 2 });
    expect(r.end).toEqual({ kind: "exit" });
    expect([...r.exitCodes.entries()].sort()).toEqual([[0, 0], [1, 0]]);
    for (const id of [0, 1]) expect(r.value("pit.first", id)).toBe(1n);
    // Counter 1 as vCPU 1's first write set it: low/high byte (bits 5-4) and mode 2 (bits 3-1).
    expect(r.value("pit.status1", 1) & 0x3fn).toBe(0x34n);
    expect(r.io.filter((a) => (a.port >= 0x40 && a.port <= 0x43) || a.port === 0x61)).toEqual([]);
  });

  it("smp-two-vcpus: both vCPUs run and report their APIC ids", async () => {
    const r = await runGuest({ name: "smp-two-vcpus", vcpus: 2, irqchip: true });
    expect(r.end).toEqual({ kind: "exit" });
    expect([...r.exitCodes.entries()].sort()).toEqual([[0, 0], [1, 0]]);
    for (const id of [0, 1]) {
      expect(r.value("apic.cpuid", id)).toBe(BigInt(id));
      expect(r.value("apic.lapic", id)).toBe(BigInt(id));
    }
  });

  it("dirty-pages: KVM's dirty bitmap is exactly the pages the guest wrote", async () => {
    const mask = randomU64();
    const base = 0x1000000;
    let dirty: number[] = [];
    const words: bigint[] = [];
    const r = await runGuest({
      name: "dirty-pages",
      slots: [{ base, size: 64 * 4096, logDirty: true }],
      onIo: (port, _s, dir) => (dir !== "in" ? undefined : port === 0x540 ? Number(mask & 0xffffffffn) : port === 0x544 ? Number(mask >> 32n) : undefined),
      inspect: ({ vm }) => {
        dirty = vm.dirtyPages(1);
        for (let i = 0; i < 64; i++) words.push(vm.memory.readU64(base + i * 4096 + ((i * 8) % 4096)));
      },
    });
    expectCleanExit(r);
    expect(r.value("mask")).toBe(mask);
    expect(s64(r.value("user-fault"))).toBe(-1n);
    const expected = Array.from({ length: 64 }, (_, i) => i).filter((i) => (mask >> BigInt(i)) & 1n);
    expect(dirty).toEqual(expected);
    expect(words).toEqual(Array.from({ length: 64 }, (_, i) => ((mask >> BigInt(i)) & 1n ? BigInt(i + 1) : 0n)));
  });

  it("hypercall-bad-args: malformed calls get error codes, the VMM keeps running", async () => {
    const r = await runGuest({ name: "hypercall-bad-args" });
    expectCleanExit(r);
    const expected: Record<string, bigint> = {
      "unknown-call": BigInt(HcStatus.E_NOSYS),
      "console-bad-pointer": BigInt(HcStatus.E_FAULT),
      "console-too-long": BigInt(HcStatus.E_INVAL),
      "report-name-too-long": BigInt(HcStatus.E_INVAL),
      "report-bad-pass": BigInt(HcStatus.E_INVAL),
      "exit-code-too-big": BigInt(HcStatus.E_INVAL),
      "version-zero": BigInt(HcStatus.E_VERSION),
      "version-future": 1n,
      "wrong-block-version": BigInt(HcStatus.E_VERSION),
      "bad-magic-status": BigInt(HcStatus.E_BADBLOCK),
      "bad-magic-result-untouched": 12345n,
      "misaligned-status": BigInt(HcStatus.E_BADBLOCK),
      "outside-ram-status": BigInt(HcStatus.E_BADBLOCK),
      "word-doorbell-status": BigInt(HcStatus.E_ACCESS),
      "ok-after-all": 1n,
    };
    const got = Object.fromEntries(Object.keys(expected).map((k) => [k, s64(r.value(k))]));
    expect(got).toEqual(expected);
    expect(r.console).toBe("x");
  });

  it("triple-fault: #UD with no IDT ends in a clean shutdown exit", async () => {
    const r = await runGuest({ name: "triple-fault" });
    expect(r.end).toEqual({ kind: "shutdown", vcpu: 0 });
    expect(r.passed("about-to-triple-fault")).toBe(true);
    expect(r.reports.some((x) => x.name === "survived")).toBe(false);
  });

  it("halt-irq-off: a vCPU halted with interrupts off ends the VM as a guest error within seconds", async () => {
    const r = await runGuest({ name: "halt-irq-off", irqchip: true, timeoutMs: 20_000 });
    expect(r.end).toMatchObject({ kind: "other", detail: { kind: "halted", vcpu: 0 } });
    expect(r.passed("about-to-halt")).toBe(true);
    expect(r.reports.some((x) => x.name === "woke")).toBe(false);
    expect(r.elapsedMs).toBeLessThan(5000);
  });

  it("runaway-loop: the VMM stops a spinning guest at its time limit", async () => {
    const limit = 300;
    const r = await runGuest({ name: "runaway-loop", timeoutMs: limit });
    expect(r.end.kind).toBe("timeout");
    // Stopped while spinning in guest code (the image is loaded at 1 MiB), not parked somewhere.
    const rip = r.end.kind === "timeout" ? r.end.rips[0]! : 0n;
    expect(rip >= 0x100000n && rip < 0x200000n).toBe(true);
    expect(r.passed("spinning")).toBe(true);
    expect(r.reports.some((x) => x.name === "returned")).toBe(false);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(limit);
    expect(r.elapsedMs).toBeLessThan(limit + 2000);
  });

  // ---- firmware tables, SMP through the MADT, MSI (issue 19) ----

  it.each([1, 3])("acpi-madt (%i vCPUs): the guest finds RSDP -> XSDT -> MADT/FADT/DSDT and the MP table, and they describe this VM", async (vcpus) => {
    let tscKhz = 0;
    const r = await runGuest({ name: "acpi-madt", vcpus, inspect: ({ vcpus: cpus }) => {
        tscKhz = cpus[0]!.getTscKhz();
      },
    });
    expectCleanExit(r);
    for (const name of ["rsdp-found", "madt-found", "madt-entries-in-bounds", "fadt-found", "dsdt-found", "mp-found"]) expect(r.passed(name), name).toBe(true);
    // Where the VMM put them for a scanning guest: the RSDP first at 0xE0000, revision 2, an XSDT.
    expect(r.value("rsdp.address")).toBe(0xe0000n);
    expect(r.value("rsdp.revision")).toBe(2n);
    expect(r.value("rsdp.xsdt")).toBeGreaterThan(0xe0000n);
    // One enabled local APIC per vCPU, APIC id = vCPU index (what CPUID and KVM's LAPIC say).
    expect(r.value("madt.cpus")).toBe(BigInt(vcpus));
    for (let i = 0; i < vcpus; i++) {
      expect(r.value(`madt.lapic.${i}`)).toBe(BigInt(i));
      expect(r.value(`madt.lapic-flags.${i}`)).toBe(1n);
    }
    expect(r.value("madt.lapic-address")).toBe(0xfee00000n);
    expect(r.value("madt.flags")).toBe(1n); // PCAT_COMPAT: KVM's irqchip has the 8259 pair
    expect(r.value("madt.ioapics")).toBe(1n);
    expect(r.value("madt.ioapic.id")).toBe(0n);
    expect(r.value("madt.ioapic.address")).toBe(0xfec00000n);
    expect(r.value("madt.ioapic.gsi-base")).toBe(0n);
    // Overrides as source << 40 | gsi << 16 | MPS INTI flags: IRQ0 -> GSI 2 (conforming), and
    // the SCI IRQ 9 -> GSI 9, level (3 << 2) active-high (1).
    const ov = r.values.filter((v) => v.name === "madt.override").map((v) => v.value);
    expect(ov).toEqual([(0n << 40n) | (2n << 16n) | 0n, (9n << 40n) | (9n << 16n) | 0xdn]);
    expect(r.value("madt.overrides")).toBe(2n);
    expect(r.value("madt.nmis")).toBe(1n);
    // FADT: the PM block the VMM's PM device sits on, SCI 9, no SMI port; \_S5 = 5; no virtio here.
    expect([r.value("fadt.pm1a-evt"), r.value("fadt.pm1a-cnt"), r.value("fadt.pm-tmr")]).toEqual([0x600n, 0x604n, 0x608n]);
    expect(r.value("fadt.sci")).toBe(9n);
    expect(r.value("fadt.smi-cmd")).toBe(0n);
    expect(r.value("dsdt.s5")).toBe(5n);
    expect(r.value("dsdt.virtio-mmio")).toBe(0n);
    expect(r.value("pm1a-cnt.read")).toBe(1n); // SCI_EN
    // The PM timer ran at 3.579545 MHz between two reads, measured against the guest's TSC.
    expect(tscKhz).toBeGreaterThan(0);
    const pmTicks = Number(r.value("pm-timer.delta"));
    const expected = (Number(r.value("pm-timer.tsc-delta")) / tscKhz) * 3579.545;
    expect(pmTicks).toBeGreaterThan(expected * 0.85);
    expect(pmTicks).toBeLessThan(expected * 1.15 + 50);
    expect(r.value("pm-timer.high-byte")).toBe(0n); // 24-bit timer
    expect(r.value("pm-timer.backwards")).toBe(0n);
    expect(r.value("mp.cpus")).toBe(BigInt(vcpus));
  });

  it.each([2, 4])("smp-sipi (%i vCPUs): the BSP starts every AP the MADT lists with INIT/SIPI; each reports its own APIC id from the real-mode trampoline", async (vcpus) => {
    const r = await runGuest({ name: "smp-sipi", vcpus, irqchip: true });
    expectCleanExit(r);
    expect(r.passed("madt-found")).toBe(true);
    expect(r.value("bsp.lapic-id", 0)).toBe(0n);
    expect(r.value("bsp.madt-cpus", 0)).toBe(BigInt(vcpus));
    expect(r.value("bsp.sipi-sent", 0)).toBe(BigInt(vcpus - 1));
    expect(r.value("bsp.aps-arrived", 0)).toBe(BigInt(vcpus - 1));
    for (let i = 1; i < vcpus; i++) {
      expect(r.exitCodes.get(i)).toBe(0);
      expect(r.value("ap.cpuid-id", i)).toBe(BigInt(i));
      expect(r.value("ap.lapic-id", i)).toBe(BigInt(i));
      // SIPI vector 0x08: CS = 0x0800 (base 0x8000), the page the BSP copied the trampoline to.
      expect(r.value("ap.start-cs", i)).toBe(0x800n);
    }
    // Only the APs report from the trampoline path.
    expect(r.values.filter((v) => v.name === "ap.lapic-id").map((v) => v.vcpu).sort()).toEqual(Array.from({ length: vcpus - 1 }, (_, i) => i + 1));
  });

  it("msi-irq: an MSI (KVM_SIGNAL_MSI) and an irqfd on a GSI routed to an MSI each reach the vector they name", async () => {
    const fds: EventFd[] = [];
    const delivered: number[] = [];
    const r = await runGuest({
      name: "msi-irq",
      irqchip: true,
      onValue: (name, value, { vm }) => {
        const destination = Number(value >> 8n);
        const vector = Number(value & 0xffn);
        if (name === "msi.ready") delivered.push(vm.signalMsi(x86Msi({ destination, vector })));
        if (name === "irqfd.ready") {
          // GSI 24 is past the IOAPIC's pins: only the MSI route can make it mean anything.
          vm.setGsiRouting([...x86DefaultGsiRoutes(), { gsi: 24, type: "msi", msi: x86Msi({ destination, vector }) }]);
          const fd = new EventFd();
          fds.push(fd);
          vm.registerIrqfd(fd, 24);
          fd.write(1);
        }
      },
    });
    for (const fd of fds) fd.close();
    expectCleanExit(r);
    expect(delivered).toEqual([1]); // one LAPIC accepted it
    expect(r.value("msi.hits")).toBe(1n);
    expect(r.value("msi.vector")).toBe(0x31n);
    expect(r.value("irqfd.hits")).toBe(1n);
    expect(r.value("irqfd.vector")).toBe(0x32n);
    expect(r.value("msi.hits-after")).toBe(1n);
  });

  it("acpi-poweroff: SLP_TYP alone is ignored; SLP_TYP with SLP_EN on the FADT's PM1a_CNT stops the VM at that OUT", async () => {
    const r = await runGuest({ name: "acpi-poweroff" });
    expect(r.end).toMatchObject({ kind: "other", detail: { kind: "device", device: "acpi-pm" } });
    expect(r.passed("tables-found")).toBe(true);
    expect(r.value("poweroff.port")).toBe(0x604n);
    expect(r.value("poweroff.slp-typ")).toBe(5n);
    expect(r.passed("running-after-slp-typ-alone")).toBe(true);
    expect(r.reports.some((x) => x.name === "running-after-slp-en")).toBe(false);
    expect(r.exitCode).toBeUndefined();
  });
});
