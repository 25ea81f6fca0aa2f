import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KvmCpuidEntry2, KvmMsrFilter } from "@tsvmm/abi";
import { type CpuidTemplate, loadTemplate, parseTemplate } from "@tsvmm/cpuid";
import type { BusObserver, DefaultHandler, Device, IoInterceptPolicy } from "@tsvmm/devices";
import type { BootCpuState } from "@tsvmm/elf-loader";
import type { EventFd, GuestRam } from "@tsvmm/kvm-backend";
import { assemble, type BootOverride, type ConsoleSink, type ExtraSlot, type PrepareContext, type VmmSpec, type VmmVcpuWorkerOptions } from "./assemble.js";
import { VM_LIMITS, type VmConfig } from "./config.js";
import { checkGdbAddress, type GdbOptions } from "./debug/attach.js";
import { type EmulationOptions, linuxEmulationCmdline } from "./emulation/index.js";
import { VmmError } from "./errors.js";
import { MAX_IMAGE_INPUT, readInputFile, readJsonFile } from "./files.js";
import type { KernelFormat } from "./kernel.js";
import type { FirmwarePlatformDevice } from "./platform.js";
import { VIRTIO_MAX_DEVICES, type VirtioDeviceSpec } from "./virtio.js";
import type { MsrHandler, Vmm, VmmResult } from "./vmm.js";
import type { WatchdogOptions } from "./watchdog.js";

/** This package's folder (dist/.. or src/..). */
export function packageRoot(): string {
  const here = typeof __dirname === "string" ? __dirname : dirname(fileURLToPath(import.meta.url));
  return join(here, "..");
}

/** The hello guest shipped with this package (built from test-kernels/tests/hello.c). */
export function bundledHelloPath(): string {
  const shipped = join(packageRoot(), "guests", "hello.elf");
  if (existsSync(shipped)) return shipped;
  // In the repository before `npm run build` copied it: the test-kernels output.
  return join(packageRoot(), "..", "..", "test-kernels", "out", "hello.elf");
}


/**
 * Assembles a VMM from the parts, in the manner of Firecracker's builder: say what the machine
 * has, then `build()` (or `run()` to build, run and release in one step). Defaults and limits come
 * from {@link VM_LIMITS}, the same ones the JSON config and the CLI use.
 *
 * ```ts
 * const result = await new VmmBuilder().kernelFile("hello.elf").memoryMiB(64).console((b) => process.stdout.write(b)).run();
 * ```
 */
export class VmmBuilder {
  private kernelBytes: Uint8Array | undefined;
  private startState: BootCpuState | undefined;
  private kernelFormat: KernelFormat | "auto" = "auto";
  private memBytes = VM_LIMITS.memoryMiB.default * 2 ** 20;
  private nVcpus: number = VM_LIMITS.vcpus.default;
  private cmd = "";
  private initrdBytes: Uint8Array | undefined;
  private consoleSink: ConsoleSink = () => {};
  private serialCfg: { port: number; irq: number } = { ...VM_LIMITS.serial };
  private debugExitCfg: { port: number; convention: "qemu" | "raw" } = { ...VM_LIMITS.debugExit };
  private withIrqchip = true;
  private pitMode: "lazy" | "eager" = "lazy";
  private withAcpi = true;
  private withMpTable = true;
  private readonly firmwareDevs: FirmwarePlatformDevice[] = [];
  private template: CpuidTemplate | undefined;
  private cpuidEditFn: ((entries: KvmCpuidEntry2[], vcpu: number) => KvmCpuidEntry2[]) | undefined;
  private msrDeny: number[] | undefined;
  private filter: KvmMsrFilter | undefined;
  private msrHandler: MsrHandler | undefined;
  private ioPolicyValue: IoInterceptPolicy | undefined;
  private pioDefaultHandler: DefaultHandler | undefined;
  private mmioDefaultHandler: DefaultHandler | undefined;
  private pioObs: BusObserver | undefined;
  private mmioObs: BusObserver | undefined;
  private tracePath: string | undefined;
  private dog: WatchdogOptions = {};
  private readonly pioDevs: Array<{ base: number; length: number; device: Device }> = [];
  private readonly mmioDevs: Array<{ base: number; length: number; device: Device }> = [];
  private readonly extraSlots: ExtraSlot[] = [];
  private readonly ioevs: Array<{ port: number; length: number; eventfd: EventFd; datamatch?: bigint }> = [];
  private readonly irqs: Array<{ eventfd: EventFd; gsi: number }> = [];
  private prepareFn: ((ctx: PrepareContext) => BootOverride | undefined) | undefined;
  private reportCb: ((name: string, pass: boolean, vcpu: number) => void) | undefined;
  private valueCb: ((name: string, value: bigint, vcpu: number) => void) | undefined;
  private readonly virtioDevs: VirtioDeviceSpec[] = [];
  private deviceErrorCb: ((e: unknown) => void) | undefined;
  private hypercallCb: ((outcome: { vcpu: number; status: number; call: number | undefined }) => void) | undefined;
  private emulateOpts: EmulationOptions | undefined;
  private vcpuWorkerOpts: VmmVcpuWorkerOptions | undefined;
  private hostNote: string | undefined;
  private gdbOpts: GdbOptions | undefined;
  private coalesceSerialOn = true;

