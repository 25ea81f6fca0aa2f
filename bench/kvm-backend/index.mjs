// kvm-backend benchmarks: PIO exit round trip (sync and async paths) and VM create-to-HLT,
// each measured beside the C baseline in this folder, in the same run, with the same guest.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Kvm } from "@tsvmm/kvm-backend";
import { benchRoot, compileC, median, outDir, result, runJson } from "../lib.mjs";

const EXITS = 100_000;

function assemble16(name, src) {
  mkdirSync(outDir, { recursive: true });
  const s = join(outDir, `${name}.s`);
  const o = join(outDir, `${name}.o`);
  const bin = join(outDir, `${name}.bin`);
  writeFileSync(s, `.code16\n.intel_syntax noprefix\n${src}\n`);
  execFileSync("as", ["--64", "-o", o, s]);
  execFileSync("ld", ["-m", "elf_x86_64", "-Ttext", "0", "--oformat", "binary", "-e", "0", "-o", bin, o]);
  return bin;
}

function makeVm(kvm, code) {
  const vm = kvm.createVm();
  vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 2 << 20 });
  vm.memory.write(0x1000, code);
  const vcpu = vm.createVcpu(0);
  const s = vcpu.getSregs();
  for (const k of ["cs", "ds", "es", "fs", "gs", "ss"]) {
    s[k].base = 0n;
    s[k].selector = 0;
  }
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = 0x1000n;
  r.rflags = 2n;
  r.rsp = 0x7000n;
  vcpu.setRegs(r);
  return { vm, vcpu };
}

export default async function bench() {
  const { readFileSync } = await import("node:fs");
  const pioBin = assemble16("kvm-pio-guest", `mov ecx, ${EXITS}\n mov al, 1\n1: out 0x10, al\n dec ecx\n jnz 1b\n hlt`);
  const hltBin = assemble16("kvm-hlt-guest", "hlt");
  const pioCode = readFileSync(pioBin);
  const hltCode = readFileSync(hltBin);
  const exe = compileC(join(benchRoot, "kvm-backend", "baseline.c"));
  const kvm = Kvm.open();
  const rows = [];

  // Alternate C and TypeScript runs so both see the same machine state; take medians.
  const cPio = [];
  const tsPio = [];
  const tsAsync = [];
  for (let round = 0; round < 3; round++) {
    cPio.push(runJson(exe, ["pio", pioBin, "1"]).usPerExit);
    {
      const { vm, vcpu } = makeVm(kvm, pioCode);
      let sink = 0;
      let exits = 0;
      const t0 = process.hrtime.bigint();
      for (;;) {
        const e = vcpu.run();
        exits++;
        if (e.kind === "io") {
          sink += e.port + e.value;
          continue;
        }
        if (e.kind === "hlt") break;
        throw new Error(`unexpected exit ${e.kind}`);
      }
      tsPio.push(Number(process.hrtime.bigint() - t0) / 1000 / exits);
      vm.close();
      if (sink < 0) throw new Error("unreachable");
    }
    {
      const { vm, vcpu } = makeVm(kvm, pioCode);
      let exits = 0;
      const t0 = process.hrtime.bigint();
      for (;;) {
        const e = await vcpu.runAsync();
        exits++;
        if (e.kind === "io") continue;
        if (e.kind === "hlt") break;
        throw new Error(`unexpected exit ${e.kind}`);
      }
      tsAsync.push(Number(process.hrtime.bigint() - t0) / 1000 / exits);
      vm.close();
    }
  }
  const c = median(cPio);
  rows.push(result("pio-exit-roundtrip", median(tsPio), "us/exit", c, { goal: "ratio <= 1.10", path: "sync" }));
  rows.push(result("pio-exit-roundtrip-async", median(tsAsync), "us/exit", c, { path: "worker thread" }));

  const REPS = 200;
  const cCreate = runJson(exe, ["create", hltBin, String(REPS)]).usPerVm;
  const times = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = process.hrtime.bigint();
    const { vm, vcpu } = makeVm(kvm, hltCode);
    const e = vcpu.run();
    if (e.kind !== "hlt") throw new Error(`unexpected exit ${e.kind}`);
    vm.close();
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  rows.push(result("vm-create-to-hlt", median(times), "us", cCreate, { goal: "ratio <= 3" }));
  kvm.close();
  return rows;
}
