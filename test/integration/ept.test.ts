import { GuestMemoryMap } from "@tsvmm/abi";
import { buildIdentityMap, type EptPageAttributes, EptTables, PagingTables, TableAllocator, toMemorySlots } from "@tsvmm/ept";
import { kvmAvailable } from "@tsvmm/kvm-backend";
import { exitFromKvm } from "@tsvmm/vmcs";
import { beforeAll, describe, expect, it } from "vitest";
import { randomU64, s64 } from "../../test-kernels/harness/expect.js";
import { buildGuests, RAM_BYTES, type RunResult, runGuest } from "../../test-kernels/harness/guest.js";

import { type ProbeOp, randomBelow, randomHighPage, writeProbeParams } from "./guest-params.js";

// @tsvmm/ept on the real /dev/kvm: a long-mode guest boots on IA-32e tables the package built and
// reports what it read and which faults it took; an EPT permission map becomes KVM memory slots
// and a guest write the EPT denies exits to the VMM.

const PF = 14n;
/** #PF error code bits (SDM Vol. 3A §4.7): P = 1 means a protection fault, W/R = 1 a write. */
const PF_WRITE = 2n;
const SUPERVISOR_RWX = { write: true, user: false, execute: true } as const;

beforeAll(() => {
  buildGuests();
  expect(kvmAvailable(), "/dev/kvm must be readable and writable for the integration tests").toBe(true);
});

function expectCleanExit(r: RunResult): void {
  expect(r.end, `console: ${r.console}`).toEqual({ kind: "exit" });
  expect(r.exitCode).toBe(0);
}

const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/** Each op's outcome as the guest reported it. */
function outcomes(r: RunResult, ops: readonly ProbeOp[]) {
  return ops.map((op, i) => {
    const vector = s64(r.value(`op${i}.vector`));
    return {
      vector,
      value: op.kind === "read" ? r.value(`op${i}.value`) : undefined,
      error: vector >= 0n ? r.value(`op${i}.error`) : undefined,
      cr2: vector >= 0n ? r.value(`op${i}.cr2`) : undefined,
    };
  });
}

