import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type GuestMemory, HC_PORT, HC_SIGNATURE_PORT, HypercallDispatcher, KVM_MP_STATE, KVM_MSR_EXIT_REASON, type KvmCpuidEntry2,
  type KvmMsrFilter,
} from "@tsvmm/abi";
import { Kvm, type Vcpu, type VcpuExit, type Vm } from "@tsvmm/kvm-backend";
import { bootRegs, bootSregs, writeBootData } from "./boot.js";
import { BootMode, type GuestImage, loadGuestImage, parseGuestElf } from "./elf.js";
import { HarnessError } from "./errors.js";

// A mini VMM for test guests: RAM, the hypercall doorbell, a UART sink, and logs of every port,
// MMIO and MSR access, so a test can assert what the guest did and saw.

export const RAM_BYTES = 16 << 20;
const UART_BASE = 0x3f8;
const UART_LSR = UART_BASE + 5;
/** LSR: transmitter holding register empty + transmitter empty. */
const LSR_IDLE = 0x60;

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
  /** One value per element (written by the guest, or answered to it). */
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

/** How the run ended. `exit`: every vCPU made the EXIT hypercall. */
export type RunEnd =
  | { kind: "exit" }
  | { kind: "shutdown"; vcpu: number }
  | { kind: "timeout"; rips: bigint[] }
  | { kind: "internal_error"; vcpu: number; suberror: number; instructionBytes: string | undefined; rip: bigint }
  | { kind: "fail_entry"; vcpu: number; reason: bigint }
  | { kind: "unexpected"; vcpu: number; exit: string };

export interface RunContext {
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
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
  readonly irqchip?: boolean;
  readonly slots?: readonly ExtraSlot[];
  /** Wall-clock limit for the whole run (default 10 s). */
  readonly timeoutMs?: number;
  /** Rewrite the CPUID table of vCPU `index` (default: KVM's supported table with the APIC id set). */
  readonly cpuid?: (entries: KvmCpuidEntry2[], index: number) => KvmCpuidEntry2[];
  readonly msrFilter?: KvmMsrFilter;
  /**
   * Called once guest memory holds the image and the boot data, before any vCPU exists: write
   * what the guest should find (a parameter block, page tables of your own). Returning `cr3`
   * boots a long64 guest on those tables; they must identity-map the image, the boot GDT at
   * 0x500 and whatever else the guest touches through its identity addresses.
   */
  readonly prepare?: (ctx: { readonly vm: Vm; readonly memory: GuestMemory }) => PrepareResult | undefined;
  /** Answer an IN (return the value) / observe an OUT. Undefined for IN: the guest reads all ones. */
  readonly onIo?: (port: number, size: number, direction: "in" | "out", value: number) => number | undefined;
  /** Answer an MMIO read (default all ones). */
  readonly onMmioRead?: (address: bigint, length: number) => bigint;
  /** Answer a filtered RDMSR/WRMSR: a value (rdmsr) / true to accept, or "fail" for #GP. */
  readonly onMsr?: (kind: "rdmsr" | "wrmsr", index: number, data: bigint) => bigint | boolean | "fail";
  /** Called when the guest reports a value (e.g. to raise an interrupt at the right moment). */
  readonly onValue?: (name: string, value: bigint, ctx: RunContext) => void;
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
  readonly console: string;
  readonly uart: string;
  readonly reports: readonly ReportRecord[];
  readonly values: readonly ValueRecord[];
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

/** CPUID.1:EBX[31:24] is the initial APIC id; KVM leaves it to userspace. */
export function withApicId(entries: KvmCpuidEntry2[], apicId: number): KvmCpuidEntry2[] {
  return entries.map((e) => (e.function === 1 ? { ...e, ebx: ((e.ebx & 0x00ffffff) | (apicId << 24)) >>> 0 } : e));
}

function mask(v: number, size: number): number {
  return size === 4 ? v >>> 0 : v & ((1 << (8 * size)) - 1);
}

/** Boots `c.name` on a fresh VM and runs it to its end. */
export async function runGuest(c: GuestCase): Promise<RunResult> {
  const image = loadImage(c.name);
  const nvcpus = c.vcpus ?? 1;
  if (nvcpus < 1 || nvcpus > 4) throw new HarnessError("HARNESS_BAD_CONFIG", `vcpus must be 1..4, not ${nvcpus}`);
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  const started = performance.now();
  try {
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: RAM_BYTES });
    (c.slots ?? []).forEach((s, i) => {
      vm.addMemory({ slot: i + 1, guestPhysAddr: s.base, size: s.size, readonly: s.readonly ?? false, logDirty: s.logDirty ?? false });
    });
    const memory = vm.memory;
    for (const s of c.slots ?? []) if (s.fill) memory.write(s.base, s.fill);
    loadGuestImage(image, memory);
    writeBootData(image.mode, memory);
    const prepared = c.prepare?.({ vm, memory });
    if (prepared?.cr3 !== undefined && image.mode !== BootMode.long64) {
      throw new HarnessError("HARNESS_BAD_CONFIG", `prepare() returned a CR3, but ${c.name} is not a long64 guest`);
    }
    if (c.irqchip) vm.createIrqchip();
    if (c.msrFilter) {
      vm.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
      vm.setMsrFilter(c.msrFilter);
    }

