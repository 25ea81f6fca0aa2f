import type { KvmCpuidEntry2, KvmMsrEntry, KvmMsrFilter, KvmRegs, KvmSregs } from "@tsvmm/abi";
import { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_MP_STATE, KVM_MSR_EXIT_REASON } from "@tsvmm/abi";
import { applyTemplate, type CpuidTemplate, fromKvmEntries, kvmCpuidForVcpus, normalize, type Topology } from "@tsvmm/cpuid";
import {
  type BusObserver, CMOS_PORT, CmosRtc, DEBUG_EXIT_SIZE, DebugExit, type DefaultHandler, type Device, FW_CFG_PORT, FW_CFG_SIZE,
  FwCfg, HypercallDevice, I8042, type IoInterceptPolicy, MmioBus, PcTestDev, PcTestDevIomem, PioBus, PmDevice, POST_PORT, Port92, PostCodePort, TraceRecorder,
  Uart16550,
} from "@tsvmm/devices";
import type { BootCpuState, ElfFile } from "@tsvmm/elf-loader";
import { type EventFd, type GuestRam, Kvm, type Vcpu, type VcpuWorkerOptions, type Vm } from "@tsvmm/kvm-backend";
import { MsrPolicy, toKvmMsrFilter } from "@tsvmm/msr-io-bitmaps";
import { attachGdb, type GdbOptions } from "./debug/attach.js";
import type { EmulationOptions } from "./emulation/index.js";
import { VmmBuildError, type VmmBuildStep } from "./errors.js";
import { type BootPlan, type KernelFormat, loadKernel } from "./kernel.js";
import { createPit } from "./lazy-pit.js";
import { type FirmwarePlatformDevice, planFirmware, writeFirmware } from "./platform.js";
import { attachVirtio, type VirtioDeviceSpec, virtioCmdline, virtioSlot } from "./virtio.js";
import { type CpuidRecord, type MsrHandler, Vmm } from "./vmm.js";
import type { WatchdogOptions } from "./watchdog.js";

/** Where console bytes came from. */
export type ConsoleSource = "uart" | "hypercall" | "virtio";
export type ConsoleSink = (bytes: Buffer, source: ConsoleSource) => void;

/** A memory slot beside RAM (read-only, dirty-logged or shared). */
export interface ExtraSlot {
  readonly gpa: number;
  readonly size: number;
  readonly readonly?: boolean;
  readonly logDirty?: boolean;
  /** Bytes written into the slot before the guest starts. */
  readonly fill?: Uint8Array;
  /** Back the slot with memory shared with other VMs; the VMM does not own it. */
  readonly ram?: GuestRam;
  readonly name?: string;
}

/** What a `prepare` hook may change about the boot CPU state (applied to every vCPU that starts with it). */
export interface BootOverride {
  readonly regs?: Partial<KvmRegs>;
  readonly sregs?: Partial<KvmSregs>;
  /** MSRs to set on every vCPU that starts with the boot state. */
  readonly msrs?: readonly KvmMsrEntry[];
}

export interface PrepareContext {
  readonly vm: Vm;
  readonly boot: BootPlan;
}

