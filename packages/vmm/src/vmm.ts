import { performance } from "node:perf_hooks";
import { HC_PORT, HC_SIGNATURE_PORT, HypercallDispatcher, KVM_MP_STATE, KVM_MSR_EXIT_REASON, KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE, type KvmCpuidEntry2 } from "@tsvmm/abi";
import { applyTemplate, type CpuidTemplate, fromKvmEntries, kvmCpuidForVcpus, normalize, type Topology } from "@tsvmm/cpuid";
import {
  CMOS_PORT, CmosRtc, DEBUG_EXIT_SIZE, DebugExit, FW_CFG_PORT, FW_CFG_SIZE, FwCfg, I8042,
  MmioBus, PcTestDev, PioBus, POST_PORT, PostCodePort, TraceRecorder, Uart16550,
} from "@tsvmm/devices";
import { type EventFd, type GuestRam, Kvm, type Vcpu, type VcpuExit, type Vm } from "@tsvmm/kvm-backend";
import { VmmError } from "./errors.js";
import { type BootPlan, bootKernel, type KernelFormat } from "./kernel.js";

/** Why a VM stopped, and the process exit status that stands for it. */
export type StopReason =
  /** The guest asked: debug-exit port or the EXIT hypercall. `exitCode` is its code. */
  | "guest-exit"
  /** A reset request (i8042 0xFE, or KVM's reset system event). Exit status 0. */
  | "reset"
  /** A power-off request (KVM's shutdown system event). Exit status 0. */
  | "poweroff"
  /** A triple fault (KVM_EXIT_SHUTDOWN). Exit status 125. */
  | "triple-fault"
  /** The watchdog stopped the VM: run time over its budget, or no exit for too long. Exit status 124. */
  | "timeout"
  /** The guest did something KVM could not carry out (emulation failure, entry failure). Exit status 126. */
  | "guest-error";

export const EXIT_STATUS: Readonly<Record<Exclude<StopReason, "guest-exit">, number>> = {
  reset: 0,
  poweroff: 0,
  "triple-fault": 125,
  timeout: 124,
  "guest-error": 126,
};

export interface VmmResult {
  readonly reason: StopReason;
  /** Process exit status for this stop (guest code & 0xff for guest-exit). */
  readonly exitCode: number;
  /** One line for a person: what happened and where. */
  readonly message: string;
  readonly vcpuRips: readonly bigint[];
  readonly exits: number;
  readonly durationMs: number;
}

export interface WatchdogOptions {
  /** Stop the VM once it has run this long. */
  timeoutMs?: number;
  /** Stop the VM when no vCPU has exited to the VMM for this long (a guest that stopped answering). */
  stallMs?: number;
}

export interface VmmOptions {
  kernel: Uint8Array;
  format: KernelFormat | "auto";
  memoryBytes: number;
  vcpus: number;
  cmdline: string;
  initrd?: Uint8Array;
  /** Receives the guest's console (UART and CONSOLE_WRITE hypercalls). */
  console: (bytes: Buffer) => void;
  serial: { port: number; irq: number };
  debugExit: { port: number; convention: "qemu" | "raw" };
  cpuidTemplate?: CpuidTemplate;
  denyMsrs?: readonly number[];
  tracePath?: string;
  watchdog: WatchdogOptions;
  /** Extra devices the builder registered. */
  pioDevices: ReadonlyArray<{ base: number; length: number; device: import("@tsvmm/devices").Device }>;
  mmioDevices: ReadonlyArray<{ base: number; length: number; device: import("@tsvmm/devices").Device }>;
  /** Memory shared with other VMs, mapped at `gpa` (after RAM, not overlapping it). */
  sharedMemory: ReadonlyArray<{ gpa: number; ram: GuestRam }>;
  /** Guest writes to these ports signal the eventfd inside KVM (no exit to the VMM). */
  ioeventfds: ReadonlyArray<{ port: number; length: number; eventfd: EventFd; datamatch?: bigint }>;
  /** Signalling these eventfds raises the GSI (through the in-kernel IOAPIC). */
  irqfds: ReadonlyArray<{ eventfd: EventFd; gsi: number }>;
  /** REPORT and REPORT_VALUE hypercalls. */
  onReport?: (name: string, pass: boolean, vcpu: number) => void;
  onValue?: (name: string, value: bigint, vcpu: number) => void;
}