  /** A builder from a validated JSON config ({@link loadVmConfig}). */
  static fromConfig(c: VmConfig): VmmBuilder {
    const b = new VmmBuilder()
      .kernelFile(c.kernel ?? bundledHelloPath(), c.format)
      .memoryMiB(c.memoryMiB)
      .vcpus(c.vcpus)
      .cmdline(c.cmdline)
      .serial(c.serial.port, c.serial.irq)
      .coalesceSerial(c.coalesceSerial)
      .debugExit(c.debugExit.port, c.debugExit.convention);
    if (c.initrd !== undefined) b.initrdFile(c.initrd);
    if (c.timeoutMs !== undefined || c.stallMs !== undefined) b.watchdog({ timeoutMs: c.timeoutMs, stallMs: c.stallMs });
    if (c.cpuidTemplate !== undefined) b.cpuidTemplate(c.cpuidTemplate);
    if (c.denyMsrs !== undefined) b.denyMsrs(c.denyMsrs.map((m) => (typeof m === "number" ? m : Number.parseInt(m, 16))));
    if (c.trace !== undefined) b.trace(c.trace);
    for (const d of c.disks) b.disk(d.path, { readOnly: d.readOnly });
    for (const n of c.net) b.net(n.tap);
    if (c.vsock !== undefined) b.vsock(c.vsock.cid, c.vsock.uds);
    if (c.console === "virtio") b.virtioConsole();
    if (c.rng) b.rng();
    if (c.emulate) b.emulate();
    b.acpi(c.acpi).mpTable(c.mpTable);
    return b;
  }

  kernel(bytes: Uint8Array, format: KernelFormat | "auto" = "auto"): this {
    this.kernelBytes = bytes;
    this.kernelFormat = format;
    return this;
  }
  /**
   * Start from this CPU state instead of a kernel image (write the guest's memory in `prepare`):
   * for guests described as register state, such as a VMCS or VMCB guest-state area.
   */
  cpuState(state: BootCpuState): this {
    this.startState = state;
    return this;
  }
  kernelFile(path: string, format: KernelFormat | "auto" = "auto"): this {
    return this.kernel(readInputFile(path, "kernel", MAX_IMAGE_INPUT), format);
  }
  memoryMiB(mib: number): this {
    const { min, max } = VM_LIMITS.memoryMiB;
    if (!Number.isInteger(mib) || mib < min || mib > max) throw new VmmError("VMM_BUILD_INVALID", `memory ${mib} MiB: must be an integer from ${min} to ${max}`);
    // Multiplication, not a shift: 2048 << 20 overflows a 32-bit int.
    this.memBytes = mib * 2 ** 20;
    return this;
  }
  vcpus(n: number): this {
    const { min, max } = VM_LIMITS.vcpus;
    if (!Number.isInteger(n) || n < min || n > max) throw new VmmError("VMM_BUILD_INVALID", `vcpus ${n}: must be an integer from ${min} to ${max}`);
    this.nVcpus = n;
    return this;
  }
  cmdline(s: string): this {
    if (Buffer.byteLength(s) > VM_LIMITS.cmdlineBytes.max) throw new VmmError("VMM_BUILD_INVALID", `cmdline: at most ${VM_LIMITS.cmdlineBytes.max} bytes`);
    this.cmd = s;
    return this;
  }
  initrd(bytes: Uint8Array): this {
    this.initrdBytes = bytes;
    return this;
  }
  initrdFile(path: string): this {
    return this.initrd(readInputFile(path, "initrd", MAX_IMAGE_INPUT));
  }
  /** Where the guest's console bytes go (UART and CONSOLE_WRITE hypercalls; the source is the second argument). */
  console(sink: ConsoleSink): this {
    this.consoleSink = sink;
    return this;
  }
  /**
   * Let KVM queue the UART's transmit-register writes in its coalesced ring instead of exiting for
   * each byte, while the guest cannot tell the difference (THR-empty interrupt off, no loopback);
   * on by default where the host offers KVM_CAP_COALESCED_PIO. Off when a trace or PIO observer
   * is set (they see each access as its vCPU's exit). See coalesced-serial.ts.
   */
  coalesceSerial(on = true): this {
    this.coalesceSerialOn = on;
    return this;
  }

