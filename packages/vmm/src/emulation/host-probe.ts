import { Kvm } from "@tsvmm/kvm-backend";

/** What a one-instruction probe guest found out about this host's KVM. */
export interface HostEmulationFacts {
  /** CPL0 guest code that uses instructions KVM's emulator lacks stops with an emulation failure (PVM hosts). */
  readonly cpl0Emulated: boolean;
  /** How the probe ended: `hlt` (the instruction ran) or `internal_error` (KVM could not emulate it), or another exit kind. */
  readonly probeExit: string;
}

// popcnt eax, eax; hlt — at 0x1000 in real mode. POPCNT is outside KVM's instruction emulator, so a
// host that runs CPL0 code natively halts and one that emulates it (PVM) reports an emulation failure.
const PROBE = Uint8Array.from([0xf3, 0x0f, 0xb8, 0xc0, 0xf4]);
let cached: HostEmulationFacts | undefined;

/**
 * Measure once per process (a VM of 64 KiB, one vCPU, one KVM_RUN: a few milliseconds) whether
 * this host's KVM emulates guest CPL0 code, i.e. whether stock kernels need `--emulate` here.
 */
export function probeHostEmulation(): HostEmulationFacts {
  if (cached !== undefined) return cached;
  const kvm = Kvm.open();
  try {
    const vm = kvm.createVm();
    try {
      vm.setTssAddr(0xfffbd000);
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000, name: "probe" });
      vm.memory.write(0x1000, PROBE);
      const vcpu = vm.createVcpu(0);
      const sregs = vcpu.getSregs();
      vcpu.setSregs({ ...sregs, cs: { ...sregs.cs, base: 0n, selector: 0 } });
      vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rflags: 2n, rax: 0xffn });
      const exit = vcpu.run();
      cached = { cpl0Emulated: exit.kind === "internal_error", probeExit: exit.kind };
      return cached;
    } finally {
      vm.close();
    }
  } finally {
    kvm.close();
  }
}

/**
 * Kernel command line additions a stock Linux needs on a host whose KVM emulates CPL0 code, with
 * the reason for each (README "Instruction emulation"). Each one removes a stream of emulation
 * exits or an instruction family the VMM's emulator covers only in part.
 */
export const LINUX_ON_EMULATING_HOST: ReadonlyArray<{ readonly arg: string; readonly why: string }> = [
  // Without XSAVE the kernel uses FXSAVE/FXRSTOR (in KVM's emulator) and sees no AVX/AVX-512, so
  // no VEX/EVEX code (BLAKE2s's AVX-512 path) is ever chosen; the CPUID table alone does not hide them here.
  { arg: "noxsave", why: "no XSAVE/AVX/AVX-512 paths (EVEX is not emulated)" },
  // 137 SSSE3 (BLAKE2s vector code), 141 CX16 (SLUB's lock cmpxchg16b, ~250 exits/s), 151 POPCNT
  // (hweight), 308 SMAP (CLAC/STAC on every kernel entry, ~190 exits/s; 6.x has no `nosmap` any more).
  { arg: "clearcpuid=137,141,151,308", why: "SSSE3, CMPXCHG16B, POPCNT and SMAP off: generic code instead of an exit per use" },
  // Return thunks, RSB filling and IBRS add instructions to every kernel function and entry, each
  // paid at the speed of emulated CPL0 code; this VM is a guest of this host alone.
  { arg: "mitigations=off", why: "no speculation mitigations (return thunks and RSB filling double the emulated kernel's work)" },
  // The crypto self-tests take ~10 minutes at the speed of emulated CPL0 code.
  { arg: "cryptomgr.notests=1", why: "crypto self-tests skipped" },
];

/** True for a Linux image: a bzImage (HdrS at 0x202) or an ELF holding the kernel's banner. */
export function isLinuxImage(image: Uint8Array): boolean {
  const b = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  if (b.length > 0x206 && b.toString("latin1", 0x202, 0x206) === "HdrS") return true;
  return b.length > 4 && b.toString("latin1", 0, 4) === "\x7fELF" && b.indexOf("Linux version ") >= 0;
}

/**
 * The command line for `image` with what a Linux kernel needs on this host added (arguments the
 * user already gave, by name, are left as they are), and a note saying so; undefined when the
 * image is not Linux or the host runs CPL0 code itself.
 */
export function linuxEmulationCmdline(image: Uint8Array, cmdline: string): { cmdline: string; note: string } | undefined {
  if (!isLinuxImage(image) || !probeHostEmulation().cpl0Emulated) return undefined;
  const words = cmdline.split(/\s+/).filter((w) => w.length > 0);
  const given = new Set(words.map((w) => w.split("=")[0]));
  const added: Array<{ arg: string; why: string }> = [];
  for (const a of LINUX_ON_EMULATING_HOST) {
    const name = a.arg.split("=")[0]!;
    if (!given.has(name)) added.push(a);
    else if (name === "clearcpuid") {
      // The kernel reads one clearcpuid list: the user's numbers and ours go into it together.
      const k = words.findIndex((w) => w.startsWith("clearcpuid="));
      const theirs = words[k]!.slice("clearcpuid=".length).split(",").filter((x) => x.length > 0);
      const ours = a.arg.slice("clearcpuid=".length).split(",").filter((x) => !theirs.includes(x));
      if (ours.length > 0) {
        words[k] = `clearcpuid=${[...theirs, ...ours].join(",")}`;
        added.push({ arg: `clearcpuid+=${ours.join(",")}`, why: a.why });
      }
    }
  }
  if (added.length === 0) return undefined;
  const base = words.join(" ");
  const args = added.filter((a) => !a.arg.startsWith("clearcpuid+=")).map((a) => a.arg).join(" ");
  const shown = added.map((a) => a.arg).join(" ");
  return {
    cmdline: `${base} ${args}`.trim(),
    note: `this host's KVM emulates guest kernel code and cannot run some of its instructions (measured): added to the kernel command line: ${shown} (${added.map((a) => a.why).join("; ")})`,
  };
}
