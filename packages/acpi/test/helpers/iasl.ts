import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** What one run of iasl said, and the files it wrote. */
export interface IaslRun {
  readonly status: number | null;
  readonly output: string;
  readonly files: Record<string, Buffer>;
}

/**
 * Run iasl once in a fresh directory holding `inputs` (name -> bytes), then read back the named
 * outputs. One process for many files keeps the test time small.
 */
export function iasl(args: readonly string[], inputs: Record<string, Uint8Array | string>, outputs: readonly string[], tool = "iasl"): IaslRun {
  const dir = mkdtempSync(join(tmpdir(), "tsvmm-acpi-"));
  try {
    for (const [name, data] of Object.entries(inputs)) writeFileSync(join(dir, name), data);
    const r = spawnSync(tool, [...args], { cwd: dir, encoding: "utf8", timeout: 30_000 });
    if (r.error) throw r.error;
    const files: Record<string, Buffer> = {};
    for (const o of outputs) {
      try {
        files[o] = readFileSync(join(dir, o));
      } catch {
        // Missing outputs are reported by the caller's expectations.
      }
    }
    return { status: r.status, output: `${r.stdout}${r.stderr}`, files };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Disassemble each table (name -> bytes) with `iasl -d`; returns name -> .dsl text. */
export function disassemble(tables: Record<string, Uint8Array>): { run: IaslRun; dsl: Record<string, string> } {
  const inputs: Record<string, Uint8Array> = {};
  for (const [n, b] of Object.entries(tables)) inputs[`${n}.dat`] = b;
  const run = iasl(["-d", ...Object.keys(inputs)], inputs, Object.keys(tables).map((n) => `${n}.dsl`));
  const dsl: Record<string, string> = {};
  for (const n of Object.keys(tables)) {
    const f = run.files[`${n}.dsl`];
    if (f !== undefined) dsl[n] = f.toString("utf8");
  }
  return { run, dsl };
}

/** Compile ASL or data-table sources (name.asl/.dsl -> text) with `iasl [flags]`; returns name -> .aml bytes. */
export function compile(sources: Record<string, string>, flags: readonly string[] = []): { run: IaslRun; aml: Record<string, Buffer> } {
  const names = Object.keys(sources);
  const run = iasl([...flags, ...names], sources, names.map((n) => n.replace(/\.\w+$/, ".aml")));
  const aml: Record<string, Buffer> = {};
  for (const n of names) {
    const f = run.files[n.replace(/\.\w+$/, ".aml")];
    if (f !== undefined) aml[n] = f;
  }
  return { run, aml };
}

/** Lines of iasl output or a .dsl that report a problem. */
export function complaints(text: string): string[] {
  return text.split("\n").filter((l) => /error|warning|incorrect|invalid|unknown|\*\*\*\*/i.test(l) && !/0 Errors, 0 Warnings/.test(l));
}

/**
 * Load tables into acpiexec (ACPICA's interpreter, the one Linux runs) and run its batch
 * commands, e.g. `evaluate \_S5`.
 */
export function acpiexec(tables: Record<string, Uint8Array>, commands: readonly string[]): IaslRun {
  const inputs: Record<string, Uint8Array> = {};
  for (const [n, b] of Object.entries(tables)) inputs[`${n}.dat`] = b;
  return iasl(["-b", commands.join("; "), ...Object.keys(inputs)], inputs, [], "acpiexec");
}
