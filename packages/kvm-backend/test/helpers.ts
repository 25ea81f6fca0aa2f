import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, type KvmSegment, type KvmSregs } from "@tsvmm/abi";
import { buildIdentityMap } from "@tsvmm/ept";
import { encodeIoapicRedirection, Kvm, type Vcpu, type Vm } from "@tsvmm/kvm-backend";

const cacheDir = join(tmpdir(), "tsvmm-kvm-backend-asm");

/** File descriptors open in this process. */
export const openFds = (): number => readdirSync("/proc/self/fd").length;

/**
 * Threads of this process named `comm`: the addon's runner threads are tsvmm-vcpu, a VcpuWorker's
 * thread tsvmm-vcpu-wkr.
 */
export function threadsNamed(comm: string): number {
  return readdirSync("/proc/self/task").filter((t) => {
    try {
      return readFileSync(`/proc/self/task/${t}/comm`, "utf8").trim() === comm;
    } catch {
      return false; // the thread ended while we looked
    }
  }).length;
}

/** Assemble a flat binary with GNU as (the real tool, so guest sources stay readable). */
export function assemble(source: string, bits: 16 | 32 | 64, origin = 0): Buffer {
  mkdirSync(cacheDir, { recursive: true });
  const text = `.code${bits}\n.intel_syntax noprefix\n${source}\n`;
  const key = createHash("sha256").update(`${bits}:${origin}:${text}`).digest("hex").slice(0, 16);
  const s = join(cacheDir, `${key}.s`);
  const o = join(cacheDir, `${key}.o`);
  const bin = join(cacheDir, `${key}.bin`);
  writeFileSync(s, text);
  execFileSync("as", ["--64", "-o", o, s]);
  execFileSync("ld", ["-m", "elf_x86_64", "-Ttext", `0x${origin.toString(16)}`, "--oformat", "binary", "-e", "0", "-o", bin, o]);
  return readFileSync(bin);
}

export function flatSeg(selector: number, code: boolean, long = false): KvmSegment {
  return {
    base: 0n, limit: 0xffffffff, selector, type: code ? 11 : 3, present: 1, dpl: 0,
    db: long && code ? 0 : 1, s: 1, l: long && code ? 1 : 0, g: 1, avl: 0, unusable: 0,
  };
}

/** Real mode at CS:IP = 0:ip, all segments base 0. */
export function enterRealMode(vcpu: Vcpu, ip: number): void {
  const s = vcpu.getSregs();
  for (const k of ["cs", "ds", "es", "fs", "gs", "ss"] as const) {
    s[k].base = 0n;
    s[k].selector = 0;
  }
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = BigInt(ip);
  r.rflags = 2n;
  r.rsp = 0x7000n;
  vcpu.setRegs(r);
}

/**
 * 64-bit long mode on identity page tables (the first `gib` GiB, 2 MiB pages) written from
 * `tables` by ept (PML4, PDPT, one PD per GiB). Map 4 GiB to reach the LAPIC at 0xfee00000.
 */
export function enterLongMode(vm: Vm, vcpu: Vcpu, rip: number, tables = 0x1000, gib = 1): void {
  // The project's one identity-map builder: ept's (2 MiB pages, supervisor).
  const cr3 = buildIdentityMap(vm.memory, tables, { size: BigInt(gib) << 30n });
  const s: KvmSregs = vcpu.getSregs();
  s.cs = flatSeg(0x8, true, true);
  for (const k of ["ds", "es", "fs", "gs", "ss"] as const) s[k] = flatSeg(0x10, false);
  s.cr3 = cr3;
  s.cr4 = 0x20n; // PAE
  s.cr0 = 0x80000011n; // PG | ET | PE
  s.efer = 0x500n; // LME | LMA
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = BigInt(rip);
  r.rflags = 2n;
  r.rsp = 0x80000n;
  vcpu.setRegs(r);
}

/**
 * Route IOAPIC pin `pin` to `vector` (fixed delivery, physical destination APIC 0, edge, unmasked)
 * and mask the legacy PIC, so an IRQ line reaches the guest only through the IOAPIC.
 */
export function routeIoapicPin(vm: Vm, pin: number, vector: number): void {
  const io = vm.getIoapic();
  io.redirtbl[pin] = encodeIoapicRedirection({ vector, destination: 0 });
  vm.setIoapic(io);
  maskPics(vm);
}

export function maskPics(vm: Vm): void {
  for (const id of [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE] as const) vm.setPic(id, { ...vm.getPic(id), imr: 0xff });
}

// 64-bit GDT: null, code at selector 0x08, data at 0x10 (SDM vol. 3, 3.4.5 and 5.2.1).
const GDT64 = [0n, 0x00af9b000000ffffn, 0x00cf93000000ffffn];

