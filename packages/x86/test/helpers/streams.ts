import { execFileSync } from "node:child_process";
import { type CpuMode, decode } from "@tsvmm/x86";
import { hex, type ObjdumpInsn, parseObjdump } from "./objdump.js";

export interface StreamMismatch {
  address: number;
  bytes: string;
  objdump: string;
  objdumpLength: number;
  ours: string;
}

export interface StreamReport {
  /** Instructions objdump decoded and the decoder was asked about. */
  compared: number;
  /** Same length, and the decoder accepted the instruction. */
  agreed: number;
  /** Both decoded it, lengths differ. */
  lengthMismatches: StreamMismatch[];
  /** objdump printed an instruction, the decoder says the CPU raises #UD (e.g. LOCK on MOV), with the same length. */
  rejectedSameLength: StreamMismatch[];
  /** objdump printed an instruction, the decoder rejects it and the lengths differ. */
  rejectedOther: StreamMismatch[];
}

/**
 * objdump -d over an ELF file's executable sections, in windows of 8 MiB so the text of a whole
 * kernel never has to fit one string; each window starts where the previous one's last instruction ended.
 */
export function objdumpElf(path: string, mode: CpuMode, extra: string[] = []): ObjdumpInsn[] {
  const m = mode === "long64" ? ["-M", "intel64,intel"] : ["-M", "intel"];
  const headers = execFileSync("objdump", ["-h", "-w", path], { encoding: "utf8" });
  const out: ObjdumpInsn[] = [];
  for (const line of headers.split("\n")) {
    const h = /^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+\S+\s+(.*)$/.exec(line);
    if (!h || !h[4]!.includes("CODE")) continue;
    const [name, size, vma] = [h[1]!, Number.parseInt(h[2]!, 16), BigInt(`0x${h[3]}`)];
    const end = vma + BigInt(size);
    let start = vma;
    while (start < end) {
      const stop = start + 8n * 1024n * 1024n < end ? start + 8n * 1024n * 1024n : end;
      const text = execFileSync(
        "objdump",
        ["-d", "-w", "--insn-width=16", ...m, ...extra, "-j", name, `--start-address=0x${start.toString(16)}`, `--stop-address=0x${stop.toString(16)}`, path],
        { encoding: "utf8", maxBuffer: 1 << 29 },
      );
      const part = parseObjdump(text);
      if (part.length === 0) break;
      for (const p of part) out.push(p);
      const last = part[part.length - 1]!;
      const next = (start & ~0xffffffffffffn) + BigInt(last.address) + BigInt(last.bytes.length);
      if (next <= start) break;
      start = next;
    }
  }
  return out;
}

const LEGACY_PREFIX = new Set([0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67]);

/**
 * objdump prints FWAIT (9B) and the x87 instruction after it as one line (`fstsw` and friends,
 * and any other x87 opcode); the CPU executes FWAIT as an instruction of its own.
 */
function objdumpLength(ins: ObjdumpInsn, mode: CpuMode): number {
  let k = 0;
  while (k < ins.bytes.length && (LEGACY_PREFIX.has(ins.bytes[k]!) || (mode === "long64" && (ins.bytes[k]! & 0xf0) === 0x40))) k++;
  if (ins.bytes[k] === 0x9b && ins.bytes.length > k + 1) return k + 1;
  return ins.bytes.length;
}

/**
 * Decode every instruction objdump found, from its address with the bytes that follow it, and
 * compare lengths. Instructions objdump calls `(bad)` and `.byte` fillers are not compared.
 */
export function compareStream(insns: readonly ObjdumpInsn[], mode: CpuMode): StreamReport {
  const report: StreamReport = { compared: 0, agreed: 0, lengthMismatches: [], rejectedSameLength: [], rejectedOther: [] };
  const n = insns.length;
  for (let k = 0; k < n; k++) {
    const ins = insns[k]!;
    if (ins.text.includes("(bad)") || ins.text === "" || ins.text.includes(".byte")) continue;
    const expected = objdumpLength(ins, mode);
    const window: number[] = [...ins.bytes];
    for (let j = k + 1; j < n && window.length < 15; j++) {
      if (insns[j]!.address !== ins.address + window.length) break;
      window.push(...insns[j]!.bytes);
    }
    const r = decode(Uint8Array.from(window.slice(0, 15)), mode);
    report.compared++;
    const m = (ours: string): StreamMismatch => ({ address: ins.address, bytes: hex(ins.bytes), objdump: ins.text, objdumpLength: expected, ours });
    if (r.ok) {
      if (r.insn.length === expected) report.agreed++;
      else report.lengthMismatches.push(m(`${r.insn.length} ${r.insn.mnemonic}`));
    } else if (r.reason === "invalid" && r.length === expected) {
      report.rejectedSameLength.push(m(r.detail));
    } else {
      report.rejectedOther.push(m(`${r.reason} at ${r.length}: ${r.detail}`));
    }
  }
  return report;
}