    const base = kvm.supportedCpuid();
    const vcpus: Vcpu[] = [];
    const cpuid: { set: KvmCpuidEntry2[]; held: KvmCpuidEntry2[] }[] = [];
    for (let i = 0; i < nvcpus; i++) {
      const vcpu = vm.createVcpu(i);
      const table = withApicId(base, i);
      const set = c.cpuid ? c.cpuid(table, i) : table;
      vcpu.setCpuid2(set);
      cpuid.push({ set, held: vcpu.getCpuid2() });
      const sregs = bootSregs(image.mode, vcpu.getSregs());
      vcpu.setSregs(prepared?.cr3 === undefined ? sregs : { ...sregs, cr3: prepared.cr3 });
      vcpu.setRegs(bootRegs(image));
      // Secondary vCPUs start UNINITIALIZED under an irqchip: they take the same boot state.
      if (i > 0 && c.irqchip) vcpu.setMpState(KVM_MP_STATE.RUNNABLE);
      vcpus.push(vcpu);
    }
    const ctx: RunContext = { vm, vcpus };

    let consoleText = "";
    let uart = "";
    const reports: ReportRecord[] = [];
    const values: ValueRecord[] = [];
    const io: IoRecord[] = [];
    const mmio: MmioRecord[] = [];
    const msrs: MsrRecord[] = [];
    const exitCodes = new Map<number, number>();
    const hypercalls: { vcpu: number; call: number | undefined; status: number }[] = [];
    let exits = 0;
    let end: RunEnd | undefined;
    const finish = (e: RunEnd): void => {
      if (end === undefined) end = e;
      for (const v of vcpus) v.kick();
    };

