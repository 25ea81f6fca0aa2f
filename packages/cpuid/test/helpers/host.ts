import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
let dir: string | undefined;

function run(name: string): number[][] {
  dir ??= mkdtempSync(join(tmpdir(), "tsvmm-cpuid-"));
  const exe = join(dir, name);
  execFileSync("gcc", ["-O1", "-o", exe, join(here, `${name}.c`)]);
  const out = execFileSync(exe, { encoding: "utf8" });
  return out
    .trim()
    .split("\n")
    .map((l) => l.split(" ").map((x) => Number.parseInt(x, 16)));
}

/** This host's raw CPUID (leaves 0..max basic, 0x80000000..max extended), executed by a C program. */
export function hostCpuid(): { leaf: number; subleaf: number; eax: number; ebx: number; ecx: number; edx: number }[] {
  return run("host-cpuid").map(([leaf, subleaf, eax, ebx, ecx, edx]) => ({
    leaf: leaf!,
    subleaf: subleaf!,
    eax: eax!,
    ebx: ebx!,
    ecx: ecx!,
    edx: edx!,
  }));
}

/** KVM_GET_SUPPORTED_CPUID of this machine's /dev/kvm, read by a C program. */
export function kvmSupportedCpuid(): {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}[] {
  return run("kvm-supported").map(([fn, index, flags, eax, ebx, ecx, edx]) => ({
    function: fn!,
    index: index!,
    flags: flags!,
    eax: eax!,
    ebx: ebx!,
    ecx: ecx!,
    edx: edx!,
  }));
}

export interface GuestCpuidResult {
  vcpu: number;
  leaf: number;
  subleaf: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/**
 * Runs a 16-bit guest per vCPU on /dev/kvm (C harness, no kvm-backend) with each vCPU's
 * KVM_SET_CPUID2 entries, executing CPUID for every query; returns what the guests saw.
 */
export function guestCpuid(
  queries: readonly (readonly [number, number])[],
  perVcpu: readonly (readonly { function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number }[])[],
): GuestCpuidResult[] {
  dir ??= mkdtempSync(join(tmpdir(), "tsvmm-cpuid-"));
  const exe = join(dir, "guest-cpuid");
  execFileSync("gcc", ["-O1", "-o", exe, join(here, "guest-cpuid.c")]);
  const h = (n: number) => n.toString(16);
  const input = [
    ...queries.map(([l, s]) => `q ${h(l)} ${h(s)}`),
    ...perVcpu.flatMap((entries, v) =>
      entries.map((e) => `e ${h(v)} ${[e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx].map(h).join(" ")}`),
    ),
  ].join("\n");
  const out = execFileSync(exe, { input: `${input}\n`, encoding: "utf8" });
  return out
    .trim()
    .split("\n")
    .map((l) => {
      const [vcpu, leaf, subleaf, eax, ebx, ecx, edx] = l.split(" ").map((x) => Number.parseInt(x, 16));
      return { vcpu: vcpu!, leaf: leaf!, subleaf: subleaf!, eax: eax!, ebx: ebx!, ecx: ecx!, edx: edx! };
    });
}
