import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GuestMemory, HC_PORT, type KvmCpuidEntry2, type KvmMsrFilter } from "@tsvmm/abi";
import { HYPERCALL_SIZE } from "@tsvmm/devices";
import type { Vcpu, Vm } from "@tsvmm/kvm-backend";
import { type StopDetail, type Vmm, VmmBuilder } from "@tsvmm/vmm";
import { type BootMode, type GuestImage, parseGuestElf } from "./elf.js";
import { HarnessError } from "./errors.js";

// The test guests run on the VMM users get: a VmmBuilder configuration plus recording hooks (bus
// observers, default handlers for ports and MMIO nobody claims, report/value/hypercall callbacks,
// an MSR hook). Nothing here runs a vCPU or handles an exit itself.

export const RAM_MIB = 16;
export const RAM_BYTES = RAM_MIB << 20;
const UART_BASE = 0x3f8;

export interface ExtraSlot {
  readonly base: number;
  readonly size: number;
  readonly readonly?: boolean;
  readonly logDirty?: boolean;
  /** Bytes written into the slot before the guest starts. */
  readonly fill?: Buffer;
}

export interface IoRecord {
  readonly vcpu: number;
  readonly port: number;
  readonly size: number;
  readonly direction: "in" | "out";
  /** The value written by the guest, or answered to it. */
  readonly values: number[];
}
export interface MmioRecord {
  readonly vcpu: number;
  readonly address: bigint;
  readonly length: number;
  readonly isWrite: boolean;
  readonly value: bigint;
}
export interface MsrRecord {
  readonly vcpu: number;
  readonly kind: "rdmsr" | "wrmsr";
  readonly index: number;
  readonly data: bigint;
  readonly outcome: "ok" | "fail";
}
export interface ValueRecord {
  readonly vcpu: number;
  readonly name: string;
  readonly value: bigint;
  /** performance.now() when the VMM received it. */
  readonly at: number;
}
export interface ReportRecord {
  readonly vcpu: number;
  readonly name: string;
  readonly pass: boolean;
}

/** How the run ended, in the terms of a test. `exit`: every vCPU made the EXIT hypercall. */
export type RunEnd =
  | { kind: "exit" }
  | { kind: "shutdown"; vcpu: number }
  | { kind: "timeout"; rips: bigint[] }
  | { kind: "internal_error"; vcpu: number; suberror: number; instructionBytes: string | undefined; rip: bigint }
  | { kind: "fail_entry"; vcpu: number; reason: bigint }
  | { kind: "unexpected"; vcpu: number; exit: string }
  | { kind: "other"; detail: StopDetail; message: string };

export interface RunContext {
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  /** The running VMM (e.g. for `consoleInput`, or its virtio devices). */
  readonly vmm: Vmm;
}

/** What `GuestCase.prepare` may change about the boot. */
export interface PrepareResult {
  /** Boot a long64 guest with this CR3 (tables the caller wrote) instead of the boot identity map. */
  readonly cr3?: bigint;
}

export interface GuestCase {
  /** Guest file name in test-kernels/out, without ".elf". */
  readonly name: string;
  readonly vcpus?: number;
  /** The in-kernel irqchip (default off: HLT exits to the VMM). */
  readonly irqchip?: boolean;
  readonly slots?: readonly ExtraSlot[];
  /** Wall-clock limit for the whole run (default 10 s). */
  readonly timeoutMs?: number;
  /** Rewrite the CPUID table of vCPU `index` (given: the VMM's table for that vCPU). */
  readonly cpuid?: (entries: KvmCpuidEntry2[], index: number) => KvmCpuidEntry2[];
  readonly msrFilter?: KvmMsrFilter;
  /**
   * Called once guest memory holds the image and the boot data, before any vCPU exists: write
   * what the guest should find. Returning `cr3` boots a long64 guest on those tables.
   */
  readonly prepare?: (ctx: { readonly vm: Vm; readonly memory: GuestMemory }) => PrepareResult | undefined;
  /** Answer an IN nobody claims (return the value) / observe such an OUT. Undefined for IN: all ones. */
  readonly onIo?: (port: number, size: number, direction: "in" | "out", value: number) => number | undefined;
  /** Answer an MMIO read nobody claims (default all ones). */
  readonly onMmioRead?: (address: bigint, length: number) => bigint;
  /** Answer a filtered RDMSR/WRMSR: a value (rdmsr) / true to accept, or "fail" for #GP. */
  readonly onMsr?: (kind: "rdmsr" | "wrmsr", index: number, data: bigint) => bigint | boolean | "fail";
  /** Called when the guest reports a value (e.g. to raise an interrupt at the right moment). */
  readonly onValue?: (name: string, value: bigint, ctx: RunContext) => void;
  /** Edit the builder before build(): attach virtio devices (they need `irqchip: true`), error hooks. */
  readonly configure?: (b: VmmBuilder) => void;
  /** Called after the run, before the VM is closed (read the dirty log or guest memory here). */
  readonly inspect?: (ctx: RunContext) => void;
}