  serial(port: number, irq: number): this {
    this.serialCfg = { port, irq };
    return this;
  }
  debugExit(port: number, convention: "qemu" | "raw" = "qemu"): this {
    this.debugExitCfg = { port, convention };
    return this;
  }
  /** The in-kernel irqchip and PIT (default on). Off: HLT exits to the VMM, interrupts only through KVM_INTERRUPT. */
  irqchip(on: boolean): this {
    this.withIrqchip = on;
    return this;
  }
  /**
   * When the in-kernel PIT is created: at the guest's first access to ports 0x40-0x43
   * ("lazy", the default: a VM with a PIT is milliseconds slower to close, and a PIT nobody
   * programmed raises nothing), or at build ("eager": `vm.getPit2()` answers before the guest runs).
   */
  pit(mode: "lazy" | "eager"): this {
    this.pitMode = mode;
    return this;
  }
  /**
   * ACPI tables (default on): RSDP/XSDT/FADT/FACS/MADT/DSDT at 0xE0000 (handed to PVH and bzImage
   * kernels too) and the PM device their FADT declares (S5 powers the VM off). Off for guests that
   * must find no RSDP.
   */
  acpi(on: boolean): this {
    this.withAcpi = on;
    return this;
  }
  /** The MP table at 0xF0000 (default on), for guests that enumerate CPUs without ACPI. */
  mpTable(on: boolean): this {
    this.withMpTable = on;
    return this;
  }
  /**
   * Describe a device in the firmware tables (the DSDT): a virtio-mmio window and its GSI. The
   * device itself is attached separately (mmioDevice, or the virtio integration); this only tells
   * the guest it is there.
   */
  platformDevice(device: FirmwarePlatformDevice): this {
    this.firmwareDevs.push({ ...device });
    return this;
  }
  /** A shipped template name ("t2-like", "minimal"), a path to template JSON, or a parsed template. */
  cpuidTemplate(t: string | CpuidTemplate): this {
    if (typeof t !== "string") this.template = t;
    else if (/[/.]/.test(t)) this.template = parseTemplate(readJsonFile(t, "CPUID template"));
    else this.template = loadTemplate(t);
    return this;
  }
  /** Edit each vCPU's CPUID table last (after the template and topology). */
  cpuidEdit(edit: (entries: KvmCpuidEntry2[], vcpu: number) => KvmCpuidEntry2[]): this {
    this.cpuidEditFn = edit;
    return this;
  }
  /** MSRs whose RDMSR/WRMSR exit to the VMM and get #GP (or what `onMsr` answers). */
  denyMsrs(msrs: readonly number[]): this {
    if (msrs.length > VM_LIMITS.denyMsrs.max) throw new VmmError("VMM_BUILD_INVALID", `denyMsrs: at most ${VM_LIMITS.denyMsrs.max} MSRs, got ${msrs.length}`);
    this.msrDeny = [...msrs];
    return this;
  }
  /** A KVM MSR filter as it is (kvm-backend validates it); filtered accesses go to `onMsr`. */
  msrFilter(filter: KvmMsrFilter): this {
    this.filter = filter;
    return this;
  }
  /** Answer filtered RDMSR/WRMSR (default: #GP). */
  onMsr(handler: MsrHandler): this {
    this.msrHandler = handler;
    return this;
  }
  /** Which port accesses reach devices (a VMX I/O bitmap or SVM IOPM from msr-io-bitmaps); the rest go to the default handler. */
  ioInterceptPolicy(policy: IoInterceptPolicy): this {
    this.ioPolicyValue = policy;
    return this;
  }
  /** What unclaimed port / MMIO accesses do (default: reads all-ones, writes dropped). */
  pioDefault(handler: DefaultHandler): this {
    this.pioDefaultHandler = handler;
    return this;
  }
  mmioDefault(handler: DefaultHandler): this {
    this.mmioDefaultHandler = handler;
    return this;
  }
  /** See every port / MMIO access after it was handled (reads with the bytes the guest got). */
  observePio(observer: BusObserver): this {
    this.pioObs = observer;
    return this;
  }
  observeMmio(observer: BusObserver): this {
    this.mmioObs = observer;
    return this;
  }
  /** Record every device access to a JSON-lines file (replayable with @tsvmm/devices). */
  trace(path: string): this {
    this.tracePath = path;
    return this;
  }
  watchdog(w: WatchdogOptions): this {
    for (const [k, v] of Object.entries(w)) {
      if (v !== undefined && (!Number.isFinite(v) || v <= 0)) throw new VmmError("VMM_BUILD_INVALID", `watchdog ${k} ${String(v)}: must be a positive number of ms`);
    }
    this.dog = { ...w };
    return this;
  }
  pioDevice(base: number, length: number, device: Device): this {
    this.pioDevs.push({ base, length, device });
    return this;
  }
  mmioDevice(base: number, length: number, device: Device): this {
    this.mmioDevs.push({ base, length, device });
    return this;
  }
  /** A memory slot beside RAM: read-only (writes exit as MMIO), dirty-logged, pre-filled or shared. */
  memorySlot(slot: ExtraSlot): this {
    this.extraSlots.push(slot);
    return this;
  }

