import fc from "fast-check";
import { getProfile, PROFILES, type VmxCaps } from "../caps.js";
import { CHECKS } from "../checks/catalog.js";
import type { VmEntryEnv } from "../checks/context.js";
import { VmcsError } from "../errors.js";
import type { VmcsState } from "../state.js";
import { GUEST_MODES, type GuestMode, supportsMode, validVmcsTemplate } from "../templates.js";
import { MUTATIONS, type Mutation } from "./mutations.js";

export { MUTATIONS, type Mutation } from "./mutations.js";

const canonical48 = fc.bigInt({ min: 0n, max: (1n << 47n) - 1n }).chain((low) => fc.constantFrom(low, low | 0xffff_8000_0000_0000n));

/**
 * A VMCS that passes every check for `caps`, with a guest in `mode` (default: any mode the
 * profile supports). Varies fields that do not interact with the checks' preconditions: RIP/RSP,
 * CR3, descriptor tables, FS/GS bases, arithmetic flags and IF, VPID, exception bitmap, CR masks
 * and shadows, TSC offset, host RSP. Shrinks towards the template of validVmcsTemplate.
 */
export function validVmcs(caps: VmxCaps, mode?: GuestMode): fc.Arbitrary<VmcsState> {
  const modes = mode ? [mode] : GUEST_MODES.filter((m) => supportsMode(caps, m));
  if (modes.length === 0 || (mode && !supportsMode(caps, mode))) {
    return fc.constant(null).map(() => validVmcsTemplate(caps, mode ?? "long"));
  }
  const maxPhys = caps.cpu.maxPhysAddr;
  return fc
    .record({
      mode: fc.constantFrom(...modes),
      rip: fc.bigInt({ min: 0n, max: 0xffff_ffffn }),
      rip64: canonical48,
      rsp: fc.bigInt({ min: 0n, max: 0xffff_ffffn }),
      cr3: fc.bigInt({ min: 0n, max: (1n << BigInt(maxPhys - 12)) - 1n }).map((p) => p << 12n),
      gdtr: fc.record({ base: canonical48, limit: fc.integer({ min: 0, max: 0xffff }) }),
      idtr: fc.record({ base: canonical48, limit: fc.integer({ min: 0, max: 0xffff }) }),
      fsBase: canonical48,
      gsBase: canonical48,
      arith: fc.integer({ min: 0, max: 0xff }),
      ifFlag: fc.boolean(),
      vpid: fc.integer({ min: 0, max: 0xffff }),
      excBitmap: fc.integer({ min: 0, max: 0xffff_ffff }),
      cr0Mask: fc.bigInt({ min: 0n, max: 0xffff_ffffn }),
      tscOffset: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      hostRsp: canonical48,
    })
    .map((r) => {
      const s = validVmcsTemplate(caps, r.mode);
      s.set("GUEST_RIP", r.mode === "long" ? r.rip64 : r.mode === "real" ? r.rip & 0xffffn : r.rip);
      s.set("GUEST_RSP", r.rsp);
      if (r.mode !== "real") s.set("GUEST_CR3", r.cr3);
      s.set("GUEST_GDTR_BASE", r.mode === "long" ? r.gdtr.base : r.gdtr.base & 0xffff_ffffn);
      s.set("GUEST_GDTR_LIMIT", r.gdtr.limit);
      s.set("GUEST_IDTR_BASE", r.mode === "long" ? r.idtr.base : r.idtr.base & 0xffff_ffffn);
      s.set("GUEST_IDTR_LIMIT", r.idtr.limit);
      if (r.mode === "long") {
        s.set("GUEST_FS_BASE", r.fsBase);
        s.set("GUEST_GS_BASE", r.gsBase);
      }
      // CF, PF, AF, ZF, SF, DF, OF: bits 0, 2, 4, 6, 7, 10, 11 — never reserved bits.
      const arith = [0, 2, 4, 6, 7, 10, 11].reduce((a, b, i) => a | (r.arith & (1 << i) ? 1n << BigInt(b) : 0n), 0n);
      s.set("GUEST_RFLAGS", 0x2n | arith | (r.ifFlag ? 0x200n : 0n));
      s.set("VIRTUAL_PROCESSOR_ID", r.vpid);
      s.set("EXCEPTION_BITMAP", r.excBitmap);
      s.set("CR0_GUEST_HOST_MASK", r.cr0Mask);
      s.set("CR0_READ_SHADOW", s.get("GUEST_CR0"));
      s.set("TSC_OFFSET", r.tscOffset);
      s.set("HOST_RSP", r.hostRsp);
      return s;
    });
}

/** A VMCS broken in exactly one catalogued check, with the CPU and environment it must be checked against. */
export interface BrokenVmcs {
  id: string;
  state: VmcsState;
  caps: VmxCaps;
  env: VmEntryEnv;
  /** The check ids a correct checker must report: `id` plus any the SDM makes fail with it. */
  expected: readonly string[];
}

function mutationCaps(m: Mutation, base?: VmxCaps): VmxCaps {
  const c = base ?? getProfile(m.profile ?? "full-featured");
  return m.caps ? m.caps(c) : c;
}

/** The mutation for a check id; throws VMCS_UNKNOWN_CHECK. */
export function mutationFor(id: string): Mutation {
  const m = MUTATIONS[id];
  if (m === undefined) throw new VmcsError("VMCS_UNKNOWN_CHECK", `no catalogued check ${JSON.stringify(id)}`);
  return m;
}

/**
 * A VMCS broken in check `id` (any catalogued id; see CHECKS): a sample of validVmcs for the
 * profile the rule needs, then the rule's mutation with a random bad value. Shrinking goes to
 * the simplest valid base and the smallest bad value.
 */
export function brokenVmcs(id: string): fc.Arbitrary<BrokenVmcs> {
  const m = mutationFor(id);
  const caps = mutationCaps(m);
  const base = m.caps ? validVmcs(getProfile(m.profile ?? "full-featured"), m.mode) : validVmcs(caps, m.mode);
  return fc.tuple(base, fc.integer({ min: 0, max: 0xffff })).map(([s, r]) => {
    const state = s.clone();
    m.apply(state, r);
    return { id, state, caps, env: m.env ? m.env() : {}, expected: [id, ...(m.also ?? [])] };
  });
}

/** A VMCS broken in one check chosen among `ids` (default: the whole catalog). */
export function anyBrokenVmcs(ids: readonly string[] = CHECKS.map((c) => c.id)): fc.Arbitrary<BrokenVmcs> {
  return fc.constantFrom(...ids).chain((id) => brokenVmcs(id));
}

/** Any built-in profile. */
export const anyProfile: fc.Arbitrary<VmxCaps> = fc.constantFrom(...Object.values(PROFILES));