export interface RunResult {
  readonly end: RunEnd;
  readonly mode: BootMode;
  /** Exit code per vCPU that made the EXIT hypercall. */
  readonly exitCodes: ReadonlyMap<number, number>;
  /** EXIT code of vCPU 0. */
  readonly exitCode: number | undefined;
  /** What the guest wrote with the CONSOLE_WRITE hypercall. */
  readonly console: string;
  /** What the guest wrote to the UART. */
  readonly uart: string;
  /** What reached the console from a virtio-console (also part of `console`). */
  readonly virtioConsole: string;
  readonly reports: readonly ReportRecord[];
  readonly values: readonly ValueRecord[];
  /** Port accesses other than the hypercall doorbell and the UART, one per element. */
  readonly io: readonly IoRecord[];
  readonly mmio: readonly MmioRecord[];
  readonly msrs: readonly MsrRecord[];
  /** Per vCPU: the CPUID table given to KVM_SET_CPUID2 and the one KVM_GET_CPUID2 returned after it. */
  readonly cpuid: readonly { set: KvmCpuidEntry2[]; held: KvmCpuidEntry2[] }[];
  /** Every doorbell ring: the call number (undefined if the block was unreadable) and its status. */
  readonly hypercalls: readonly { vcpu: number; call: number | undefined; status: number }[];
  readonly exits: number;
  readonly elapsedMs: number;
  /** The last value named `name` (any vCPU unless given); throws if the guest never reported it. */
  value(name: string, vcpu?: number): bigint;
  /** Every report named `name` passed, and there was at least one. */
  passed(name: string): boolean;
}

export const OUT_DIR = new URL("../out/", import.meta.url);

/** `make -s -C test-kernels`: a no-op when the guests are up to date, so suites can call it first. */
export function buildGuests(): void {
  // Test files run in parallel processes: serialize the builds.
  const lock = join(tmpdir(), "tsvmm-test-kernels.lock");
  execFileSync("flock", [lock, "make", "-s", "-j2", "-C", new URL("..", OUT_DIR).pathname], { stdio: "inherit" });
}

export function guestPath(name: string): string {
  return new URL(`${name}.elf`, OUT_DIR).pathname;
}

export function loadImage(name: string): GuestImage {
  return parseGuestElf(readFileSync(guestPath(name)));
}

function mask(v: number, size: number): number {
  return size >= 4 ? v >>> 0 : v & ((1 << (8 * size)) - 1);
}

function endOf(detail: StopDetail, message: string, rips: readonly bigint[]): RunEnd {
  switch (detail.kind) {
    case "exit-hypercall":
      return { kind: "exit" };
    case "shutdown":
      return { kind: "shutdown", vcpu: detail.vcpu };
    case "watchdog":
      return { kind: "timeout", rips: [...rips] };
    case "internal-error":
      return { kind: "internal_error", vcpu: detail.vcpu, suberror: detail.suberror, instructionBytes: detail.instructionBytes, rip: detail.rip };
    case "fail-entry":
      return { kind: "fail_entry", vcpu: detail.vcpu, reason: detail.hardwareEntryFailureReason };
    case "unexpected-exit":
      return { kind: "unexpected", vcpu: detail.vcpu, exit: detail.exit };
    default:
      return { kind: "other", detail, message };
  }
}