/** Everything a VM is built from: the builder fills it, `assemble` carries it out. */
export interface VmmSpec {
  /** Map RAM privately from this open file (a snapshot's memory) instead of fresh memory: pages load on first touch. */
  readonly ramFile?: { readonly fd: number; readonly offset: number };
  /** Guest memory comes from a snapshot: write nothing into it (no firmware tables). */
  readonly fromSnapshot?: boolean;
  /** The kernel image; undefined when `cpuState` describes the start instead (memory written by `prepare`). */
  readonly kernel: Uint8Array | undefined;
  readonly cpuState: BootCpuState | undefined;
  readonly format: KernelFormat | "auto";
  readonly memoryBytes: number;
  readonly vcpus: number;
  readonly cmdline: string;
  readonly initrd: Uint8Array | undefined;
  readonly console: ConsoleSink;
  readonly serial: { readonly port: number; readonly irq: number };
  /** Let KVM queue the UART's THR writes in its coalesced ring while the guest cannot tell (see coalesced-serial.ts); default true, used where the host offers it. */
  readonly coalesceSerial?: boolean;
  readonly debugExit: { readonly port: number; readonly convention: "qemu" | "raw" };
  /** In-kernel PIC/IOAPIC/LAPIC and PIT. Without it HLT exits to the VMM and interrupts go through KVM_INTERRUPT. */
  readonly irqchip: boolean;
  /** With the irqchip: the in-kernel PIT at build ("eager") or at the guest's first access to its ports ("lazy", the default; see lazy-pit.ts). */
  readonly pit?: "lazy" | "eager";
  /** ACPI tables (RSDP at 0xE0000, also handed to PVH and bzImage kernels) and the PM device their FADT declares. */
  readonly acpi: boolean;
  /** The MP table (MP spec 1.4) at 0xF0000, for guests without ACPI. */
  readonly mpTable: boolean;
  /** Devices the firmware tables describe besides COM1: each virtio-mmio window with its GSI (the DSDT's LNRO0005 entries). */
  readonly platformDevices: readonly FirmwarePlatformDevice[];
  readonly cpuidTemplate: CpuidTemplate | undefined;
  /** Last word on each vCPU's CPUID table (after template and normalization). */
  readonly cpuidEdit: ((entries: KvmCpuidEntry2[], vcpu: number) => KvmCpuidEntry2[]) | undefined;
  /** MSRs whose RDMSR/WRMSR exit to the VMM (planned by msr-io-bitmaps into a KVM filter). */
  readonly denyMsrs: readonly number[] | undefined;
  /** A KVM MSR filter given as it is (validated by kvm-backend). Exclusive with denyMsrs. */
  readonly msrFilter: KvmMsrFilter | undefined;
  readonly onMsr: MsrHandler | undefined;
  readonly ioPolicy: IoInterceptPolicy | undefined;
  readonly pioDefault: DefaultHandler | undefined;
  readonly mmioDefault: DefaultHandler | undefined;
  readonly pioObserver: BusObserver | undefined;
  readonly mmioObserver: BusObserver | undefined;
  readonly tracePath: string | undefined;
  readonly watchdog: WatchdogOptions;
  readonly pioDevices: ReadonlyArray<{ base: number; length: number; device: Device }>;
  readonly mmioDevices: ReadonlyArray<{ base: number; length: number; device: Device }>;
  readonly slots: readonly ExtraSlot[];
  readonly ioeventfds: ReadonlyArray<{ port: number; length: number; eventfd: EventFd; datamatch?: bigint }>;
  readonly irqfds: ReadonlyArray<{ eventfd: EventFd; gsi: number }>;
  readonly prepare: ((ctx: PrepareContext) => BootOverride | undefined) | undefined;
  readonly onReport: ((name: string, pass: boolean, vcpu: number) => void) | undefined;
  readonly onValue: ((name: string, value: bigint, vcpu: number) => void) | undefined;
  readonly onHypercall: ((outcome: { vcpu: number; status: number; call: number | undefined }) => void) | undefined;
  /** virtio-mmio devices, in the order their windows and GSIs are given out (see virtio.ts). */
  readonly virtio: readonly VirtioDeviceSpec[];
  /** Contained device errors (virtio drivers doing wrong, a socket failing): logged, never thrown. */
  readonly onDeviceError: ((e: unknown) => void) | undefined;
  /** Finish in the VMM the instructions KVM cannot emulate (`--emulate`); undefined: off. */
  readonly emulate?: EmulationOptions;
  /** A gdb stub for this VM (debug/): where it listens, whether the vCPUs wait for it. */
  readonly gdb?: GdbOptions;
  /** Each vCPU's loop on a worker thread with these exit handlers (VmmBuilder.vcpuWorkers); undefined: all on this thread. */
  readonly vcpuWorker?: VmmVcpuWorkerOptions;
}

/** VmmBuilder.vcpuWorkers: kvm-backend's VcpuWorkerOptions, but the Vmm knows the guest's RAM. */
export interface VmmVcpuWorkerOptions extends Omit<VcpuWorkerOptions, "memory"> {
  /** Give the handlers the guest's RAM as `ctx.memory` (VcpuWorkerOptions.memory: the same pages, no copy). */
  shareMemory?: boolean;
}

/** The steps of `assemble`, in order: each failure names its step. */
export const BUILD_STEPS: readonly VmmBuildStep[] = [
  "open-kvm", "create-vm", "memory", "irqchip", "load-kernel", "firmware", "prepare", "cpuid", "vcpus", "msr-filter", "devices", "trace",
];

