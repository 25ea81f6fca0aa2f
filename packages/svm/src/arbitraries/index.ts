import fc from "fast-check";
import { getProfile, PROFILES, type SvmCaps } from "../caps.js";
import { CHECKS, type VmrunEnv } from "../checks.js";
import { SvmError } from "../errors.js";
import type { VmcbState } from "../state.js";
import { GUEST_MODES, type GuestMode, supportsMode, validVmcbTemplate } from "../templates.js";
import { MUTATIONS, type Mutation } from "./mutations.js";

export { MUTATIONS, type Mutation } from "./mutations.js";

const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });
const canonical48 = fc.bigInt({ min: 0n, max: (1n << 47n) - 1n }).chain((low) => fc.constantFrom(low, low | 0xffff_8000_0000_0000n));

/**
 * A VMCB that passes every VMRUN check for `caps`, with a guest in `mode` (default: any mode the
 * CPU supports). Varies what the checks leave free: RIP/RSP/RAX, CR2, CR3 (within MAXPHYADDR),
 * GDTR/IDTR, FS/GS bases, arithmetic flags and IF, ASID (1..NASID−1), TSC offset, exception and CR
 * intercepts, interrupt shadow, V_TPR, the permission-map bases and an injected external interrupt.
 * Shrinks towards validVmcbTemplate(caps, mode).
 */
export function validVmcb(caps: SvmCaps, mode?: GuestMode): fc.Arbitrary<VmcbState> {
  const modes = mode ? [mode] : GUEST_MODES.filter((m) => supportsMode(caps, m));
  if (modes.length === 0 || (mode && !supportsMode(caps, mode))) throw new SvmError("SVM_INVALID_CAPS", `${caps.name} cannot run a ${mode}-mode guest`);
  const maxPhys = BigInt(caps.cpu.maxPhysAddr);
  const page = (reserve: bigint) => fc.bigInt({ min: 0n, max: ((1n << maxPhys) - reserve) >> 12n }).map((p) => p << 12n);
  return fc
    .record({
      mode: fc.constantFrom(...modes),
      // Optional fields shrink to "absent", which keeps the template's value.
      rip: opt(fc.bigInt({ min: 0n, max: 0xffff_ffffn })),
      rip64: opt(canonical48),
      rsp: opt(fc.bigInt({ min: 0n, max: 0xffff_ffffn })),
      rax: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      cr2: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      cr3: opt(page(0x1000n)),
      gdtr: opt(fc.record({ base: canonical48, limit: fc.integer({ min: 0, max: 0xffff }) })),
      idtr: opt(fc.record({ base: canonical48, limit: fc.integer({ min: 0, max: 0xffff }) })),
      fsBase: canonical48,
      gsBase: canonical48,
      arith: fc.integer({ min: 0, max: 0x7f }),
      ifFlag: fc.boolean(),
      asid: fc.integer({ min: 1, max: Math.max(1, caps.svm.nasid - 1) }),
      tscOffset: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      exceptions: fc.integer({ min: 0, max: 0xffff_ffff }),
      crRead: fc.integer({ min: 0, max: 0xffff }),
      shadow: fc.boolean(),
      vTpr: fc.integer({ min: 0, max: 0xf }),
      iopm: opt(page(0x3000n)),
      msrpm: opt(page(0x2000n)),
      irq: opt(fc.integer({ min: 0x20, max: 0xff })),
    })
    .map((r) => {
      const s = validVmcbTemplate(caps, r.mode);
      const rip = r.mode === "long" ? r.rip64 : r.rip;
      if (rip !== undefined) s.set("save.rip", r.mode === "real" ? rip & 0xffffn : rip);
      if (r.rsp !== undefined) s.set("save.rsp", r.rsp);
      s.set("save.rax", r.rax);
      s.set("save.cr2", r.cr2);
      if (r.mode === "long" && r.cr3 !== undefined) s.set("save.cr3", r.cr3);
      for (const [name, dt] of [["gdtr", r.gdtr], ["idtr", r.idtr]] as const) {
        if (dt === undefined) continue;
        s.set(`save.${name}.base`, r.mode === "long" ? dt.base : dt.base & 0xffff_ffffn);
        s.set(`save.${name}.limit`, dt.limit);
      }
      if (r.mode === "long") {
        s.set("save.fs.base", r.fsBase);
        s.set("save.gs.base", r.gsBase);
      }
      // CF, PF, AF, ZF, SF, DF, OF: bits 0, 2, 4, 6, 7, 10, 11.
      const arith = [0, 2, 4, 6, 7, 10, 11].reduce((a, b, i) => a | (r.arith & (1 << i) ? 1n << BigInt(b) : 0n), 0n);
      s.set("save.rflags", 0x2n | arith | (r.ifFlag ? 0x200n : 0n));
      s.set("control.guestAsid", r.asid);
      s.set("control.tscOffset", r.tscOffset);
      s.set("control.interceptExceptions", r.exceptions);
      s.set("control.interceptCrRead", r.crRead);
      s.set("control.intState", r.shadow ? 1n : 0n);
      s.set("control.intCtl", r.vTpr);
      if (r.iopm !== undefined) s.set("control.iopmBasePa", r.iopm);
      if (r.msrpm !== undefined) s.set("control.msrpmBasePa", r.msrpm);
      if (r.irq !== undefined) s.set("control.eventInj", BigInt(r.irq) | (1n << 31n));
      return s;
    });
}

