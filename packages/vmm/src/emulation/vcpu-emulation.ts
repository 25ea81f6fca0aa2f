import type { GuestMemory, KvmCpuidEntry2 } from "@tsvmm/abi";
import { fromKvmEntries, getVendor, VENDOR_INTEL } from "@tsvmm/cpuid";
import type { MmioBus, TraceRecorder } from "@tsvmm/devices";
import type { Vcpu } from "@tsvmm/kvm-backend";
import { Emulator, type XsaveComponent, type XsaveLayout } from "@tsvmm/x86";
import { EmulationError } from "./errors.js";
import { DEFAULT_DELIVERY, type DeliveryPolicy, KvmCpu } from "./kvm-cpu.js";
import { SyscallFixup } from "./syscall-fixup.js";

/** What `--emulate` turns on; every field has a default. */
export interface EmulationOptions {
  /** How emulated instructions' exceptions reach the guest (default {@link DEFAULT_DELIVERY}). */
  readonly delivery?: DeliveryPolicy;
  /** Turn PVM's stuck user-mode SYSCALL into a kernel entry (default true). */
  readonly syscallFixup?: boolean;
  /** REP string iterations per emulation exit (default 4096). */
  readonly maxRepIterations?: number;
  /**
   * Read and write registers through KVM's copy in kvm_run (KVM_CAP_SYNC_REGS) instead of an
   * ioctl each (default false: see README-emulation "Not done"; every exit then costs KVM the copy).
   */
  readonly syncRegs?: boolean;
}

/** Counts by mnemonic, shared by the vCPUs of one VM. */
export class EmulationStats {
  readonly counts = new Map<string, number>();
  add(mnemonic: string): void {
    this.counts.set(mnemonic, (this.counts.get(mnemonic) ?? 0) + 1);
  }
  get total(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c;
    return n;
  }
  /** Most frequent first. */
  toRecord(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
  }
  /** `popcnt 12, clac 5` (empty when nothing was emulated). */
  summary(): string {
    return Object.entries(this.toRecord())
      .map(([m, n]) => `${m} ${n}`)
      .join(", ");
  }
}

export type EmulationResult =
  | { readonly kind: "resumed"; readonly mnemonic: string }
  | { readonly kind: "stop"; readonly mnemonic: string | undefined; readonly message: string };

/** The XSAVE layout CPUID leaf 0xD describes (the table KVM holds for the vCPU). */
export function xsaveLayoutFromCpuid(entries: readonly KvmCpuidEntry2[]): XsaveLayout {
  const leaf = (index: number) => entries.find((e) => e.function === 0xd && e.index === index);
  const l0 = leaf(0);
  const l1 = leaf(1);
  const supportedXcr0 = l0 === undefined ? 3n : (BigInt(l0.edx >>> 0) << 32n) | BigInt(l0.eax >>> 0);
  const supportedXss = l1 === undefined ? 0n : (BigInt(l1.edx >>> 0) << 32n) | BigInt(l1.ecx >>> 0);
  const components: XsaveComponent[] = [];
  for (let i = 2; i < 63; i++) {
    if ((((supportedXcr0 | supportedXss) >> BigInt(i)) & 1n) === 0n) continue;
    const e = leaf(i);
    if (e === undefined || e.eax === 0) continue;
    const user = ((supportedXcr0 >> BigInt(i)) & 1n) === 1n;
    components.push({ index: i, size: e.eax >>> 0, offset: user ? e.ebx >>> 0 : undefined, align64: (e.ecx & 2) !== 0 });
  }
  return { supportedXcr0, supportedXss, components };
}

/**
 * Finishes, in the VMM, the instructions KVM gives up on for one vCPU: on each emulation failure
 * it checks for PVM's stuck SYSCALL, else runs one {@link Emulator} step over a {@link KvmCpu} and
 * writes the result back. A guest fault becomes the guest's exception; what the emulator does not
 * cover stops the VM with the mnemonic, as the VM stopped before.
 */
export class VcpuEmulation {
  readonly cpu: KvmCpu;
  readonly emulator: Emulator;
  readonly fixup: SyscallFixup | undefined;
  private readonly stats: EmulationStats;
  private readonly trace: TraceRecorder | undefined;

  constructor(o: {
    vcpu: Vcpu;
    memory: GuestMemory;
    mmio?: MmioBus;
    index: number;
    cpuid: readonly KvmCpuidEntry2[];
    stats: EmulationStats;
    trace?: TraceRecorder;
    options?: EmulationOptions;
  }) {
    const options = o.options ?? {};
    const addressSizes = o.cpuid.find((e) => e.function === 0x80000008 && e.index === 0);
    this.cpu = new KvmCpu({
      vcpu: o.vcpu,
      memory: o.memory,
      mmio: o.mmio,
      index: o.index,
      layout: xsaveLayoutFromCpuid(o.cpuid),
      delivery: options.delivery ?? DEFAULT_DELIVERY,
      syncRegs: options.syncRegs,
      maxPhyAddr: addressSizes === undefined ? undefined : addressSizes.eax & 0xff,
    });
    // The processor's MXCSR_MASK (legacy XSAVE region, byte 28); 0 there means the SDM default 0xFFBF.
    let mxcsrMask = 0xffbf;
    try {
      mxcsrMask = o.vcpu.getXsave().region.readUInt32LE(28) || 0xffbf;
    } catch {
      // No XSAVE on this host: the default stands.
    }
    this.emulator = new Emulator(this.cpu, { mxcsrMask, maxRepIterations: options.maxRepIterations ?? 4096, vendor: getVendor(fromKvmEntries(o.cpuid)) === VENDOR_INTEL ? "intel" : "amd" });
    this.fixup = options.syscallFixup === false ? undefined : new SyscallFixup();
    this.stats = o.stats;
    this.trace = o.trace;
  }

  /** Handle one KVM_EXIT_INTERNAL_ERROR (emulation) with the bytes KVM reported. */
  handle(bytes: Uint8Array | undefined): EmulationResult {
    const cpu = this.cpu;
    cpu.begin();
    try {
      let insn = bytes;
      const fix = this.fixup?.check(cpu);
      if (fix?.kind === "syscall") {
        cpu.commit();
        return this.done("syscall-fixup");
      }
      if (fix?.kind === "breakpoint") insn = fix.bytes;
      const out = this.emulator.step(insn);
      if (out.kind === "unsupported") {
        cpu.begin();
        const what = out.mnemonic ?? "an undecodable instruction";
        return { kind: "stop", mnemonic: out.mnemonic, message: `${what} is not emulated (${out.reason})` };
      }
      cpu.commit();
      const name = out.kind === "executed" ? out.mnemonic : `${out.mnemonic ?? "?"} #${out.vector}`;
      return this.done(fix?.kind === "breakpoint" ? `${name} (#PF entry)` : name);
    } catch (e) {
      cpu.begin();
      if (e instanceof EmulationError) return { kind: "stop", mnemonic: undefined, message: e.message };
      throw e;
    }
  }

  private done(mnemonic: string): EmulationResult {
    this.stats.add(mnemonic);
    this.trace?.recordExit(this.cpu.index, "emulated", { mnemonic });
    return { kind: "resumed", mnemonic };
  }
}
