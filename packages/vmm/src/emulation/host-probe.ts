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
 * exits, an instruction family the VMM's emulator covers only in part, or kernel work that costs
 * ~1-3 us per instruction here (every CPL0 instruction goes through KVM's emulator).
 */
/** Built-in initcalls of Linux 6.1 that use the kernel's BTF (each registers BPF kfuncs): the first one run parses all of it. */
const BTF_AT_BOOT = ["cubictcp_register", "bpf_rstat_kfunc_init", "bpf_key_sig_kfuncs_init", "kfunc_init", "bpf_prog_test_run_init", "bpf_tcp_ca_kfunc_init"];

export const LINUX_ON_EMULATING_HOST: ReadonlyArray<{
  readonly arg: string;
  readonly why: string;
  /** Left out when the user's command line names any of these (they asked for what it turns off). */
  readonly unless?: readonly string[];
}> = [
  // Without XSAVE the kernel uses FXSAVE/FXRSTOR (in KVM's emulator) and sees no AVX/AVX-512, so
  // no VEX/EVEX code (BLAKE2s's AVX-512 path) is ever chosen; the CPUID table alone does not hide them here.
  { arg: "noxsave", why: "no XSAVE/AVX/AVX-512 paths (EVEX is not emulated)" },
  // 137 SSSE3 (BLAKE2s vector code), 141 CX16 (SLUB's lock cmpxchg16b, ~250 exits/s), 151 POPCNT
  // (hweight), 308 SMAP (CLAC/STAC on every kernel entry, ~190 exits/s; 6.x has no `nosmap` any more).
  // 297 ERMS and 580 FSRM: with them memset/memcpy/clear_page/memmove are `rep stosb`/`rep movsb`,
  // and KVM's emulator pays each byte as one iteration (~ one instruction): clearing a 4 KiB page
  // took 9.2-11.5 ms with `rep stosb` and 1.0-1.6 ms with the `rep stosq` the kernel uses without
  // ERMS (test guest at CPL0 on this host, load average 17). FSRM must go with ERMS: 6.1's memmove
  // drops its short-length check when FSRM is set and mis-copies anything under 32 bytes without
  // ERMS (a boot with only ERMS cleared hung in LSM init here; a known kernel bug of FSRM without ERMS).
  {
    arg: "clearcpuid=137,141,151,297,308,580",
    why: "SSSE3, CMPXCHG16B, POPCNT and SMAP off: generic code instead of an exit per use; ERMS and FSRM off: string copies and clears move 8 bytes per emulated iteration instead of 1",
  },
  // Return thunks, RSB filling and IBRS add instructions to every kernel function and entry, each
  // paid at the speed of emulated CPL0 code; this VM is a guest of this host alone.
  { arg: "mitigations=off", why: "no speculation mitigations (return thunks and RSB filling double the emulated kernel's work)" },
  // The crypto self-tests take ~10 minutes at the speed of emulated CPL0 code.
  { arg: "cryptomgr.notests=1", why: "crypto self-tests skipped" },
  // Three initcalls of the tracing core that were the two longest phases of the boot here, and a
  // guest of this VMM reads no trace at boot. (1) ftrace_check_for_weak_functions (since 5.19): a
  // scan of every ftrace record (37697 in Debian 6.1), one kallsyms lookup each, to disable the
  // records of overridden weak functions; a late initcall waits for it. ~420-470 s of a >1200 s
  // boot at load average 12-18; without it such records stay listed, and ftrace compares a call
  // site's bytes before patching it, so tracing one fails with a warning. (2) trace_eval_init and
  // (3) tracer_init_tracefs: enum-name rewriting of every event's format and the tracefs files of
  // every event (~2000), on a workqueue whose mutex init then waits on in init_kprobe_trace: ~500 s
  // at load 11 (`task swapper/0:1 blocked for more than 368 seconds`), 7 s without them. Without
  // them /sys/kernel/tracing has none of its files (the tracing core is still built in and set up).
  // A command line that asks for boot-time tracing keeps all three.
  {
    arg: "initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init,tracer_init_tracefs",
    why: "no boot-time kallsyms scan of every ftrace record, no enum rewriting and tracefs files for every trace event (the two longest phases of the boot here)",
    unless: ["ftrace", "ftrace_filter", "ftrace_notrace", "ftrace_graph_filter", "trace_event", "trace_options", "trace_buf_size", "trace_instance", "trace_trigger", "kprobe_event", "tp_printk", "traceoff_on_warning", "ftrace_dump_on_oops", "alloc_snapshot"],
  },
  // Initcalls that only run a self-test (cryptomgr.notests does not reach the library ones):
  // blake2s_mod_init is BLAKE2s's selftest and nothing else (7.6 s of a quiet boot here),
  // crypto_kdf108_init the SP800-108 KDF's (1.0 s). The algorithms stay available.
  {
    arg: "initcall_blacklist=blake2s_mod_init,crypto_kdf108_init",
    why: "no boot-time self-tests of BLAKE2s and the SP800-108 KDF (those initcalls run nothing else)",
  },
  // The first user of the kernel's own BTF makes it parse and check all of it (~5 MB, every type):
  // 75 s of a quiet boot here (initcall_debug: cubictcp_register 74.9 s; with it blacklisted the
  // parse moved to bpf_rstat_kfunc_init, then to bpf_key_sig_kfuncs_init; the other three of the
  // list register kfuncs the same way later in the boot). The users at boot are initcalls that
  // register BPF kfuncs; without them the parse happens when something needs BTF (the first module
  // load, the first BPF program with BTF), not at every boot. What is lost: those kfuncs for BPF
  // programs, and CUBIC — the same initcall registers it, so TCP's default congestion control is
  // Reno. A command line that sets tcp_congestion_control through sysctl keeps them all.
  {
    arg: `initcall_blacklist=${BTF_AT_BOOT.join(",")}`,
    why: "the kernel's BTF is not parsed at boot (its first users are initcalls registering BPF kfuncs, CUBIC's among them: TCP then defaults to Reno); a module load or BPF program parses it when it needs it",
    unless: ["sysctl.net.ipv4.tcp_congestion_control"],
  },
  // Debian turns on zeroing of every page and slab allocation (CONFIG_INIT_ON_ALLOC_DEFAULT_ON):
  // each page zeroed is ~500 emulated iterations even with `rep stosq`. Allocations that need
  // zeroes (__GFP_ZERO, kzalloc) still get them; this is the hardening default of upstream Linux.
  { arg: "init_on_alloc=0", why: "no zeroing of every allocation (Debian's hardening default)" },
  // A kernel that runs at emulated speed triggers the soft-lockup detector in long loops (each
  // report is ~30 lines of registers and stack through the emulated UART); there is nothing to
  // detect that the VMM's own watchdog does not.
  { arg: "nowatchdog", why: "no soft/hard-lockup detector (long emulated loops trip it and its reports cost more emulated work)" },
];

/** Arguments the kernel reads as one comma-separated list: the user's entries and ours go into it together. */
const LIST_ARGS = new Set(["clearcpuid", "initcall_blacklist"]);

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
  const ours: string[] = [];
  const added: Array<{ arg: string; why: string }> = [];
  for (const a of LINUX_ON_EMULATING_HOST) {
    const name = a.arg.split("=")[0]!;
    if (a.unless?.some((u) => given.has(u)) === true) continue;
    if (LIST_ARGS.has(name)) {
      // The kernel reads one list: the user's entries, or an earlier entry of ours, and these go into it together.
      const inTheirs = words.findIndex((w) => w.startsWith(`${name}=`));
      const list = inTheirs >= 0 ? words : ours;
      const k = inTheirs >= 0 ? inTheirs : ours.findIndex((w) => w.startsWith(`${name}=`));
      if (k >= 0) {
        const before = list[k]!.slice(name.length + 1).split(",").filter((x) => x.length > 0);
        const more = a.arg.slice(name.length + 1).split(",").filter((x) => !before.includes(x));
        if (more.length > 0) {
          list[k] = `${name}=${[...before, ...more].join(",")}`;
          added.push({ arg: `${name}+=${more.join(",")}`, why: a.why });
        }
        continue;
      }
    }
    if (!given.has(name)) {
      ours.push(a.arg);
      added.push(a);
    }
  }
  if (added.length === 0) return undefined;
  const shown = added.map((a) => a.arg).join(" ");
  return {
    cmdline: [...words, ...ours].join(" "),
    note: `this host's KVM emulates guest kernel code and cannot run some of its instructions (measured): added to the kernel command line: ${shown} (${added.map((a) => a.why).join("; ")})`,
  };
}
