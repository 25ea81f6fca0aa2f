import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from "@tsvmm/abi";
import { Kvm } from "@tsvmm/kvm-backend";
import { assemble, type ConsoleSink, type ExtraSlot, type VmmSpec } from "../assemble.js";
import { VmmBuilder } from "../builder.js";
import type { BootPlan } from "../kernel.js";
import { createPit } from "../lazy-pit.js";
import type { Vmm } from "../vmm.js";
import type { WatchdogOptions } from "../watchdog.js";
import { restoreDevices } from "./devices.js";
import { SnapshotError } from "./errors.js";
import { checkMemoryFile, MEMORY_FILE, PAGE_SIZE, readHeader, readState, type SnapshotHeader } from "./format.js";
import { compatibilityProblems, hostFingerprint, hostInfo } from "./host.js";
import type { SnapshotState } from "./state.js";
import { restoreVcpu } from "./vcpu-state.js";

export interface RestoreOptions {
  /** Where the guest's console goes (UART and CONSOLE_WRITE), as VmmBuilder.console. */
  console?: ConsoleSink;
  watchdog?: WatchdogOptions;
  onReport?: (name: string, pass: boolean, vcpu: number) => void;
  onValue?: (name: string, value: bigint, vcpu: number) => void;
  /**
   * VmmSpec fields to give again: what the snapshot could not record (callbacks, devices of your
   * own, an I/O policy; `SnapshotCheck.state.notSaved` lists them), merged over the saved configuration.
   */
  spec?: Partial<VmmSpec>;
  /**
   * "map" (default): RAM is a private copy-on-write mapping of memory.bin; pages are read from the
   * file when the guest first touches them. "copy": fresh memory, the written pages read in now.
   */
  memory?: "map" | "copy";
  /** Check the SHA-256 of the memory file's written pages before restoring (default true). */
  verifyMemory?: boolean;
  /** Restore even if this host lacks CPUID features or KVM capabilities the guest relies on. */
  force?: boolean;
}

/** A snapshot that passed every check that needs no VM. */
export interface SnapshotCheck {
  dir: string;
  header: SnapshotHeader;
  state: SnapshotState;
  /** What this host lacks that the guest relies on (empty when compatible, or ignored with force). */
  hostProblems: string[];
}

const SECONDARIES = new Set(["same-state", "wait-for-sipi"]);

function checkShape(state: SnapshotState, path: string): void {
  const bad = (what: string) => new SnapshotError("SNAPSHOT_BAD_STATE", `${path}: ${what}`);
  if (typeof state !== "object" || state === null) throw bad("not an object");
  if (!Array.isArray(state.vcpus) || state.vcpus.length === 0) throw bad("no vCPUs");
  if (!Array.isArray(state.slots) || !state.slots.some((s) => s.slot === 0 && s.gpa === 0)) throw bad("no RAM slot");
  if (!Array.isArray(state.memoryRuns) || !Array.isArray(state.devices)) throw bad("memory runs or devices missing");
  if (typeof state.spec !== "object" || state.spec === null || typeof state.host !== "object" || state.host === null) throw bad("configuration or host missing");
  if (!SECONDARIES.has(state.boot?.secondaries)) throw bad("boot plan missing");
  if (state.spec.vcpus !== state.vcpus.length) throw bad(`configuration says ${String(state.spec.vcpus)} vCPUs, ${state.vcpus.length} saved`);
  for (const [i, v] of state.vcpus.entries()) {
    if (v.id !== i || typeof v.regs !== "object" || typeof v.sregs !== "object" || !Array.isArray(v.msrs) || !Array.isArray(v.cpuid?.set)) {
      throw bad(`vCPU ${i} is incomplete`);
    }
  }
}

/**
 * Every check that needs no VM, in the order a reader meets the problems: the header (magic,
 * version, its checksum), the state file (length, checksum, shape), the memory file (length, and
 * its checksum unless `verifyMemory` is false), then this host against the one that saved it.
 * Throws a SnapshotError naming what is wrong; creates nothing.
 */
export function checkSnapshot(dir: string, options: { verifyMemory?: boolean; force?: boolean; kvm?: Kvm } = {}): SnapshotCheck {
  const header = readHeader(dir);
  const state = readState(dir, header);
  checkShape(state, join(dir, "state.json"));
  checkMemoryFile(dir, header, state.memoryRuns, options.verifyMemory !== false);
  const kvm = options.kvm ?? Kvm.open();
  let hostProblems: string[] = [];
  try {
    const now = hostInfo(kvm);
    if (hostFingerprint(now) !== header.host.fingerprint) hostProblems = compatibilityProblems(state, now);
  } finally {
    if (options.kvm === undefined) kvm.close();
  }
  if (hostProblems.length > 0 && options.force !== true) {
    throw new SnapshotError(
      "SNAPSHOT_HOST_MISMATCH",
      `the snapshot was taken on a host this one differs from in what the guest relies on: ${hostProblems.join("; ")} (restore with force to try anyway)`,
    );
  }
  return { dir, header, state, hostProblems };
}

