import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CpuidTemplate, loadTemplate, parseTemplate } from "@tsvmm/cpuid";
import type { Device } from "@tsvmm/devices";
import type { EventFd, GuestRam } from "@tsvmm/kvm-backend";
import type { VmConfig } from "./config.js";
import { VmmError } from "./errors.js";
import type { KernelFormat } from "./kernel.js";
import { Vmm, type WatchdogOptions } from "./vmm.js";

function packageRoot(): string {
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

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new VmmError("VMM_FILE_UNREADABLE", `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/**
 * Assembles a VMM from the parts, in the manner of Firecracker's builder: say what the machine
 * has, then `build()` (or `run()` to build, run and release in one step).
 *
 * ```ts
 * const result = await new VmmBuilder().kernelFile("hello.elf").memoryMiB(64).console((b) => process.stdout.write(b)).run();
 * ```
 */
export class VmmBuilder {
  private kernelBytes: Uint8Array | undefined;
  private kernelFormat: KernelFormat | "auto" = "auto";
  private memBytes = 128 << 20;
  private nVcpus = 1;
  private cmd = "";
  private initrdBytes: Uint8Array | undefined;
  private consoleSink: (b: Buffer) => void = () => {};
  private serialCfg = { port: 0x3f8, irq: 4 };
  private debugExitCfg: { port: number; convention: "qemu" | "raw" } = { port: 0xf4, convention: "qemu" };
  private template: CpuidTemplate | undefined;
  private msrDeny: number[] | undefined;
  private tracePath: string | undefined;
  private dog: WatchdogOptions = {};
  private readonly pioDevs: Array<{ base: number; length: number; device: Device }> = [];
  private readonly mmioDevs: Array<{ base: number; length: number; device: Device }> = [];
  private readonly shared: Array<{ gpa: number; ram: GuestRam }> = [];
  private readonly ioevs: Array<{ port: number; length: number; eventfd: EventFd; datamatch?: bigint }> = [];
  private readonly irqs: Array<{ eventfd: EventFd; gsi: number }> = [];
  private reportCb: ((name: string, pass: boolean, vcpu: number) => void) | undefined;
  private valueCb: ((name: string, value: bigint, vcpu: number) => void) | undefined;

  /** A builder from a validated JSON config ({@link loadVmConfig}). */
  static fromConfig(c: VmConfig): VmmBuilder {
    const b = new VmmBuilder()
      .kernelFile(c.kernel ?? bundledHelloPath(), c.format)
      .memoryMiB(c.memoryMiB)
      .vcpus(c.vcpus)
      .cmdline(c.cmdline)
      .serial(c.serial.port, c.serial.irq)
      .debugExit(c.debugExit.port, c.debugExit.convention);
    if (c.initrd !== undefined) b.initrdFile(c.initrd);
    if (c.timeoutMs !== undefined) b.watchdog({ timeoutMs: c.timeoutMs });
    if (c.cpuidTemplate !== undefined) b.cpuidTemplate(c.cpuidTemplate);
    if (c.denyMsrs !== undefined) b.denyMsrs(c.denyMsrs.map((m) => (typeof m === "number" ? m : Number.parseInt(m, 16))));
    if (c.trace !== undefined) b.trace(c.trace);
    return b;
  }

  kernel(bytes: Uint8Array, format: KernelFormat | "auto" = "auto"): this {
    this.kernelBytes = bytes;
    this.kernelFormat = format;
    return this;
  }
  kernelFile(path: string, format: KernelFormat | "auto" = "auto"): this {
    return this.kernel(readFile(path, "kernel"), format);
  }
  memoryMiB(mib: number): this {
    if (!Number.isInteger(mib) || mib < 2 || mib > 3072) throw new VmmError("VMM_BUILD_INVALID", `memory ${mib} MiB: must be an integer from 2 to 3072`);
    this.memBytes = mib << 20;
    return this;
  }
  vcpus(n: number): this {
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new VmmError("VMM_BUILD_INVALID", `vcpus ${n}: must be an integer from 1 to 64`);
    this.nVcpus = n;
    return this;
  }
  cmdline(s: string): this {
    this.cmd = s;
    return this;
  }
  initrd(bytes: Uint8Array): this {
    this.initrdBytes = bytes;
    return this;
  }
  initrdFile(path: string): this {
    return this.initrd(readFile(path, "initrd"));
  }
  /** Where the guest's console bytes go (UART and CONSOLE_WRITE hypercalls). */
  console(sink: (bytes: Buffer) => void): this {
    this.consoleSink = sink;
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
  /** A shipped template name ("t2-like", "minimal"), a path to template JSON, or a parsed template. */
  cpuidTemplate(t: string | CpuidTemplate): this {
    if (typeof t !== "string") this.template = t;
    else if (/[/.]/.test(t)) this.template = parseTemplate(JSON.parse(readFile(t, "CPUID template").toString("utf8")));
    else this.template = loadTemplate(t);
    return this;
  }
  /** MSRs whose RDMSR/WRMSR exit to the VMM and get #GP (at most 16 here). */
  denyMsrs(msrs: readonly number[]): this {
    if (msrs.length > 16) throw new VmmError("VMM_BUILD_INVALID", `denyMsrs: at most 16 MSRs, got ${msrs.length}`);
    this.msrDeny = [...msrs];
    return this;
  }
  /** Record every device access to a JSON-lines file (replayable with @tsvmm/devices). */
  trace(path: string): this {
    this.tracePath = path;
    return this;
  }
  watchdog(w: WatchdogOptions): this {
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

  /**
   * Map memory shared with other VMs (a kvm-backend `GuestRam`) at `gpa`, outside RAM. The VMM does not
   * own it: close the GuestRam after every VM using it has stopped.
   */
  sharedMemory(gpa: number, ram: GuestRam): this {
    this.shared.push({ gpa, ram });
    return this;
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
  /** Listen to the guest's REPORT / REPORT_VALUE hypercalls. */
  onReport(cb: (name: string, pass: boolean, vcpu: number) => void): this {
    this.reportCb = cb;
    return this;
  }
  onValue(cb: (name: string, value: bigint, vcpu: number) => void): this {
    this.valueCb = cb;
    return this;
  }

  build(): Vmm {
    if (this.kernelBytes === undefined) throw new VmmError("VMM_BUILD_INVALID", "no kernel: call kernel() or kernelFile()");
    return new Vmm({
      kernel: this.kernelBytes,
      format: this.kernelFormat,
      memoryBytes: this.memBytes,
      vcpus: this.nVcpus,
      cmdline: this.cmd,
      initrd: this.initrdBytes,
      console: this.consoleSink,
      serial: this.serialCfg,
      debugExit: this.debugExitCfg,
      cpuidTemplate: this.template,
      denyMsrs: this.msrDeny,
      tracePath: this.tracePath,
      watchdog: this.dog,
      pioDevices: this.pioDevs,
      mmioDevices: this.mmioDevs,
      sharedMemory: this.shared,
      ioeventfds: this.ioevs,
      irqfds: this.irqs,
      onReport: this.reportCb,
      onValue: this.valueCb,
    });
  }

  /** build() + run(); the VMM is released when the promise settles. */
  async run(): Promise<import("./vmm.js").VmmResult> {
    return this.build().run();
  }
}