    const timer = setTimeout(() => finish({ kind: "timeout", rips: [] }), c.timeoutMs ?? 10_000);
    const runOne = async (index: number): Promise<void> => {
      const vcpu = vcpus[index]!;
      const hc = new HypercallDispatcher(memory, {
        console: (b) => {
          consoleText += b.toString("utf8");
        },
        report: (name, pass) => reports.push({ vcpu: index, name, pass }),
        value: (name, value) => {
          values.push({ vcpu: index, name, value, at: performance.now() });
          c.onValue?.(name, value, ctx);
        },
      });
      for (;;) {
        if (end !== undefined) return;
        const exit: VcpuExit = await vcpu.runAsync();
        exits++;
        if (end !== undefined) return;
        switch (exit.kind) {
          case "io": {
            const { port, size, direction, count } = exit;
            const data = exit.data;
            if (port === HC_PORT || port === HC_SIGNATURE_PORT) {
              for (let k = 0; k < count; k++) {
                if (direction === "out") {
                  const v = size === 4 ? data.readUInt32LE(k * 4) : size === 2 ? data.readUInt16LE(k * 2) : data[k]!;
                  const outcome = port === HC_PORT ? hc.doorbell(v, size) : undefined;
                  if (outcome) hypercalls.push({ vcpu: index, call: outcome.call, status: outcome.status });
                  if (outcome?.exitCode !== undefined) {
                    exitCodes.set(index, outcome.exitCode);
                    if (exitCodes.size === nvcpus) finish({ kind: "exit" });
                    return;
                  }
                } else {
                  data.writeUIntLE(mask(hc.read(port, size), size), k * size, size);
                }
              }
              break;
            }
            if (port >= UART_BASE && port < UART_BASE + 8) {
              if (direction === "out" && port === UART_BASE) uart += data.toString("latin1");
              if (direction === "in") data.fill(port === UART_LSR ? LSR_IDLE : 0);
              break;
            }
            const vals: number[] = [];
            for (let k = 0; k < count; k++) {
              if (direction === "out") {
                const v = data.readUIntLE(k * size, size);
                vals.push(v);
                c.onIo?.(port, size, "out", v);
              } else {
                const answer = c.onIo?.(port, size, "in", 0);
                const v = mask(answer ?? 0xffffffff, size);
                data.writeUIntLE(v, k * size, size);
                vals.push(v);
              }
            }
            io.push({ vcpu: index, port, size, direction, values: vals });
            break;
          }
          case "mmio": {
            if (!exit.isWrite) exit.setValue(c.onMmioRead?.(exit.address, exit.length) ?? (1n << BigInt(8 * exit.length)) - 1n);
            mmio.push({ vcpu: index, address: exit.address, length: exit.length, isWrite: exit.isWrite, value: exit.value });
            break;
          }
          case "rdmsr":
          case "wrmsr": {
            const answer = c.onMsr?.(exit.kind, exit.index, exit.data) ?? "fail";
            const data = exit.data;
            if (answer === "fail" || answer === false) exit.fail();
            else exit.reply(typeof answer === "bigint" ? answer : 0n);
            msrs.push({ vcpu: index, kind: exit.kind, index: exit.index, data: exit.kind === "rdmsr" && answer !== "fail" && typeof answer === "bigint" ? answer : data, outcome: answer === "fail" || answer === false ? "fail" : "ok" });
            break;
          }
          case "hlt":
            // Without an irqchip HLT comes here; nothing will wake the guest but us: go on.
            break;
          case "interrupted":
            break;
          case "shutdown":
            finish({ kind: "shutdown", vcpu: index });
            return;
          case "internal_error": {
            const rip = vcpu.getRegs().rip;
            finish({ kind: "internal_error", vcpu: index, suberror: exit.suberror, instructionBytes: exit.instructionBytes?.toString("hex"), rip });
            return;
          }
          case "fail_entry":
            finish({ kind: "fail_entry", vcpu: index, reason: exit.hardwareEntryFailureReason });
            return;
          default:
            finish({ kind: "unexpected", vcpu: index, exit: JSON.stringify(exit.toJSON()) });
            return;
        }
      }
    };
    try {
      await Promise.all(vcpus.map((_, i) => runOne(i)));
    } finally {
      clearTimeout(timer);
    }
    // Where each vCPU was when the limit hit: the first thing to know about a hung guest.
    if (end?.kind === "timeout") for (const v of vcpus) end.rips.push(v.getRegs().rip);
    c.inspect?.(ctx);
    const elapsedMs = performance.now() - started;
    const finalEnd: RunEnd = end ?? { kind: "exit" };
    return {
      end: finalEnd,
      mode: image.mode,
      exitCodes,
      exitCode: exitCodes.get(0),
      console: consoleText,
      uart,
      reports,
      values,
      io,
      mmio,
      msrs,
      hypercalls,
      cpuid,
      exits,
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
    vm.close();
    kvm.close();
  }
}