const TSS_ADDR = 0xfffbd000;
/** IA32_APIC_BASE bit 8. */
const APIC_BASE_BSP = 1n << 8n;
const IDENTITY_MAP_ADDR = 0xfffbc000;

function step<T>(name: VmmBuildStep, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw VmmBuildError.at(name, e);
  }
}

/**
 * Give the legacy PICs the vector bases a PC BIOS leaves them with: master 0x08–0x0f, slave
 * 0x70–0x77. KVM's PICs start at vector base 0, so a real-mode guest that takes an IRQ without
 * reprogramming the PIC (kvm-unit-tests' realmode does) would enter it through the exception
 * vectors. The masks keep KVM's reset state (all open), which that test also relies on;
 * protected-mode kernels reprogram or mask the PICs themselves.
 */
function programPicsLikeBios(vm: Vm): void {
  for (const [chipId, base] of [[KVM_IRQCHIP_PIC_MASTER, 0x08], [KVM_IRQCHIP_PIC_SLAVE, 0x70]] as const) {
    vm.setPic(chipId, { ...vm.getPic(chipId), irqBase: base });
  }
}

function cpuidTables(kvm: Kvm, spec: VmmSpec): KvmCpuidEntry2[][] {
  const topology: Topology = { vcpus: spec.vcpus, threadsPerCore: 1, coresPerSocket: spec.vcpus, sockets: 1 };
  let table = fromKvmEntries(kvm.supportedCpuid());
  if (spec.cpuidTemplate !== undefined) table = applyTemplate(table, spec.cpuidTemplate);
  const tables = kvmCpuidForVcpus(normalize(table, { topology }), topology);
  return spec.cpuidEdit === undefined ? tables : tables.map((t, i) => spec.cpuidEdit!(t, i));
}

/**
 * Firecracker's builder as a recipe of named steps: open KVM, create the VM, its irqchip and
 * memory, load the kernel, CPUID and vCPUs, the MSR filter, devices, the trace. A failing step
 * throws VmmBuildError with that step's code and the cause; whatever was made is released.
 */
