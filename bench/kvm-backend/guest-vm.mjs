// The VM every kvm-backend figure runs its guest in, and the synchronous PIO loop.

/** One VM with 2 MiB and `n` vCPUs, all in real mode at 0:0x1000 (the code needs no stack). */
export function makeVm(kvm, code, n = 1) {
  const vm = kvm.createVm();
  vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 2 << 20 });
  vm.memory.write(0x1000, code);
  const vcpus = [];
  for (let i = 0; i < n; i++) {
    const vcpu = vm.createVcpu(i);
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
    vcpus.push(vcpu);
  }
  return { vm, vcpu: vcpus[0], vcpus };
}

/** KVM_RUN on this thread until HLT, reading each PIO exit's port and data as the C loop does. */
export function runPioSync(vcpu) {
  let sink = 0;
  let exits = 0;
  for (;;) {
    const e = vcpu.run();
    exits++;
    if (e.kind === "io") {
      sink += e.port + e.value;
      continue;
    }
    if (e.kind === "hlt") return { exits, sink };
    throw new Error(`unexpected exit ${e.kind}`);
  }
}