describe("@tsvmm/ept guests on /dev/kvm", () => {
  it("ia32e: guest on PagingTables reads/writes a 4 KiB high alias; unmapped pages give #PF with CR2", async () => {
    const tableBase = 0x400000; // outside the identity map: only the CPU's walker reads them
    const identity = 0x400000;
    const dataPage = 0x800000 + randomBelow(0x800) * 0x1000; // RAM in [8, 16) MiB, not identity-mapped
    const off = randomBelow(0x1f0) * 8;
    const alias = randomHighPage();
    const lowData = 0x300000 + randomBelow(0x20000) * 8;
    const [value, lowValue, stored] = [randomU64(), randomU64(), randomU64()];
    const ops: ProbeOp[] = [
      { kind: "read", va: alias + BigInt(off) },
      { kind: "write", va: alias + BigInt(off + 8), value: stored },
      { kind: "read", va: BigInt(lowData) },
      { kind: "read", va: BigInt(dataPage + off) }, // backed by RAM, but no translation
      { kind: "write", va: alias + 0x1000n, value: 1n }, // the page after the alias
      { kind: "read", va: alias + BigInt(off + 8) },
    ];
    let cr3 = 0n;
    let translations: ReturnType<PagingTables["translate"]>[] = [];
    let storedInRam = 0n;
    const r = await runGuest({
      name: "ept-probe",
      prepare: ({ memory }) => {
        const tables = new PagingTables(memory, new TableAllocator(memory, tableBase, 64 * 4096));
        tables.map(0, 0, identity, SUPERVISOR_RWX);
        tables.map(alias, dataPage, 0x1000, SUPERVISOR_RWX);
        memory.writeU64(dataPage + off, value);
        memory.writeU64(lowData, lowValue);
        writeProbeParams(memory, ops);
        translations = ops.map((op) => tables.translate(op.va, { write: op.kind === "write" }));
        cr3 = tables.cr3();
        return { cr3 };
      },
      inspect: ({ vm }) => (storedInRam = vm.memory.readU64(dataPage + off + 8)),
    });
    expectCleanExit(r);
    expect(r.value("cr3")).toBe(cr3);
    const seen = outcomes(r, ops);
    // What the guest saw, against values only the VMM knew.
    expect(seen[0]).toMatchObject({ vector: -1n, value });
    expect(seen[1]).toMatchObject({ vector: -1n });
    expect(storedInRam).toBe(stored);
    expect(seen[2]).toMatchObject({ vector: -1n, value: lowValue });
    expect(seen[3]).toMatchObject({ vector: PF, error: 0n, cr2: BigInt(dataPage + off) });
    expect(seen[4]).toMatchObject({ vector: PF, error: PF_WRITE, cr2: u64(alias + 0x1000n) });
    expect(seen[5]).toMatchObject({ vector: -1n, value: stored });
    expect(r.passed("rip-is-the-access")).toBe(true);
    // The package's own walk agrees with the CPU's on every access.
    expect(translations.map((t) => (t.ok ? "ok" : t.fault?.reason))).toEqual(seen.map((s) => (s.vector === -1n ? "ok" : "not-present")));
    expect(translations[0]!.physical).toBe(BigInt(dataPage + off));
    expect(translations[0]!.pageSize).toBe(4096);
    expect(r.mmio).toEqual([]);
    console.log(`ia32e 4K alias ${u64(alias).toString(16)} -> ${dataPage.toString(16)}: read ok, #PF cr2 ${seen[3]!.cr2!.toString(16)} / ${seen[4]!.cr2!.toString(16)} (${r.elapsedMs.toFixed(0)} ms)`);
  });

  it("ia32e: guest on buildIdentityMap(highAlias) sees the same RAM at both addresses; the ends fault", async () => {
    const size = 8 << 20;
    const tableBase = 0xe00000;
    // 2 MiB aligned (the map uses 2 MiB pages), upper half, ending below 2^64.
    const highAlias = BigInt.asIntN(64, 0xffff800000000000n + BigInt(randomBelow((1 << 26) - 8)) * 0x200000n);
    const p = 0x400000 + randomBelow(0x7fff0) * 8;
    const [value, stored] = [randomU64(), randomU64()];
    const ops: ProbeOp[] = [
      { kind: "read", va: highAlias + BigInt(p) },
      { kind: "write", va: highAlias + BigInt(p + 8), value: stored },
      { kind: "read", va: BigInt(p + 8) }, // the identity view of the alias write
      { kind: "read", va: highAlias + BigInt(size) },
      { kind: "write", va: BigInt(size), value: 1n },
    ];
    let cr3 = 0n;
    let translations: ReturnType<PagingTables["translate"]>[] = [];
    const r = await runGuest({
      name: "ept-probe",
      prepare: ({ memory }) => {
        cr3 = buildIdentityMap(memory, tableBase, { size, highAlias });
        memory.writeU64(p, value);
        writeProbeParams(memory, ops);
        const walker = new PagingTables(memory, new TableAllocator(memory, tableBase, 0x100000), { root: Number(cr3) });
        translations = ops.map((op) => walker.translate(op.va, { write: op.kind === "write" }));
        return { cr3 };
      },
    });
    expectCleanExit(r);
    expect(r.value("cr3")).toBe(cr3);
    const seen = outcomes(r, ops);
    expect(seen[0]).toMatchObject({ vector: -1n, value });
    expect(seen[1]).toMatchObject({ vector: -1n });
    expect(seen[2]).toMatchObject({ vector: -1n, value: stored });
    expect(seen[3]).toMatchObject({ vector: PF, error: 0n, cr2: u64(highAlias + BigInt(size)) });
    expect(seen[4]).toMatchObject({ vector: PF, error: PF_WRITE, cr2: BigInt(size) });
    expect(translations.map((t) => (t.ok ? "ok" : t.fault?.reason))).toEqual(seen.map((s) => (s.vector === -1n ? "ok" : "not-present")));
    expect(translations[0]!.physical).toBe(BigInt(p));
    console.log(`ia32e identity+alias at ${u64(highAlias).toString(16)}: alias read/write = identity, #PF at both ends (${r.elapsedMs.toFixed(0)} ms)`);
  });

  it("ept permission map -> KVM slots: a write the EPT denies exits as MMIO (EPT violation 48), memory unchanged", async () => {
    const page = 0x1000;
    const roBase = RAM_BYTES;
    const roSize = (1 + randomBelow(16)) * page;
    const holeBase = roBase + roSize;
    const holeSize = (1 + randomBelow(4)) * page;
    const rwBase = holeBase + holeSize;
    const rwSize = (1 + randomBelow(16)) * page;
    // EPT tables live in the VMM's memory, not the guest's.
    const host = GuestMemoryMap.allocate([{ base: 0, size: 1 << 20 }]);
    const ept = new EptTables(host, new TableAllocator(host, 0, 1 << 20), { maxPhyAddr: 39 });
    const rwx: EptPageAttributes = { read: true, write: true, execute: true };
    ept.map(0, 0, RAM_BYTES, rwx);
    ept.map(roBase, roBase, roSize, { read: true, write: false, execute: false });
    ept.map(rwBase, rwBase, rwSize, { read: true, write: true, execute: false });

    const derived = toMemorySlots(ept);
    expect(derived.slots).toEqual([
      { base: 0, size: RAM_BYTES, readonly: false },
      { base: roBase, size: roSize, readonly: true },
      { base: rwBase, size: rwSize, readonly: false },
    ]);
    expect(derived.executeDeniedLost).toEqual([
      { base: roBase, size: roSize },
      { base: rwBase, size: rwSize },
    ]);
    // The harness always provides the RAM slot; the derived one must be exactly it.
    const [ram, ...extra] = derived.slots;
    expect(ram).toEqual({ base: 0, size: RAM_BYTES, readonly: false });

    const fill = Buffer.from(Array.from({ length: roSize }, () => randomBelow(256)));
    const at = (base: number, size: number) => base + randomBelow(size / 8) * 8;
    const [roA, roB, rwC, holeD] = [at(roBase, roSize), at(roBase, roSize), at(rwBase, rwSize), at(holeBase, holeSize)];
    const [w1, w2, answer] = [randomU64(), randomU64(), randomU64()];
    const ops: ProbeOp[] = [
      { kind: "read", va: BigInt(roA) },
      { kind: "write", va: BigInt(roB), value: w1 },
      { kind: "read", va: BigInt(roB) },
      { kind: "write", va: BigInt(rwC), value: w2 },
      { kind: "read", va: BigInt(rwC) },
      { kind: "read", va: BigInt(holeD) },
    ];
    let roAfter = Buffer.alloc(0);
    let rwAfter = 0n;
    const r = await runGuest({
      name: "ept-probe", // on the boot identity map (1 GiB), so every GPA above is reachable
      slots: extra.map((s) => (s.readonly ? { ...s, fill } : s)),
      prepare: ({ memory }) => {
        writeProbeParams(memory, ops);
        return {}; // boot on the harness's identity map
      },
      onMmioRead: (address, length) => (address === BigInt(holeD) && length === 8 ? answer : 0n),
      inspect: ({ vm }) => {
        roAfter = Buffer.from(vm.memory.slice(roBase, roSize));
        rwAfter = vm.memory.readU64(rwC);
      },
    });
    expectCleanExit(r);
    const seen = outcomes(r, ops);
    expect(seen.map((s) => s.vector)).toEqual(ops.map(() => -1n)); // the guest takes no fault: the VMM handles the exits
    expect(seen[0]!.value).toBe(fill.readBigUInt64LE(roA - roBase));
    expect(seen[2]!.value).toBe(fill.readBigUInt64LE(roB - roBase)); // the denied write changed nothing
    expect(roAfter.equals(fill)).toBe(true);
    expect(rwAfter).toBe(w2);
    expect(seen[4]!.value).toBe(w2);
    expect(seen[5]!.value).toBe(answer);
    // Exactly the accesses the EPT refuses exited, and nothing else.
    const eptVerdicts = ops.map((op) => ept.translate(op.va, { write: op.kind === "write" }));
    expect(eptVerdicts.map((t) => (t.ok ? "ok" : t.fault?.reason))).toEqual(["ok", "permission", "ok", "ok", "ok", "not-present"]);
    expect(r.mmio.map((m) => [m.address, m.length, m.isWrite, m.value])).toEqual([
      [BigInt(roB), 8, true, w1],
      [BigInt(holeD), 8, false, answer],
    ]);
    // The same exits as VMX would report them (vmcs bridge): EPT violation, reason 48, with the
    // access type in qualification bits 0 (read) / 1 (write) and the faulting GPA.
    const vmx = r.mmio.map((m) => exitFromKvm({ kind: "mmio", gpa: m.address, isWrite: m.isWrite, len: m.length }));
    expect(vmx.map((x) => [x.basicExitReason, x.exitQualification & 7n, x.guestPhysicalAddress])).toEqual([
      [48, 2n, BigInt(roB)],
      [48, 1n, BigInt(holeD)],
    ]);
    console.log(
      `ept map -> slots [ro ${roBase.toString(16)}+${roSize.toString(16)}, hole +${holeSize.toString(16)}, rw ${rwBase.toString(16)}+${rwSize.toString(16)}]: write to ro -> EPT violation qual ${vmx[0]!.exitQualification}, hole read -> qual ${vmx[1]!.exitQualification}`,
    );
  });
});