/** Boots `c.name` on a VM assembled by VmmBuilder and runs it to its end. */
export async function runGuest(c: GuestCase): Promise<RunResult> {
  const image = loadImage(c.name);
  const nvcpus = c.vcpus ?? 1;
  if (nvcpus < 1 || nvcpus > 4) throw new HarnessError("HARNESS_BAD_CONFIG", `vcpus must be 1..4, not ${nvcpus}`);
  let consoleText = "";
  let uart = "";
  let virtioConsole = "";
  const reports: ReportRecord[] = [];
  const values: ValueRecord[] = [];
  const io: IoRecord[] = [];
  const mmio: MmioRecord[] = [];
  const msrs: MsrRecord[] = [];
  const hypercalls: { vcpu: number; call: number | undefined; status: number }[] = [];
  let ctx: RunContext | undefined;

  const b = new VmmBuilder()
    .kernelFile(guestPath(c.name), "tsvmm")
    .memoryMiB(RAM_MIB)
    .vcpus(nvcpus)
    .irqchip(c.irqchip ?? false)
    .watchdog({ timeoutMs: c.timeoutMs ?? 10_000 })
    .console((bytes, source) => {
      if (source === "uart") uart += bytes.toString("latin1");
      else consoleText += bytes.toString("utf8");
      if (source === "virtio") virtioConsole += bytes.toString("utf8");
    })
    .onReport((name, pass, vcpu) => reports.push({ vcpu, name, pass }))
    .onValue((name, value, vcpu) => {
      values.push({ vcpu, name, value, at: performance.now() });
      if (ctx !== undefined) c.onValue?.(name, value, ctx);
    })
    .onHypercall((o) => hypercalls.push({ vcpu: o.vcpu, call: o.call, status: o.status }))
    .pioDefault({
      read: (port, data) => data.writeUIntLE(mask(c.onIo?.(port, data.length, "in", 0) ?? 0xffffffff, data.length), 0, data.length),
      write: (port, data) => void c.onIo?.(port, data.length, "out", data.readUIntLE(0, data.length)),
    })
    .observePio((port, data, isWrite, vcpu) => {
      if ((port >= HC_PORT && port < HC_PORT + HYPERCALL_SIZE) || (port >= UART_BASE && port < UART_BASE + 8)) return;
      io.push({ vcpu, port, size: data.length, direction: isWrite ? "out" : "in", values: [data.readUIntLE(0, Math.min(data.length, 6))] });
    })
    .mmioDefault({
      read: (address, data) => {
        const v = c.onMmioRead?.(BigInt(address), data.length) ?? (1n << BigInt(8 * data.length)) - 1n;
        for (let i = 0; i < data.length; i++) data[i] = Number((v >> BigInt(8 * i)) & 0xffn);
      },
      write: () => {},
    })
    .observeMmio((address, data, isWrite, vcpu) => {
      let value = 0n;
      for (let i = data.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[i]!);
      mmio.push({ vcpu, address: BigInt(address), length: data.length, isWrite, value });
    })
    .onMsr((kind, index, data, vcpu) => {
      const answer = c.onMsr?.(kind, index, data) ?? "fail";
      const failed = answer === "fail" || answer === false;
      msrs.push({ vcpu, kind, index, data: kind === "rdmsr" && typeof answer === "bigint" ? answer : data, outcome: failed ? "fail" : "ok" });
      return answer;
    })
    .prepare(({ vm }) => {
      const r = c.prepare?.({ vm, memory: vm.memory });
      if (r?.cr3 === undefined) return undefined;
      if (image.mode !== 2) throw new HarnessError("HARNESS_BAD_CONFIG", `prepare() returned a CR3, but ${c.name} is not a long64 guest`);
      return { sregs: { cr3: r.cr3 } };
    });
  if (c.cpuid !== undefined) b.cpuidEdit(c.cpuid);
  if (c.msrFilter !== undefined) b.msrFilter(c.msrFilter);
  for (const s of c.slots ?? []) b.memorySlot({ gpa: s.base, size: s.size, readonly: s.readonly, logDirty: s.logDirty, fill: s.fill });
  c.configure?.(b);

  const started = performance.now();
  const vmm = b.build();
  ctx = { vm: vmm.vm, vcpus: vmm.vcpus, vmm };
  try {
    const r = await vmm.run({ close: false });
    c.inspect?.(ctx);
    const elapsedMs = performance.now() - started;
    return {
      end: endOf(r.detail, r.message, r.vcpuRips),
      mode: image.mode,
      exitCodes: r.exitCodes,
      exitCode: r.exitCodes.get(0),
      console: consoleText,
      uart,
      virtioConsole,
      reports,
      values,
      io,
      mmio,
      msrs,
      hypercalls,
      cpuid: vmm.cpuid,
      exits: r.exits,
      elapsedMs,
      value(name: string, vcpu?: number): bigint {
        const hits = values.filter((v) => v.name === name && (vcpu === undefined || v.vcpu === vcpu));
        const last = hits[hits.length - 1];
        if (last === undefined) {
          throw new HarnessError("HARNESS_BAD_CONFIG", `guest never reported "${name}"; it reported ${JSON.stringify(values.map((v) => v.name))}, console: ${consoleText}`);
        }
        return last.value;
      },
      passed(name: string): boolean {
        const hits = reports.filter((r) => r.name === name);
        return hits.length > 0 && hits.every((r) => r.pass);
      },
    };
  } finally {
    await vmm.close();
  }
}