const TSS_ADDR = 0xfffbd000;

// kvm_pic_state: last_irr, irr, imr, isr, priority_add, irq_base, read_reg_select, poll, ...
const PIC_IRQ_BASE = 5;

/**
 * Give the legacy PICs the vector bases a PC BIOS leaves them with: master 0x08–0x0f, slave
 * 0x70–0x77. KVM's PICs start at vector base 0, so a real-mode guest that takes an IRQ without
 * reprogramming the PIC (kvm-unit-tests' realmode does) would enter it through the exception
 * vectors. The masks keep KVM's reset state (all open), which that test also relies on;
 * protected-mode kernels reprogram or mask the PICs themselves.
 */
function programPicsLikeBios(vm: Vm): void {
  for (const [chipId, base] of [[0, 0x08], [1, 0x70]] as const) {
    const pic = vm.getIrqchip(chipId);
    pic.chip[PIC_IRQ_BASE] = base;
    vm.setIrqchip(pic);
  }
}
const IDENTITY_MAP_ADDR = 0xfffbc000;

/**
 * One assembled virtual machine: KVM VM + memory + vCPUs + devices, with its run loop. Build it
 * with {@link VmmBuilder}. `run()` resolves when the VM stops, for any reason; a guest can never
 * make it throw or crash the process. Everything is released when run() settles or on close().
 */
export class Vmm {
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  readonly pio: PioBus;
  readonly mmio: MmioBus;
  readonly uart: Uart16550;
  readonly boot: BootPlan;
  private readonly trace: TraceRecorder | undefined;
  private readonly dispatchers: HypercallDispatcher[];
  private stop: { reason: StopReason; code: number; message: string } | undefined;
  private exits = 0;
  private lastExitAt = 0;
  private state: "ready" | "running" | "done" = "ready";

  constructor(private readonly o: VmmOptions) {
    const kvm = Kvm.open();
    let vm: Vm | undefined;
    try {
      vm = kvm.createVm();
      vm.setTssAddr(TSS_ADDR);
      vm.setIdentityMapAddr(IDENTITY_MAP_ADDR);
      vm.createIrqchip();
      programPicsLikeBios(vm);
      vm.createPit2();
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: o.memoryBytes, name: "ram" });
      for (const [i, m] of o.sharedMemory.entries()) vm.addMemory({ slot: 1 + i, guestPhysAddr: m.gpa, size: m.ram.size, ram: m.ram, name: `shared${i}` });
      for (const f of o.ioeventfds) vm.registerIoeventfd(f.eventfd, { addr: f.port, len: f.length, pio: true, datamatch: f.datamatch });
      for (const f of o.irqfds) vm.registerIrqfd(f.eventfd, f.gsi);
      this.boot = bootKernel(vm.memory, o.kernel, o.format, { cmdline: o.cmdline, initrd: o.initrd });

      this.pio = new PioBus();
      this.mmio = new MmioBus();
      const vmRef = vm;
      this.uart = new Uart16550({ name: "com1", output: (b: number) => o.console(Buffer.from([b])), irq: (level: boolean) => vmRef.irqLine(o.serial.irq, level) });
      this.pio.register(o.serial.port, 8, this.uart);
      this.pio.register(o.debugExit.port, DEBUG_EXIT_SIZE, new DebugExit({ convention: o.debugExit.convention, onExit: (code: number) => this.requestStop("guest-exit", code, `guest wrote ${code >> (o.debugExit.convention === "qemu" ? 1 : 0)} to the debug-exit port (exit status ${code & 0xff})`) }));
      const kbd = new I8042({ onReset: () => this.requestStop("reset", 0, "guest requested a reset through the i8042 (0xFE)") });
      kbd.attach(this.pio);
      this.pio.register(POST_PORT, 1, new PostCodePort());
      this.pio.register(CMOS_PORT, 2, new CmosRtc());
      this.pio.register(FW_CFG_PORT, FW_CFG_SIZE, new FwCfg({ ramSize: BigInt(o.memoryBytes), cpus: o.vcpus }));
      // kvm-unit-tests' x86 tests expect QEMU's pc-testdev (IRQ lines at 0x2000, scratch at 0xe0).
      new PcTestDev({ irq: (line, level) => vmRef.irqLine(line, level) }).attach(this.pio);
      for (const d of o.pioDevices) this.pio.register(d.base, d.length, d.device);
      for (const d of o.mmioDevices) this.mmio.register(d.base, d.length, d.device);