  /**
   * Map memory shared with other VMs (a kvm-backend `GuestRam`) at `gpa`, outside RAM. The VMM does not
   * own it: close the GuestRam after every VM using it has stopped.
   */
  sharedMemory(gpa: number, ram: GuestRam): this {
    return this.memorySlot({ gpa, size: ram.size, ram, name: `shared${this.extraSlots.length}` });
  }
  /** A guest OUT to `port` signals `eventfd` inside KVM, without an exit (a doorbell). */
  ioeventfd(port: number, eventfd: EventFd, options: { length?: number; datamatch?: bigint } = {}): this {
    this.ioevs.push({ port, length: options.length ?? 1, eventfd, datamatch: options.datamatch });
    return this;
  }
  /** Signalling `eventfd` raises `gsi` in this VM (wire another VM's ioeventfd here). */
  irqfd(eventfd: EventFd, gsi: number): this {
    this.irqs.push({ eventfd, gsi });
    return this;
  }
  /**
   * Called once guest memory holds the kernel and its boot data, before any vCPU exists: write what
   * the guest should find, and optionally change the boot CPU state (e.g. a CR3 of your own tables).
   */
  prepare(fn: (ctx: PrepareContext) => BootOverride | undefined): this {
    this.prepareFn = fn;
    return this;
  }
  /** Listen to the guest's REPORT / REPORT_VALUE hypercalls. */
  onReport(cb: (name: string, pass: boolean, vcpu: number) => void): this {
    this.reportCb = cb;
    return this;
  }
  onValue(cb: (name: string, value: bigint, vcpu: number) => void): this {
    this.valueCb = cb;
    return this;
  }
  /** See every doorbell ring (call number and the status the guest got). */
  onHypercall(cb: (outcome: { vcpu: number; status: number; call: number | undefined }) => void): this {
    this.hypercallCb = cb;
    return this;
  }

  /** A virtio-blk disk over a raw image file (read-only: writes fail with the spec's IOERR). */
  disk(path: string, options: { readOnly?: boolean } = {}): this {
    return this.virtio({ kind: "blk", path, readOnly: options.readOnly ?? false });
  }
  /** A virtio-net device over an existing TAP interface of this network namespace. */
  net(tap: string, options: { mac?: readonly number[] } = {}): this {
    return this.virtio({ kind: "net", tap, ...(options.mac !== undefined ? { mac: options.mac } : {}) });
  }
  /** A virtio-vsock device (guest CID `cid`), host side on Unix sockets at `udsPath` (Firecracker's hybrid model). */
  vsock(cid: number, udsPath: string): this {
    if (!Number.isInteger(cid) || cid < 3 || cid > 0xffffffff) throw new VmmError("VMM_BUILD_INVALID", `vsock CID ${cid}: must be an integer from 3 to 2^32-1`);
    return this.virtio({ kind: "vsock", cid, uds: udsPath });
  }
  /** A virtio-rng device fed from the OS CSPRNG. */
  rng(): this {
    return this.virtio({ kind: "rng" });
  }
  /** The console on a virtio-console port as well as the UART (the UART stays for early output). */
  virtioConsole(): this {
    return this.virtio({ kind: "console" });
  }
  /** Attach any virtio device; windows and GSIs are given out in call order. */
  virtio(spec: VirtioDeviceSpec): this {
    if (this.virtioDevs.length >= VIRTIO_MAX_DEVICES) throw new VmmError("VMM_BUILD_INVALID", `at most ${VIRTIO_MAX_DEVICES} virtio devices`);
    this.virtioDevs.push(spec);
    return this;
  }
  /** See the errors devices contained (a virtio driver doing wrong, a socket failing). */
  onDeviceError(cb: (e: unknown) => void): this {
    this.deviceErrorCb = cb;
    return this;
  }