/** Read the written pages of [fileOffset, fileOffset + size) from memory.bin into `target`. */
function copyIn(fd: number, runs: readonly (readonly [number, number])[], fileOffset: number, size: number, target: Buffer): void {
  const first = fileOffset / PAGE_SIZE;
  const end = first + size / PAGE_SIZE;
  for (const [p, n] of runs) {
    const a = Math.max(p, first);
    const b = Math.min(p + n, end);
    if (a >= b) continue;
    let pos = a * PAGE_SIZE;
    let left = (b - a) * PAGE_SIZE;
    let dst = pos - fileOffset;
    while (left > 0) {
      const r = readSync(fd, target, dst, left, pos);
      if (r === 0) throw new SnapshotError("SNAPSHOT_TRUNCATED", `memory.bin ends at ${pos}`);
      pos += r;
      dst += r;
      left -= r;
    }
  }
}

/**
 * How guest memory comes back: "map" gives slot 0 a MAP_PRIVATE mapping of memory.bin at build
 * time; "copy" (and a prepared restore) gives fresh zeroed memory and reads the written pages in
 * when the state is applied.
 */
type MemoryMode = "map" | "copy";

/** A VM built like the saved one, its saved state not yet applied. */
function buildLike(check: SnapshotCheck, options: RestoreOptions, mode: MemoryMode, fd: number | undefined): Vmm {
  const { state } = check;
  const ram = state.slots.find((s) => s.slot === 0)!;
  const extra: ExtraSlot[] = state.slots
    .filter((s) => s.slot !== 0)
    .sort((a, b) => a.slot - b.slot)
    .map((s) => {
      const given = options.spec?.slots?.find((x) => x.gpa === s.gpa && x.ram !== undefined);
      if (given !== undefined) return given;
      // Read in with slot 0 when the state is applied (copyMemory): zeroed until then.
      return { gpa: s.gpa, size: s.size, readonly: s.readonly, logDirty: s.logDirty, name: s.name };
    });
  const v0 = state.vcpus[0]!;
  const base = new VmmBuilder().cpuState({ regs: v0.regs, sregs: v0.sregs }).spec();
  const saved = state.spec as Partial<VmmSpec>;
  const spec: VmmSpec = {
    ...base,
    ...saved,
    ...options.spec,
    kernel: undefined,
    cpuState: { regs: v0.regs, sregs: v0.sregs },
    prepare: undefined,
    tracePath: options.spec?.tracePath,
    console: options.console ?? options.spec?.console ?? base.console,
    watchdog: options.watchdog ?? options.spec?.watchdog ?? saved.watchdog ?? base.watchdog,
    onReport: options.onReport ?? options.spec?.onReport,
    onValue: options.onValue ?? options.spec?.onValue,
    memoryBytes: ram.size,
    vcpus: state.vcpus.length,
    slots: extra,
    cpuidEdit: (_entries, i) => state.vcpus[i]!.cpuid.set,
    ramFile: mode === "map" && fd !== undefined ? { fd, offset: ram.fileOffset } : undefined,
    fromSnapshot: true,
    // The snapshot, not the recorded configuration, says whether there is a PIT (applyState).
    pit: "lazy",
  };
  return assemble(spec);
}

/** The written pages of every slot memory.bin holds (slot 0 too unless it is mapped from the file). */
function copyMemory(vmm: Vmm, check: SnapshotCheck, options: RestoreOptions, fd: number, mapped: boolean): void {
  const { state } = check;
  const memory = vmm.snapshotAccess().parts.vm.memory;
  for (const s of state.slots) {
    if (s.slot === 0 && mapped) continue;
    if (s.slot !== 0 && options.spec?.slots?.some((x) => x.gpa === s.gpa && x.ram !== undefined)) continue;
    copyIn(fd, state.memoryRuns, s.fileOffset, s.size, memory.slice(s.gpa, s.size));
  }
}

/**
 * Start each vCPU's runner thread now with a KVM_RUN that returns at once (immediate_exit: KVM
 * enters no guest and changes no state), so the thread is up by the time run() wants it instead of
 * being created then (a thread start is milliseconds on a loaded host). run() waits for it (the
 * VM's `ready` list); a failure here only means the thread is made later.
 */
function startRunners(vmm: Vmm): Promise<void> {
  const { parts } = vmm.snapshotAccess();
  const up = Promise.all(
    parts.vcpus.map((v) => {
      v.kick();
      return v.runAsync().then(
        () => {},
        () => {},
      );
    }),
  ).then(() => {});
  (parts.ready as Promise<void>[]).push(up);
  return up;
}

