import { readFileSync, statSync } from "node:fs";
import {KVM_IOCTLS as IOC, 
  KVM_API_VERSION, KVM_CAP, type KvmCapName, 
  KvmCpuid2Layout, type KvmCpuidEntry2, KvmCpuidEntry2Layout,KvmMsrListLayout,
} from "@tsvmm/abi";
import { ERRNO } from "./errno.js";
import { errnoName, ioctlError, KvmError } from "./errors.js";
import { type NativeAddon, native } from "./native.js";
import { decodeEntries } from "./vcpu.js";
import { Vm } from "./vm.js";


/**
 * The /dev/kvm system handle: what this host's KVM supports, and the factory for VMs.
 * VMs are independent of it: closing the Kvm handle does not close them.
 */
export class Kvm {
  private fdValue: number;
  private readonly n: NativeAddon;
  /** KVM_GET_VCPU_MMAP_SIZE: the size of each vCPU's kvm_run mapping. */
  readonly vcpuMmapSize: number;
  private readonly vms = new Set<Vm>();

  private constructor(fd: number, n: NativeAddon) {
    this.fdValue = fd;
    this.n = n;
    try {
      const version = this.ioctlInt(IOC.KVM_GET_API_VERSION);
      if (version !== KVM_API_VERSION) {
        throw new KvmError("KVM_BAD_API_VERSION", `KVM API version is ${version}, tsvmm speaks ${KVM_API_VERSION}`);
      }
      this.vcpuMmapSize = this.ioctlInt(IOC.KVM_GET_VCPU_MMAP_SIZE);
    } catch (e) {
      n.close(fd);
      this.fdValue = -1;
      throw e;
    }
  }

  /** Open /dev/kvm. Throws KvmError KVM_NOT_FOUND / KVM_PERMISSION_DENIED / KVM_OPEN_FAILED. */
  static open(path = "/dev/kvm"): Kvm {
    const n = native();
    const fd = n.open(path, n.constants.O_RDWR);
    if (fd < 0) {
      const errno = -fd;
      const name = errnoName(errno);
      if (errno === ERRNO.ENOENT || errno === ERRNO.ENODEV || errno === ERRNO.ENXIO) {
        throw new KvmError("KVM_NOT_FOUND", `${path} does not exist (${name}): this machine has no KVM`, { errno, ioctl: "open" });
      }
      if (errno === ERRNO.EACCES || errno === ERRNO.EPERM) {
        throw new KvmError("KVM_PERMISSION_DENIED", `${path}: permission denied (${name}); ${permissionAdvice(path)}`, { errno, ioctl: "open" });
      }
      throw new KvmError("KVM_OPEN_FAILED", `cannot open ${path}: ${name}`, { errno, ioctl: "open" });
    }
    return new Kvm(fd, n);
  }

  get fd(): number {
    if (this.fdValue < 0) throw new KvmError("KVM_CLOSED", "the /dev/kvm handle is closed");
    return this.fdValue;
  }

  private ioctlInt(request: number, arg: number = 0): number {
    const r = this.n.ioctl(this.fd, request, arg);
    if (r < 0) throw ioctlError(request, r);
    return r;
  }

  apiVersion(): number {
    return this.ioctlInt(IOC.KVM_GET_API_VERSION);
  }

  /** KVM_CHECK_EXTENSION: 0 = unsupported; otherwise a capability-specific value. */
  checkExtension(cap: number | KvmCapName): number {
    const n = typeof cap === "number" ? cap : KVM_CAP[cap];
    return this.ioctlInt(IOC.KVM_CHECK_EXTENSION, n);
  }

  /** Every capability tsvmm names, with KVM's answer. */
  capabilities(): Record<KvmCapName, number> {
    const out = {} as Record<KvmCapName, number>;
    for (const k of Object.keys(KVM_CAP) as KvmCapName[]) out[k] = this.checkExtension(k);
    return out;
  }

