import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CpuMode } from "@tsvmm/x86";

/** One instruction as GNU objdump decoded it. */
export interface ObjdumpInsn {
  address: number;
  bytes: number[];
  text: string;
}

function machineArgs(mode: CpuMode): string[] {
  if (mode === "long64") return ["-m", "i386:x86-64", "-M", "intel64,intel"];
  if (mode === "protected32") return ["-m", "i386", "-M", "intel"];
  return ["-m", "i8086", "-M", "intel"];
}

const PREFIX_ONLY = /^(cs|ds|es|ss|fs|gs|data16|data32|addr16|addr32|lock|rep|repz|repnz|repe|repne|rex(\.[WRXB]+)?|bnd|notrack|xacquire|xrelease)$/;

/**
 * Parse `objdump -d` output lines. A prefix objdump prints on a line of its own (a redundant
 * segment override, a REX that does not precede the opcode) is joined to the instruction after it,
 * because the CPU reads it as part of that instruction.
 */
export function parseObjdump(out: string): ObjdumpInsn[] {
  const raw: ObjdumpInsn[] = [];
  for (const line of out.split("\n")) {
    const m = /^\s*([0-9a-f]+):\t([0-9a-f]{2}(?: [0-9a-f]{2})*)\s*\t?(.*)$/.exec(line);
    if (!m) continue;
    // Kernel addresses exceed 2^53: keep the low 48 bits, enough to tell neighbours apart.
    raw.push({ address: Number(BigInt(`0x${m[1]}`) & 0xffffffffffffn), bytes: m[2]!.split(" ").map((h) => Number.parseInt(h, 16)), text: m[3]!.trim() });
  }
  const out2: ObjdumpInsn[] = [];
  let pending: ObjdumpInsn | undefined;
  for (const r of raw) {
    if (pending !== undefined) {
      pending = { address: pending.address, bytes: [...pending.bytes, ...r.bytes], text: `${pending.text} ${r.text}` };
    } else {
      pending = r;
    }
    if (r.text !== "" && r.text.split(/\s+/).every((t) => PREFIX_ONLY.test(t)) && r.bytes.length === r.text.split(/\s+/).length) continue;
    out2.push(pending);
    pending = undefined;
  }
  if (pending !== undefined) out2.push(pending);
  return out2;
}

export function objdumpBinary(buf: Uint8Array, mode: CpuMode): ObjdumpInsn[] {
  const dir = mkdtempSync(join(tmpdir(), "x86-objdump-"));
  try {
    const f = join(dir, "code.bin");
    writeFileSync(f, buf);
    const out = execFileSync("objdump", ["-D", "-b", "binary", ...machineArgs(mode), "--insn-width=16", f], {
      encoding: "utf8",
      maxBuffer: 1 << 30,
    });
    return parseObjdump(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const SLOT = 32;

/** objdump's view of each instruction placed alone at the start of a 32-byte NOP-padded slot. */
export interface SlotResult {
  length: number;
  text: string;
  bad: boolean;
}

export function objdumpSlots(insns: readonly Uint8Array[], mode: CpuMode): SlotResult[] {
  const buf = Buffer.alloc(insns.length * SLOT, 0x90);
  insns.forEach((b, i) => {
    buf.set(b, i * SLOT);
  });
  const parsed = objdumpBinary(buf, mode);
  const byAddr = new Map(parsed.map((p) => [p.address, p]));
  return insns.map((_, i) => {
    const p = byAddr.get(i * SLOT);
    if (p === undefined) return { length: -1, text: "(no instruction at slot start)", bad: true };
    return { length: p.bytes.length, text: p.text, bad: p.text.includes("(bad)") };
  });
}

export function hex(b: Uint8Array | readonly number[]): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}