      if (o.denyMsrs !== undefined && o.denyMsrs.length > 0) {
        vm.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
        vm.setMsrFilter({
          flags: KVM_MSR_FILTER_DEFAULT_ALLOW,
          ranges: o.denyMsrs.slice(0, 16).map((m) => ({ flags: KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, base: m, nmsrs: 1, bitmap: Buffer.from([0]) })),
        });
      }

      const cpuid = this.cpuidTables(kvm, o);
      const vcpus: Vcpu[] = [];
      for (let i = 0; i < o.vcpus; i++) {
        const v = vm.createVcpu(i);
        v.setCpuid2(cpuid[i]!);
        if (i === 0 || this.boot.secondaries === "same-state") {
          v.setSregs(this.boot.cpu.sregs);
          v.setRegs(this.boot.cpu.regs);
          if (i > 0) v.setMpState(KVM_MP_STATE.RUNNABLE);
        }
        vcpus.push(v);
      }
      this.vcpus = vcpus;
      this.dispatchers = vcpus.map((_, index) =>
        new HypercallDispatcher(vmRef.memory, {
          console: (b) => o.console(b),
          report: (name, pass) => o.onReport?.(name, pass, index),
          value: (name, value) => o.onValue?.(name, value, index),
          exit: (code) => this.requestStop("guest-exit", code, `guest called EXIT(${code})`),
        }),
      );
      this.trace = o.tracePath === undefined ? undefined : TraceRecorder.open(o.tracePath);
      if (this.trace !== undefined) {
        this.trace.observe(this.pio);
        this.trace.observe(this.mmio);
      }
      this.kvm = kvm;
      this.vm = vm;
    } catch (e) {
      vm?.close();
      kvm.close();
      throw e;
    }
  }

  private cpuidTables(kvm: Kvm, o: VmmOptions): KvmCpuidEntry2[][] {
    const topology: Topology = { vcpus: o.vcpus, threadsPerCore: 1, coresPerSocket: o.vcpus, sockets: 1 };
    let table = fromKvmEntries(kvm.supportedCpuid());
    if (o.cpuidTemplate !== undefined) table = applyTemplate(table, o.cpuidTemplate);
    return kvmCpuidForVcpus(normalize(table, { topology }), topology);
  }

  private requestStop(reason: StopReason, code: number, message: string): void {
    if (this.stop !== undefined) return;
    this.stop = { reason, code: reason === "guest-exit" ? code & 0xff : EXIT_STATUS[reason], message };
    for (const v of this.vcpus) v.kick();
  }

  /** Stop the VM from outside (as the watchdog does); run() resolves with reason "timeout". */
  kill(message = "stopped by the VMM"): void {
    this.requestStop("timeout", 0, message);
  }

  /** Boot and run until the VM stops. Never rejects because of guest behaviour. */
  async run(): Promise<VmmResult> {
    if (this.state !== "ready") throw new VmmError("VMM_STATE", "a Vmm runs once");
    this.state = "running";
    const t0 = performance.now();
    this.lastExitAt = t0;
    const timers: NodeJS.Timeout[] = [];
    const w = this.o.watchdog;
    if (w.timeoutMs !== undefined) {
      timers.push(setTimeout(() => this.requestStop("timeout", 0, `watchdog: the VM ran past its ${w.timeoutMs} ms budget`), w.timeoutMs));
    }
    if (w.stallMs !== undefined) {
      const stall = w.stallMs;
      timers.push(setInterval(() => {
        if (performance.now() - this.lastExitAt > stall) this.requestStop("timeout", 0, `watchdog: no vCPU exited for ${stall} ms`);
      }, Math.max(10, Math.floor(stall / 4))));
    }
    try {
      await Promise.all(this.vcpus.map((v, i) => this.loop(v, i)));
    } finally {
      for (const t of timers) clearTimeout(t);
    }
    const rips = this.vcpus.map((v) => {
      try {
        return v.getRegs().rip;
      } catch {
        return 0n;
      }
    });
    const s = this.stop ?? { reason: "guest-error" as const, code: EXIT_STATUS["guest-error"], message: "all vCPUs stopped without a reason" };
    const result: VmmResult = { reason: s.reason, exitCode: s.code, message: s.message, vcpuRips: rips, exits: this.exits, durationMs: performance.now() - t0 };
    await this.close();
    return result;
  }

  private async loop(vcpu: Vcpu, index: number): Promise<void> {
    while (this.stop === undefined) {
      let exit: VcpuExit;
      try {
        exit = await vcpu.runAsync();
      } catch (e) {
        this.requestStop("guest-error", 0, `vCPU ${index}: KVM_RUN failed: ${(e as Error).message}`);
        return;
      }
      this.exits++;
      this.lastExitAt = performance.now();
      try {
        this.handle(exit, index);
      } catch (e) {
        // Devices and buses isolate their own faults; anything still thrown here means the guest
        // did something the VMM cannot represent. It stops this VM, never the process.
        this.requestStop("guest-error", 0, `vCPU ${index}: ${exit.kind} exit could not be handled: ${(e as Error).message}`);
        return;
      }
    }
  }

  private handle(exit: VcpuExit, index: number): void {
    switch (exit.kind) {
      case "io": {
        const port = exit.port;
        if (port === HC_PORT || port === HC_SIGNATURE_PORT) {
          const d = this.dispatchers[index]!;
          if (exit.direction === "out") d.doorbell(exit.value, exit.size);
          else exit.setValue(d.read(port, exit.size));
          return;
        }
        const size = exit.size;
        const data = exit.data;
        const isIn = exit.direction === "in";
        if (data.length === size) {
          // The common case, one element: no sub-view to allocate on the exit path.
          if (isIn) this.pio.readInto(port, data, index);
          else this.pio.write(port, data, index);
          return;
        }
        // String I/O arrives as one exit with `count` elements: each goes to the device in turn.
        for (let off = 0; off < data.length; off += size) {
          const el = data.subarray(off, off + size);
          if (isIn) this.pio.readInto(port, el, index);
          else this.pio.write(port, el, index);
        }
        return;
      }
      case "mmio":
        if (exit.isWrite) this.mmio.write(exit.address, exit.data, index);
        else this.mmio.readInto(exit.address, exit.data, index);
        return;
      case "rdmsr":
      case "wrmsr":
        exit.fail();
        return;
      case "interrupted":
      case "irq_window_open":
        return;
      case "hlt":
        // With the in-kernel irqchip KVM sleeps through HLT itself; an HLT exit means interrupts
        // can never arrive, so the vCPU is done.
        this.requestStop("guest-error", 0, `vCPU ${index} halted with no way to wake it`);
        return;
      case "shutdown":
        this.requestStop("triple-fault", 0, `vCPU ${index}: triple fault (KVM_EXIT_SHUTDOWN)`);
        return;
      case "system_event":
        if (exit.typeName === "RESET") this.requestStop("reset", 0, `vCPU ${index}: guest requested a reset`);
        else this.requestStop("poweroff", 0, `vCPU ${index}: guest powered off (${exit.typeName})`);
        return;
      case "internal_error": {
        const bytes = exit.instructionBytes;
        this.requestStop("guest-error", 0, `vCPU ${index}: KVM internal error, suberror ${exit.suberror}${bytes ? `, instruction bytes ${bytes.toString("hex")}` : ""}`);
        return;
      }
      case "fail_entry":
        this.requestStop("guest-error", 0, `vCPU ${index}: VM entry failed, hardware reason 0x${exit.hardwareEntryFailureReason.toString(16)}`);
        return;
      default:
        this.requestStop("guest-error", 0, `vCPU ${index}: unexpected exit ${exit.kind}`);
    }
  }

  /** Release everything (vCPU threads, guest memory zeroed and unmapped, fds, the trace file). */
  async close(): Promise<void> {
    if (this.state === "done") return;
    this.state = "done";
    this.uart.flush();
    this.vm.close();
    this.kvm.close();
    await this.trace?.close();
  }
}