  /** KVM_GET_SUPPORTED_CPUID. */
  supportedCpuid(): KvmCpuidEntry2[] {
    return this.cpuidList(IOC.KVM_GET_SUPPORTED_CPUID);
  }
  /** KVM_GET_EMULATED_CPUID. */
  emulatedCpuid(): KvmCpuidEntry2[] {
    return this.cpuidList(IOC.KVM_GET_EMULATED_CPUID);
  }
  private cpuidList(request: number): KvmCpuidEntry2[] {
    // KVM answers E2BIG until the buffer is large enough; grow until it fits. It builds the whole
    // list before it says so, so a first try that is too small costs a second full build: hosts
    // here answer 75-100 entries, and 256 (10 KiB) fits them in one call.
    for (let max = 256; max <= 4096; max *= 2) {
      const buf = Buffer.alloc(KvmCpuid2Layout.size + max * KvmCpuidEntry2Layout.size);
      KvmCpuid2Layout.encode({ nent: max }, buf);
      const r = this.n.ioctlBuf(this.fd, request, buf);
      if (r === -ERRNO.E2BIG) continue;
      if (r < 0) throw ioctlError(request, r);
      return decodeEntries(buf, KvmCpuid2Layout.size, KvmCpuidEntry2Layout, KvmCpuid2Layout.decode(buf).nent);
    }
    throw new KvmError("KVM_IOCTL_FAILED", "CPUID list larger than 4096 entries");
  }

  /** KVM_GET_MSR_INDEX_LIST: MSRs KVM saves/restores. */
  msrIndexList(): number[] {
    return this.msrList(IOC.KVM_GET_MSR_INDEX_LIST);
  }
  /** KVM_GET_MSR_FEATURE_INDEX_LIST: feature MSRs readable with KVM_GET_MSRS on /dev/kvm. */
  msrFeatureIndexList(): number[] {
    return this.msrList(IOC.KVM_GET_MSR_FEATURE_INDEX_LIST);
  }
  private msrList(request: number): number[] {
    const probe = Buffer.alloc(KvmMsrListLayout.size);
    const r0 = this.n.ioctlBuf(this.fd, request, probe);
    if (r0 < 0 && r0 !== -ERRNO.E2BIG) throw ioctlError(request, r0);
    const n = KvmMsrListLayout.decode(probe).nmsrs;
    const buf = Buffer.alloc(KvmMsrListLayout.size + n * 4);
    KvmMsrListLayout.encode({ nmsrs: n }, buf);
    const r = this.n.ioctlBuf(this.fd, request, buf);
    if (r < 0) throw ioctlError(request, r);
    const count = KvmMsrListLayout.decode(buf).nmsrs;
    const out: number[] = [];
    for (let i = 0; i < count; i++) out.push(buf.readUInt32LE(KvmMsrListLayout.size + i * 4));
    return out;
  }

  /** KVM_CREATE_VM (default machine type). */
  createVm(): Vm {
    const fd = this.ioctlInt(IOC.KVM_CREATE_VM, 0);
    this.n.trackFd(fd);
    const vm = new Vm(fd, this.vcpuMmapSize, (v) => this.vms.delete(v));
    this.vms.add(vm);
    return vm;
  }

  /** Close /dev/kvm. VMs created from it stay usable until closed themselves. Idempotent. */
  close(): void {
    if (this.fdValue < 0) return;
    this.n.close(this.fdValue);
    this.fdValue = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * What to do about EACCES on the device, from what the device is: its owner, group and mode, and
 * whether that group exists here (a root:root 0600 device has no group to join).
 */
export function permissionAdvice(path: string, lookup: { stat: (p: string) => { uid: number; gid: number; mode: number }; groupName: (gid: number) => string | undefined } = defaultLookup): string {
  let st: { uid: number; gid: number; mode: number };
  try {
    st = lookup.stat(path);
  } catch {
    return "the device cannot be examined either; check that it exists and that this process may see it";
  }
  const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
  const group = lookup.groupName(st.gid);
  const who = `it is owned by uid ${st.uid}, group ${group ?? `gid ${st.gid} (no such group here)`}, mode ${mode}`;
  if ((st.mode & 0o060) === 0o060 && group !== undefined) return `${who}: add this user to group ${group} (then log in again), or run as root`;
  if (group !== undefined) return `${who}: the group has no read-write access; make it ${mode.slice(0, 2)}6${mode.slice(3)} and add this user to group ${group}, or run as root`;
  return `${who}: give a group read-write access (e.g. chgrp kvm ${path} && chmod 0660 ${path}, as udev's kvm rule does) and add this user to it, or run as root`;
}

const defaultLookup = {
  stat: (p: string) => statSync(p),
  groupName: (gid: number): string | undefined => {
    try {
      for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
        const f = line.split(":");
        if (f.length >= 3 && Number(f[2]) === gid) return f[0];
      }
    } catch {
      // No /etc/group: the name is unknown.
    }
    return undefined;
  },
};