/**
 * A GDT and a 256-entry IDT for a long-mode guest (after `enterLongMode`): `handlers` maps a
 * vector to its handler's address; each gets a present DPL0 64-bit interrupt gate (SDM vol. 3,
 * figure 6-8) with selector 0x08. Other vectors stay not-present.
 */
export function installIdt(vm: Vm, vcpu: Vcpu, handlers: ReadonlyMap<number, number>, gdt = 0x8000, idt = 0x9000): void {
  const m = vm.memory;
  for (const [i, d] of GDT64.entries()) m.writeU64(gdt + i * 8, d);
  m.fill(idt, 256 * 16, 0);
  for (const [vector, handler] of handlers) {
    const h = BigInt(handler);
    const low = (h & 0xffffn) | (0x08n << 16n) | (0x8en << 40n) | (((h >> 16n) & 0xffffn) << 48n);
    m.writeU64(idt + vector * 16, low);
    m.writeU64(idt + vector * 16 + 8, h >> 32n);
  }
  const s = vcpu.getSregs();
  s.gdt = { base: BigInt(gdt), limit: GDT64.length * 8 - 1 };
  s.idt = { base: BigInt(idt), limit: 256 * 16 - 1 };
  vcpu.setSregs(s);
}

/**
 * A 64-bit guest at 0x10000 that idles in `sti; hlt` and has one handler per vector in `vectors`:
 * each reports its vector with `out 0x70, al`, writes the LAPIC EOI register and returns. Vector
 * 2 (NMI) gets the same handler without the EOI (an NMI is not acknowledged at the LAPIC).
 */
export function interruptReporterGuest(vm: Vm, vcpu: Vcpu, vectors: readonly number[], idle = "sti\n1: hlt\n jmp 1b"): void {
  const stubBase = 0x200;
  const stubSize = 0x40;
  const stubs = vectors.map((v, i) =>
    `.org ${stubBase + i * stubSize}\n push rax\n mov al, ${v}\n out 0x70, al\n` +
    (v === 2 ? "" : " mov eax, 0xfee000b0\n mov dword ptr [rax], 0\n") +
    " pop rax\n iretq");
  vm.memory.write(0x10000, assemble(`${idle}\n${stubs.join("\n")}`, 64, 0x10000));
  enterLongMode(vm, vcpu, 0x10000, 0x1000, 4);
  installIdt(vm, vcpu, new Map(vectors.map((v, i) => [v, 0x10000 + stubBase + i * stubSize])));
}

/**
 * Run `vcpu` on its thread and record every OUT to `port`. `until(n)` waits for n values (failing
 * after `ms`); `stop()` kicks the vCPU and returns the values seen.
 */
export function watchPort(vcpu: Vcpu, port: number): { seen: number[]; until(n: number, ms?: number): Promise<number[]>; stop(): Promise<number[]> } {
  const seen: number[] = [];
  let wake: (() => void) | undefined;
  let failure: unknown;
  const loop = (async () => {
    for (;;) {
      const e = await vcpu.runAsync();
      if (e.kind === "interrupted") return;
      if (e.kind !== "io" || e.port !== port) throw new Error(`unexpected exit ${JSON.stringify(e.toJSON())}`);
      seen.push(e.value);
      wake?.();
    }
  })().catch((e: unknown) => {
    failure = e;
    wake?.();
  });
  return {
    seen,
    async until(n: number, ms = 2000): Promise<number[]> {
      const deadline = Date.now() + ms;
      while (seen.length < n && failure === undefined && Date.now() < deadline) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 20);
        });
      }
      if (failure !== undefined) throw failure;
      return [...seen];
    },
    async stop(): Promise<number[]> {
      vcpu.kick();
      await loop;
      if (failure !== undefined) throw failure;
      return [...seen];
    },
  };
}

/** Software-enable the LAPIC (SVR) with LVT0/LVT1 masked. */
export function enableLapic(vcpu: Vcpu): void {
  const l = vcpu.getLapic();
  l.regs.writeUInt32LE(0x1ff, 0xf0); // SVR: enabled, spurious vector 0xff
  l.regs.writeUInt32LE(0x10000, 0x350); // LVT0 masked
  l.regs.writeUInt32LE(0x10000, 0x360); // LVT1 masked
  vcpu.setLapic(l);
}

/** The VM most tests start from: a TSS address and 1 MiB of RAM at 0. */
export function openTestVm(): { kvm: Kvm; vm: Vm } {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  vm.setTssAddr(0xfffbd000);
  vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 1 << 20 });
  return { kvm, vm };
}

export function closeTestVm(kvm: Kvm, vm: Vm): void {
  vm.close();
  kvm.close();
}
