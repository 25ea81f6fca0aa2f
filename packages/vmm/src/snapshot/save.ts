import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from "@tsvmm/abi";
import type { Vmm } from "../vmm.js";
import { encodeValue, isPlainData } from "./codec.js";
import { saveDevices } from "./devices.js";
import { SnapshotError } from "./errors.js";
import { HEADER_FILE, MEMORY_FILE, PAGE_SIZE, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, STATE_FILE, serializeHeader, sha256 } from "./format.js";
import { hostFingerprint, hostInfo } from "./host.js";
import { writeMemory } from "./memory.js";
import { settleSoftEvents } from "./settle.js";
import type { SlotState, SnapshotState, VcpuState, VmState } from "./state.js";
import { readableMsrs, saveVcpu } from "./vcpu-state.js";
import { tsvmmVersion } from "./version.js";

export interface SnapshotOptions {
  /** Resume a VM that snapshot() paused once the snapshot is written (default true). */
  resume?: boolean;
  /** Called as guest memory is written: bytes done of bytes to write. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

/** What a snapshot holds, as written. */
export interface SnapshotInfo {
  dir: string;
  /** memory.bin's length: every slot of guest memory. */
  memoryBytes: number;
  /** Bytes actually written to memory.bin (non-zero pages); the rest are holes. */
  dataBytes: number;
  stateBytes: number;
  vcpus: number;
  devices: string[];
  durationMs: number;
}

/** VmmSpec fields that are the VM's inputs, not its configuration: never recorded. */
const NOT_CONFIG = new Set(["kernel", "initrd", "cpuState", "ramFile", "prepare", "cmdline"]);

function recordSpec(spec: object | undefined): { spec: Record<string, unknown>; notSaved: string[] } {
  const out: Record<string, unknown> = {};
  const notSaved: string[] = [];
  for (const [k, v] of Object.entries(spec ?? {})) {
    if (NOT_CONFIG.has(k) || v === undefined) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (isPlainData(v)) out[k] = v;
    else notSaved.push(k);
  }
  return { spec: out, notSaved };
}

/**
 * Save a paused (or never started) VM into `dir`. Everything is read from KVM and the devices
 * first (a device that cannot be saved fails here, by name, before anything is written); then the
 * files go into a temporary directory beside `dir`, header last, each fsync'ed, and the directory
 * is renamed into place. On any failure the temporary directory is removed: a directory named
 * `dir` is always a complete snapshot.
 */
export async function saveSnapshot(vmm: Vmm, dir: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
  const t0 = performance.now();
  const access = vmm.snapshotAccess();
  const { parts } = access;
  if (access.started && !vmm.paused) throw new SnapshotError("SNAPSHOT_VM_STATE", "the VM is running and not paused (it may have stopped)");
  if (parts.vm.closed) throw new SnapshotError("SNAPSHOT_VM_STATE", "the VM is closed");
  const target = resolve(dir);
  if (existsSync(target)) throw new SnapshotError("SNAPSHOT_EXISTS", `${target} exists already; a snapshot is written to a new directory`);
  // A vCPU parked with a software exception in flight has a state KVM_GET_VCPU_EVENTS cannot
  // carry: run on until none is (settle.ts says why).
  if (access.started) await settleSoftEvents(vmm);
  if (access.started && !vmm.paused) throw new SnapshotError("SNAPSHOT_VM_STATE", "the VM stopped while its state was being settled for the snapshot");

  // ---- everything in memory first ----
  const host = hostInfo(parts.kvm);
  const devices = saveDevices(parts.pio, parts.mmio);
  const vm = parts.vm;
  const xsave = (host.caps.XSAVE ?? 0) > 0;
  const msrs = parts.vcpus.length > 0 ? readableMsrs(parts.vcpus[0]!, host.msrIndexList) : [];
  const vcpus: VcpuState[] = parts.vcpus.map((v, i) =>
    saveVcpu(v, parts.cpuid[i]!, msrs, { irqchip: parts.irqchip, xsave, tscKhz: (host.caps.GET_TSC_KHZ ?? 0) > 0 }),
  );
  const vmState: VmState = {
    irqchip: parts.irqchip
      ? { picMaster: vm.getIrqchip(KVM_IRQCHIP_PIC_MASTER).chip, picSlave: vm.getIrqchip(KVM_IRQCHIP_PIC_SLAVE).chip, ioapic: vm.getIrqchip(KVM_IRQCHIP_IOAPIC).chip }
      : null,
    // A lazy PIT the guest has not touched yet is not there to save; restore leaves it lazy too.
    pit2: parts.irqchip && vm.hasPit2 ? vm.getPit2() : null,
    clock: (host.caps.ADJUST_CLOCK ?? 0) > 0 ? vm.getClock() : null,
  };
  let fileOffset = 0;
  const slots: SlotState[] = [];
  const regions: { buffer: Buffer; fileOffset: number }[] = [];
  const shared = new Set((parts.spec?.slots ?? []).filter((s) => s.ram !== undefined).map((s) => s.gpa));
  for (const s of [...vm.memorySlots].sort((a, b) => a.slot - b.slot)) {
    slots.push({ slot: s.slot, gpa: s.base, size: s.size, readonly: s.readonly, logDirty: s.logDirty, name: s.name ?? `slot${s.slot}`, shared: shared.has(s.base), fileOffset });
    regions.push({ buffer: s.buffer, fileOffset });
    fileOffset += Math.ceil(s.size / PAGE_SIZE) * PAGE_SIZE;
  }
  const { spec, notSaved } = recordSpec(parts.spec);
  const boot = parts.boot;

  // ---- then the files ----
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(tmp);
    const mem = await open(join(tmp, MEMORY_FILE), "wx");
    let memory: Awaited<ReturnType<typeof writeMemory>>;
    try {
      memory = await writeMemory(mem, regions, fileOffset, options.onProgress);
      await mem.sync();
    } finally {
      await mem.close();
    }
    const state: SnapshotState = {
      spec,
      notSaved,
      boot: { format: boot.format, secondaries: boot.secondaries, description: boot.description },
      host,
      vm: vmState,
      slots,
      memoryRuns: memory.runs,
      vcpus,
      devices,
      run: { started: access.started, running: [...access.running].sort((a, b) => a - b), exitCodes: [...access.exitCodes.entries()] },
    };
    const stateBytes = Buffer.from(`${JSON.stringify(encodeValue(state))}\n`);
    await writeSynced(join(tmp, STATE_FILE), stateBytes);
    const header = serializeHeader({
      magic: SNAPSHOT_MAGIC,
      formatVersion: SNAPSHOT_FORMAT_VERSION,
      tsvmmVersion: tsvmmVersion(),
      createdAt: new Date().toISOString(),
      host: { fingerprint: hostFingerprint(host), vendor: host.vendor, kvmApi: host.kvmApi },
      state: { file: STATE_FILE, bytes: stateBytes.length, sha256: sha256(stateBytes) },
      memory: { file: MEMORY_FILE, bytes: fileOffset, dataBytes: memory.dataBytes, sha256: memory.sha256 },
    });
    await writeSynced(join(tmp, HEADER_FILE), Buffer.from(header));
    await syncDir(tmp);
    await rename(tmp, target);
    await syncDir(dirname(target));
    return {
      dir: target,
      memoryBytes: fileOffset,
      dataBytes: memory.dataBytes,
      stateBytes: stateBytes.length,
      vcpus: vcpus.length,
      devices: devices.map((d) => d.name),
      durationMs: performance.now() - t0,
    };
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    if (e instanceof SnapshotError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new SnapshotError("SNAPSHOT_WRITE_FAILED", `writing the snapshot to ${target} failed${code ? ` (${code})` : ""}: ${(e as Error).message}; nothing was left behind`, { cause: e });
  }
}

async function writeSynced(path: string, data: Buffer): Promise<void> {
  const fh = await open(path, "wx");
  try {
    let off = 0;
    while (off < data.length) off += (await fh.write(data, off, data.length - off, off)).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    await fh.close();
  }
}
