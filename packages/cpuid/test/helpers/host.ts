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