export function assemble(spec: VmmSpec): Vmm {
  let kvm: Kvm | undefined;
  let vm: Vm | undefined;
  let trace: TraceRecorder | undefined;
  const closers: Array<() => void | Promise<void>> = [];
  // The Vmm is created last but devices must reach it (stop requests): they call through this.
  let vmm: Vmm | undefined;
  try {
    const k = step("open-kvm", () => Kvm.open());
    kvm = k;
    const v = step("create-vm", () => {
      const created = k.createVm();
      created.setTssAddr(TSS_ADDR);
      created.setIdentityMapAddr(IDENTITY_MAP_ADDR);
      return created;
    });
    vm = v;
    // Memory before the irqchip: on this host a slot registered after KVM_CREATE_IRQCHIP took 4-8 ms
    // instead of ~0.1 ms (measured in C, 2026-12-06), every VM and every restore.
    step("memory", () => {
      v.addMemory({ slot: 0, guestPhysAddr: 0, size: spec.memoryBytes, name: "ram", file: spec.ramFile });
      for (const [i, s] of spec.slots.entries()) {
        v.addMemory({ slot: 1 + i, guestPhysAddr: s.gpa, size: s.size, readonly: s.readonly ?? false, logDirty: s.logDirty ?? false, ram: s.ram, name: s.name ?? `slot${1 + i}` });
        if (s.fill !== undefined) v.memory.write(s.gpa, s.fill);
      }
    });
    if (spec.irqchip) {
      step("irqchip", () => {
        v.createIrqchip();
        programPicsLikeBios(v);
        if (spec.pit === "eager") createPit(v);
      });
    }
    // Kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES find the devices here; others through ACPI.
    const cmdline = spec.virtio.length === 0 ? spec.cmdline : `${spec.cmdline} ${virtioCmdline(spec.virtio.map((_, i) => virtioSlot(i)))}`.trim();
    // Laid out before the kernel so PVH and bzImage can be told where the RSDP is; written after it.
    const firmware = step("firmware", () =>
      planFirmware({
        vcpus: spec.vcpus,
        serial: spec.serial,
        acpi: spec.acpi,
        mpTable: spec.mpTable,
        // Every attached virtio device is in the DSDT (LNRO0005): the only way kernels without
        // CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (Debian's) find them.
        devices: [...spec.platformDevices, ...spec.virtio.map((_, i) => ({ kind: "virtio-mmio" as const, ...virtioSlot(i) }))],
      }),
    );
    const loaded = step("load-kernel", (): { plan: BootPlan; elf?: ElfFile } =>
      spec.kernel !== undefined
        ? loadKernel(v.memory, spec.kernel, spec.format, { cmdline, initrd: spec.initrd, rsdpAddress: firmware.rsdpAddress })
        : { plan: { format: "state", cpu: spec.cpuState!, secondaries: "wait-for-sipi", description: "CPU state given by the caller" } },
    );
    const boot = loaded.plan;
    // Memory restored from a snapshot holds the tables already (as the guest left them).
    if (spec.fromSnapshot !== true) step("firmware", () => writeFirmware(v.memory, firmware, spec.kernel, loaded.elf));
    const override = step("prepare", () => spec.prepare?.({ vm: v, boot }));
    const regs: KvmRegs = { ...boot.cpu.regs, ...override?.regs };
    const sregs: KvmSregs = { ...boot.cpu.sregs, ...override?.sregs };
    const tables = step("cpuid", () => cpuidTables(k, spec));
    const cpuid: CpuidRecord[] = [];
    const vcpus: Vcpu[] = step("vcpus", () => {
      const out: Vcpu[] = [];
      for (let i = 0; i < spec.vcpus; i++) {
        const c = v.createVcpu(i);
        out.push(c);
        c.setCpuid2(tables[i]!);
        cpuid.push({ set: tables[i]!, held: c.getCpuid2() });
        if (i === 0 || boot.secondaries === "same-state") {
          // IA32_APIC_BASE.BSP belongs to vCPU 0 alone: a secondary flagged BSP restarts at the reset
          // vector on INIT instead of waiting for a SIPI (what an OS starting its APs relies on).
          c.setSregs(i === 0 ? sregs : { ...sregs, apicBase: sregs.apicBase & ~APIC_BASE_BSP });
          c.setRegs(regs);
          if (override?.msrs !== undefined) c.setMsrs(override.msrs);
          // Secondaries start UNINITIALIZED under an irqchip: these take the same boot state.
          if (i > 0 && spec.irqchip) c.setMpState(KVM_MP_STATE.RUNNABLE);
        }
      }
      return out;
    });
    step("msr-filter", () => {
      if (spec.msrFilter !== undefined && spec.denyMsrs !== undefined) throw new Error("give denyMsrs or msrFilter, not both");
      const filter = spec.msrFilter ?? (spec.denyMsrs !== undefined && spec.denyMsrs.length > 0 ? toKvmMsrFilter(MsrPolicy.fromDenyList(spec.denyMsrs)) : undefined);
      if (filter === undefined) return;
      v.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
      v.setMsrFilter(filter);
    });
    const irq = spec.irqchip ? (line: number, level: boolean) => v.irqLine(line, level) : () => {};
    const devices = step("devices", () => {
      const pio = new PioBus({ policy: spec.ioPolicy ?? null, defaultHandler: spec.pioDefault });
      const mmio = new MmioBus({ defaultHandler: spec.mmioDefault });
      // Stream output: the UART hands over whole lines (or 4 KiB, or a partial line after a few
      // ms), not one Buffer and one write per byte. The other consoles write what the UART holds
      // first, so the guest's output keeps its order.
      const uartOut = { write: (chunk: Uint8Array) => spec.console(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), "uart") };
      const uart = new Uart16550({ name: "com1", output: uartOut, irq: (level: boolean) => irq(spec.serial.irq, level) });
      pio.register(spec.serial.port, 8, uart);
      const dbg = spec.debugExit;
      pio.register(
        dbg.port,
        DEBUG_EXIT_SIZE,
        new DebugExit({
          convention: dbg.convention,
          onExit: (code: number) =>
            vmm?.requestStop("guest-exit", code, `guest wrote ${code >> (dbg.convention === "qemu" ? 1 : 0)} to the debug-exit port (exit status ${code & 0xff})`, { kind: "debug-exit", vcpu: 0 }),
        }),
      );
      const hypercall = new HypercallDevice(v.memory, {
        console: (b) => {
          uart.flush();
          spec.console(b, "hypercall");
        },
        report: spec.onReport,
        value: spec.onValue,
        exit: (code, vcpu) => vmm?.guestExit(code, vcpu),
        call: spec.onHypercall,
      });
      hypercall.attach(pio);
      new I8042({ onReset: () => vmm?.requestStop("reset", 0, "guest requested a reset through the i8042 (0xFE)", { kind: "device", device: "i8042" }) }).attach(pio);
      pio.register(POST_PORT, 1, new PostCodePort());
      pio.register(CMOS_PORT, 2, new CmosRtc());
      pio.register(FW_CFG_PORT, FW_CFG_SIZE, new FwCfg({ ramSize: BigInt(spec.memoryBytes), cpus: spec.vcpus }));
      // kvm-unit-tests' x86 tests expect QEMU's pc-testdev (IRQ lines at 0x2000, scratch at 0xe0).
      new PcTestDev({ irq: (line, level) => irq(line, level) }).attach(pio);
      new PcTestDevIomem().attach(mmio);
      new Port92({ onReset: () => vmm?.requestStop("reset", 0, "guest requested a reset through port 0x92 (bit 0)", { kind: "device", device: "port92" }) }).attach(pio);
      if (firmware.pm !== undefined) {
        new PmDevice({
          s5SleepType: firmware.pm.s5SleepType,
          onPowerOff: () => vmm?.requestStop("poweroff", 0, "guest powered off through ACPI (S5 written to PM1a control)", { kind: "device", device: "acpi-pm" }),
        }).attach(pio, firmware.pm);
      }
      for (const d of spec.pioDevices) pio.register(d.base, d.length, d.device);
      for (const d of spec.mmioDevices) mmio.register(d.base, d.length, d.device);
      for (const f of spec.ioeventfds) v.registerIoeventfd(f.eventfd, { addr: f.port, len: f.length, pio: true, datamatch: f.datamatch });
      for (const f of spec.irqfds) v.registerIrqfd(f.eventfd, f.gsi);
      if (spec.pioObserver !== undefined) pio.observer = spec.pioObserver;
      if (spec.mmioObserver !== undefined) mmio.observer = spec.mmioObserver;
      if (spec.virtio.length > 0 && !spec.irqchip) throw new Error("virtio devices need the in-kernel irqchip");
      const virtio = attachVirtio(spec.virtio, {
        vm: v,
        memory: v.memory,
        mmio,
        console: (b) => {
          uart.flush();
          spec.console(b, "virtio");
        },
        onError: spec.onDeviceError ?? (() => {}),
      });
      closers.push(...virtio.closers.reverse());
      return { pio, mmio, uart, hypercall, virtio: virtio.attached, ready: virtio.ready };
    });
    trace = step("trace", () =>
      spec.tracePath === undefined
        ? undefined
        : TraceRecorder.open(spec.tracePath, {
            onError: (e) => vmm?.requestStop("vmm-error", 74, e.message, { kind: "trace", error: e.message }),
          }),
    );
    if (trace !== undefined) {
      // The recorder takes the buses' observer slot; a caller's observer still sees every access.
      for (const bus of [devices.pio, devices.mmio]) {
        const theirs = bus.observer;
        trace.observe(bus);
        const ours = bus.observer;
        if (theirs !== null && ours !== null) {
          bus.observer = (a, d, w, c) => {
            ours(a, d, w, c);
            theirs(a, d, w, c);
          };
        }
      }
    }
    const gdb = spec.gdb === undefined ? undefined : attachGdb(spec.gdb, { vcpus, memory: v.memory, kill: () => vmm?.kill("killed by the debugger", "stopped") });
    if (gdb !== undefined) closers.push(() => gdb.close());
    vmm = new Vmm({
      kvm: k,
      vm: v,
      vcpus,
      ...devices,
      ...(gdb !== undefined ? { ready: [...devices.ready, gdb.ready], debug: gdb.target } : {}),
      boot,
      cpuid,
      irqchip: spec.irqchip,
      trace,
      watchdog: spec.watchdog,
      onMsr: spec.onMsr,
      spec,
      closers,
      emulation: spec.emulate,
      vcpuWorker: spec.vcpuWorker,
    });
    return vmm;
  } catch (e) {
    // Nothing is running yet: release in reverse order of making.
    vm?.close();
    kvm?.close();
    void trace?.close().catch(() => {});
    for (const c of closers) void Promise.resolve().then(c).catch(() => {});
    throw e;
  }
}