/** Put the saved VM, vCPU and device state into a VM built by buildLike (never run). */
function applyState(vmm: Vmm, check: SnapshotCheck): void {
  const { state } = check;
  const { parts, running, exitCodes, started } = vmm.snapshotAccess();
  if (started || parts.vm.closed) throw new SnapshotError("SNAPSHOT_VM_STATE", "a snapshot is restored into a VM that has never run");
  // The boot plan the guest was started with decides how its run ends (which EXIT stops it).
  (parts.boot as { -readonly [K in keyof BootPlan]: BootPlan[K] }).secondaries = state.boot.secondaries;
  running.clear();
  for (const i of state.run.running) running.add(i);
  exitCodes.clear();
  for (const [i, c] of state.run.exitCodes) exitCodes.set(i, c);
  const vm = parts.vm;
  try {
    if (state.vm.irqchip !== null) {
      vm.setIrqchip({ chipId: KVM_IRQCHIP_PIC_MASTER, chip: state.vm.irqchip.picMaster });
      vm.setIrqchip({ chipId: KVM_IRQCHIP_PIC_SLAVE, chip: state.vm.irqchip.picSlave });
      vm.setIrqchip({ chipId: KVM_IRQCHIP_IOAPIC, chip: state.vm.irqchip.ioapic });
    }
    if (state.vm.pit2 !== null) {
      if (!vm.hasPit2) createPit(vm);
      vm.setPit2(state.vm.pit2);
    }
    for (const [i, v] of parts.vcpus.entries()) restoreVcpu(v, state.vcpus[i]!);
    if (state.vm.clock !== null) vm.setClock({ ...state.vm.clock, flags: 0 });
  } catch (e) {
    throw new SnapshotError("SNAPSHOT_RESTORE_FAILED", `KVM refused part of the saved state: ${(e as Error).message}`, { cause: e });
  }
  restoreDevices(parts.pio, parts.mmio, state.devices);
}

/** Build a VM like the saved one and put its state back; `check` has passed. The VM is ready to run(). */
export function restoreChecked(check: SnapshotCheck, options: RestoreOptions = {}): Vmm {
  const mode = options.memory ?? "map";
  const fd = openSync(join(check.dir, MEMORY_FILE), "r");
  let vmm: Vmm | undefined;
  try {
    vmm = buildLike(check, options, mode, fd);
    // The threads start while the state is put back.
    void startRunners(vmm);
    copyMemory(vmm, check, options, fd, mode === "map");
    applyState(vmm, check);
    return vmm;
  } catch (e) {
    if (vmm !== undefined) void vmm.close().catch(() => {});
    throw e;
  } finally {
    // The mapping holds the file; the descriptor is not needed any more.
    closeSync(fd);
  }
}

/**
 * A restore split in two: the VM is built now (the KVM objects, what costs most: the memory slot
 * alone takes ~8 ms on this host whatever its size), with its RAM already mapped from memory.bin
 * (`memory: "map"`, the default) or still zero (`"copy"`), and `finish()` later reads in what is
 * not mapped and applies the saved state, which is all that is left between a request and a
 * running guest. For pools of clones kept ready, or a restore whose snapshot is known before it
 * is wanted. The snapshot must not change in between.
 */
export interface PreparedRestore {
  /** The VM, built and not yet holding the saved state. */
  readonly vmm: Vmm;
  /** Read the memory in and apply the state: the VM is then ready to run(). Once. */
  finish(): Vmm;
  /** Release a VM that will not be used. */
  close(): Promise<void>;
}

export function prepareChecked(check: SnapshotCheck, options: RestoreOptions = {}): PreparedRestore {
  const mode = options.memory ?? "map";
  const mapFd = mode === "map" ? openSync(join(check.dir, MEMORY_FILE), "r") : undefined;
  let vmm: Vmm;
  try {
    vmm = buildLike(check, options, mode, mapFd);
  } finally {
    // The mapping holds the file.
    if (mapFd !== undefined) closeSync(mapFd);
  }
  let finished = false;
  return {
    vmm,
    finish(): Vmm {
      if (finished) throw new SnapshotError("SNAPSHOT_VM_STATE", "this prepared restore was finished already");
      finished = true;
      let fd: number | undefined;
      try {
        fd = openSync(join(check.dir, MEMORY_FILE), "r");
        copyMemory(vmm, check, options, fd, mode === "map");
        applyState(vmm, check);
        return vmm;
      } catch (e) {
        void vmm.close().catch(() => {});
        throw e instanceof SnapshotError ? e : new SnapshotError("SNAPSHOT_RESTORE_FAILED", `finishing the restore failed: ${(e as Error).message}`, { cause: e });
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    },
    close: () => vmm.close(),
  };
}

/**
 * Check a snapshot directory and build a VM for it now, its vCPU threads started; `finish()`
 * applies the state when it is wanted.
 */
export async function prepareRestore(dir: string, options: RestoreOptions = {}): Promise<PreparedRestore> {
  const prepared = prepareChecked(checkSnapshot(dir, { verifyMemory: options.verifyMemory, force: options.force }), options);
  await startRunners(prepared.vmm);
  return prepared;
}

/** Check a snapshot directory, then build and return a VM that goes on where the saved one stopped. */
export async function restoreSnapshot(dir: string, options: RestoreOptions = {}): Promise<Vmm> {
  return restoreChecked(checkSnapshot(dir, { verifyMemory: options.verifyMemory, force: options.force }), options);
}