  /**
   * Finish in the VMM the instructions this host's KVM cannot emulate (default off). For a Linux
   * kernel on a host that needs it (measured once per process) the command line also gets what
   * such a kernel needs there; {@link emulationNote} says what was added.
   */
  emulate(on: boolean | EmulationOptions = true): this {
    this.emulateOpts = on === false ? undefined : on === true ? {} : { ...on };
    return this;
  }
  /** What spec()/build() added for emulation on this host (for a note to the user); undefined when nothing. */
  emulationNote(): string | undefined {
    return this.hostNote;
  }

  /**
   * Serve gdb's remote protocol for this VM at `address` ("127.0.0.1:1234", "unix:/path"; only
   * loopback or a Unix socket unless `allowRemote`). `wait`: no vCPU runs its first instruction
   * before gdb lets it; otherwise gdb attaches to the running VM (stopping it). The server is
   * closed, and its socket file removed, when the VM ends; gdb sees the end as the exit status.
   */
  gdb(address: string, options: Omit<GdbOptions, "address"> = {}): this {
    checkGdbAddress(address, options.allowRemote);
    this.gdbOpts = { ...options, address };
    return this;
  }

  /**
   * Run each vCPU's loop synchronously on a worker thread of its own (kvm-backend's VcpuWorker),
   * with the exit handlers `options.module` makes there: devices whose state lives in the
   * SharedArrayBuffers of `options.data` answer their exits at the synchronous loop's speed, and
   * vCPUs scale as in C. Every exit the module does not take — the Vmm's own devices, pauses, the
   * watchdog's and the debugger's kicks — comes to this thread as usual, at about the cost of an
   * exit without workers (one hop each way). With `shareMemory` the handlers get the guest's RAM as `ctx.memory` (devices that
   * read and write guest buffers there, as DMA does).
   */
  vcpuWorkers(options: VmmVcpuWorkerOptions): this {
    this.vcpuWorkerOpts = { ...options };
    return this;
  }

  /** The full description of the VM this builder makes. */
  spec(): VmmSpec {
    if (this.kernelBytes === undefined && this.startState === undefined) throw new VmmError("VMM_BUILD_INVALID", "no kernel: call kernel(), kernelFile() or cpuState()");
    if (this.kernelBytes !== undefined && this.startState !== undefined) throw new VmmError("VMM_BUILD_INVALID", "kernel() and cpuState() exclude each other");
    const tuned = this.emulateOpts !== undefined && this.kernelBytes !== undefined ? linuxEmulationCmdline(this.kernelBytes, this.cmd) : undefined;
    this.hostNote = tuned?.note;
    return {
      kernel: this.kernelBytes,
      cpuState: this.startState,
      format: this.kernelFormat,
      memoryBytes: this.memBytes,
      vcpus: this.nVcpus,
      cmdline: tuned?.cmdline ?? this.cmd,
      initrd: this.initrdBytes,
      console: this.consoleSink,
      serial: this.serialCfg,
      coalesceSerial: this.coalesceSerialOn,
      debugExit: this.debugExitCfg,
      irqchip: this.withIrqchip,
      pit: this.pitMode,
      acpi: this.withAcpi,
      mpTable: this.withMpTable,
      platformDevices: [...this.firmwareDevs],
      cpuidTemplate: this.template,
      cpuidEdit: this.cpuidEditFn,
      denyMsrs: this.msrDeny,
      msrFilter: this.filter,
      onMsr: this.msrHandler,
      ioPolicy: this.ioPolicyValue,
      pioDefault: this.pioDefaultHandler,
      mmioDefault: this.mmioDefaultHandler,
      pioObserver: this.pioObs,
      mmioObserver: this.mmioObs,
      tracePath: this.tracePath,
      watchdog: this.dog,
      pioDevices: this.pioDevs,
      mmioDevices: this.mmioDevs,
      slots: this.extraSlots,
      ioeventfds: this.ioevs,
      irqfds: this.irqs,
      prepare: this.prepareFn,
      onReport: this.reportCb,
      onValue: this.valueCb,
      onHypercall: this.hypercallCb,
      virtio: this.virtioDevs,
      onDeviceError: this.deviceErrorCb,
      emulate: this.emulateOpts,
      gdb: this.gdbOpts,
      vcpuWorker: this.vcpuWorkerOpts,
    };
  }

  /** Carry out the build steps; a failing step throws VmmBuildError naming it, with nothing left open. */
  build(): Vmm {
    return assemble(this.spec());
  }

  /** build() + run(); the VMM is released when the promise settles. */
  async run(): Promise<VmmResult> {
    return this.build().run();
  }
}