/** A VMCB broken in exactly one catalogued check, with the CPU and environment to check it against. */
export interface BrokenVmcb {
  id: string;
  vmcb: VmcbState;
  caps: SvmCaps;
  env: VmrunEnv;
  /** The check ids a correct checker reports: `id` plus any the APM makes fail with it. */
  expected: readonly string[];
}

/** The mutation for a check id; throws SVM_UNKNOWN_CHECK. */
export function mutationFor(id: string): Mutation {
  const m = MUTATIONS[id];
  if (m === undefined) throw new SvmError("SVM_UNKNOWN_CHECK", `no catalogued check ${JSON.stringify(id)}`);
  return m;
}

/** The capabilities a mutation is checked against. */
export function mutationCaps(m: Mutation): SvmCaps {
  const c = getProfile(m.profile ?? "full-featured");
  return m.caps ? m.caps(c) : c;
}

/**
 * A VMCB broken in check `id`: a sample of validVmcb for the profile the rule needs, then the
 * rule's mutation with a random bad value. Shrinking goes to the template (every free field back
 * to its template value) and the simplest bad value, so a failing property reports the one field
 * the mutation changed.
 */
export function brokenVmcb(id: string): fc.Arbitrary<BrokenVmcb> {
  const m = mutationFor(id);
  const caps = mutationCaps(m);
  // The valid base comes from the unmodified profile when the mutation removes a CPU feature
  // (a long-mode base would not exist on a CPU without long mode).
  const base = validVmcb(m.caps ? getProfile(m.profile ?? "full-featured") : caps, m.mode);
  return fc.tuple(base, fc.integer({ min: 0, max: 0xffff })).map(([s, r]) => {
    const vmcb = s.clone();
    m.apply(vmcb, r);
    return { id, vmcb, caps, env: m.env ? m.env() : {}, expected: [id, ...(m.also ?? [])] };
  });
}

/** A VMCB broken in one check chosen among `ids` (default: the whole catalog). */
export function anyBrokenVmcb(ids: readonly string[] = CHECKS.map((c) => c.id)): fc.Arbitrary<BrokenVmcb> {
  return fc.constantFrom(...ids).chain((id) => brokenVmcb(id));
}

/** Any built-in profile. */
export const anyProfile: fc.Arbitrary<SvmCaps> = fc.constantFrom(...Object.values(PROFILES));
