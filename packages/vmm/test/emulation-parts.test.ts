import { spawnSync } from "node:child_process";
import { requireKvm } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";
import { IdtGate64Layout, SegmentDescriptorLayout, Tss64Layout } from "../src/emulation/descriptors.js";
import { linuxEmulationCmdline, probeHostEmulation } from "../src/emulation/host-probe.js";
import { EmulationStats } from "../src/emulation/vcpu-emulation.js";
import { busyboxInitramfs, newcArchive, S_IFDIR, S_IFREG } from "../src/initramfs.js";

describe("system structures read for by-hand delivery (SDM vol. 3A figures 3-8, 6-8, 8-11)", () => {
  it("64-bit IDT gate: 16 bytes, selector at 2, IST at 4, type/DPL/P at 5, offset 31:16 at 6, 63:32 at 8", () => {
    expect(IdtGate64Layout.size).toBe(16);
    expect(["selector", "ist", "typeAttr", "offsetMid", "offsetHigh", "reserved"].map((f) => IdtGate64Layout.offsetOf(f))).toEqual([2, 4, 5, 6, 8, 12]);
  });
  it("segment descriptor: 8 bytes, base 23:16 at 4, access at 5, flags/limit 19:16 at 6, base 31:24 at 7", () => {
    expect(SegmentDescriptorLayout.size).toBe(8);
    expect(["baseLow", "baseMid", "access", "flagsLimit", "baseHigh"].map((f) => SegmentDescriptorLayout.offsetOf(f))).toEqual([2, 4, 5, 6, 7]);
  });
  it("64-bit TSS: 104 bytes, RSP0 at 4, IST1 at 0x24, I/O map base at 0x66", () => {
    expect(Tss64Layout.size).toBe(104);
    expect([Tss64Layout.offsetOf("rsp"), Tss64Layout.offsetOf("ist"), Tss64Layout.offsetOf("ioMapBase")]).toEqual([4, 0x24, 0x66]);
  });
});

describe("newc initramfs", () => {
  it("busybox's cpio lists and extracts what newcArchive wrote", () => {
    const data = new TextEncoder().encode("hello, odd length");
    const a = newcArchive([
      { path: "d", mode: S_IFDIR | 0o755 },
      { path: "d/f", mode: S_IFREG | 0o644, data },
    ]);
    expect(a.length % 4).toBe(0);
    const list = spawnSync("busybox", ["cpio", "-t"], { input: a, encoding: "utf8" });
    expect(list.status).toBe(0);
    expect(list.stdout.trim().split("\n")).toEqual(["d", "d/f"]);
    const cat = spawnSync("busybox", ["cpio", "-i", "--to-stdout", "d/f"], { input: a });
    expect(Buffer.from(cat.stdout).toString()).toBe("hello, odd length");
    const rd = busyboxInitramfs({ busyboxPath: "/bin/busybox", script: "#!/bin/busybox sh\n" });
    const names = spawnSync("busybox", ["cpio", "-t"], { input: rd, encoding: "utf8" }).stdout.trim().split("\n");
    expect(names).toEqual(["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "proc", "sys", "init"]);
    expect(() => newcArchive([{ path: "/abs", mode: S_IFREG }])).toThrow(/relative path/);
  });
});

describe("emulation stats", () => {
  it("most frequent first, ties by name", () => {
    const s = new EmulationStats();
    for (const m of ["clac", "popcnt", "popcnt", "int3", "clac", "popcnt"]) s.add(m);
    expect(s.summary()).toBe("popcnt 3, clac 2, int3 1");
    expect(s.total).toBe(6);
  });
});

describe.runIf(requireKvm())("host probe and Linux command line", () => {
  it("adds what Linux needs only for a Linux image on a host that emulates CPL0, keeping the user's own arguments", () => {
    const facts = probeHostEmulation();
    expect(["hlt", "internal_error"]).toContain(facts.probeExit);
    const bz = new Uint8Array(0x400);
    bz.set(new TextEncoder().encode("HdrS"), 0x202);
    const r = linuxEmulationCmdline(bz, "console=ttyS0 clearcpuid=1");
    if (!facts.cpl0Emulated) {
      expect(r).toBeUndefined();
      return;
    }
    const tracing = "ftrace_check_for_weak_functions,trace_eval_init,tracer_init_tracefs";
    const selftests = "blake2s_mod_init,crypto_kdf108_init";
    const btf = "cubictcp_register,bpf_rstat_kfunc_init,bpf_key_sig_kfuncs_init,kfunc_init,bpf_prog_test_run_init,bpf_tcp_ca_kfunc_init";
    const blacklist = `${tracing},${selftests},${btf}`;
    const rest = `mitigations=off cryptomgr.notests=1 initcall_blacklist=${blacklist} init_on_alloc=0 nowatchdog`;
    expect(r?.cmdline).toBe(`console=ttyS0 clearcpuid=1,137,141,151,297,308,580 noxsave ${rest}`);
    expect(linuxEmulationCmdline(bz, "noxsave")?.cmdline).toBe(`noxsave clearcpuid=137,141,151,297,308,580 ${rest}`);
    // The note names each addition once, with the entries that joined a list shown as `+=`.
    const shown = `mitigations=off cryptomgr.notests=1 initcall_blacklist=${tracing} initcall_blacklist\\+=${selftests} initcall_blacklist\\+=${btf} init_on_alloc=0 nowatchdog`;
    expect(r?.note).toMatch(new RegExp(`added to the kernel command line: noxsave clearcpuid\\+=137,141,151,297,308,580 ${shown} \\(`));
    // A list the user gave is extended, not replaced; an argument the user set by name is left alone.
    const u = linuxEmulationCmdline(bz, "initcall_blacklist=foo_init,trace_eval_init init_on_alloc=1 clearcpuid=297");
    expect(u?.cmdline).toBe(
      `initcall_blacklist=foo_init,trace_eval_init,ftrace_check_for_weak_functions,tracer_init_tracefs,${selftests},${btf} init_on_alloc=1 clearcpuid=297,137,141,151,308,580 noxsave mitigations=off cryptomgr.notests=1 nowatchdog`,
    );
    expect(linuxEmulationCmdline(bz, "initcall_blacklist=foo_init")?.cmdline).toContain(`initcall_blacklist=foo_init,${blacklist} `);
    // Asking for boot-time tracing keeps the tracing core's initcalls, not the others.
    const traced = linuxEmulationCmdline(bz, "trace_event=sched:*")?.cmdline ?? "";
    expect(traced).toContain(`initcall_blacklist=${selftests},${btf} `);
    expect(traced).not.toContain("trace_eval_init");
    // Choosing TCP's congestion control keeps CUBIC, and with it the BTF parse at boot.
    const tcp = linuxEmulationCmdline(bz, "sysctl.net.ipv4.tcp_congestion_control=cubic")?.cmdline ?? "";
    expect(tcp).toContain(`initcall_blacklist=${tracing},${selftests} `);
    expect(tcp).not.toContain("cubictcp_register");
    expect(linuxEmulationCmdline(new Uint8Array(0x400), "console=ttyS0")).toBeUndefined();
  });
});
