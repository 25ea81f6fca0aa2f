// Real ELF seeds, compiled at test time from a tiny freestanding program.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SOURCE = `
static int counter;
int table[4] = {1, 2, 3, 4};
int *ptrs[2] = {&counter, &table[1]};
const char msg[] = "hello";
void _start(void) { for (;;) { counter += table[2] + *ptrs[1] + msg[0]; } }
`;

const COMMON = ["-O1", "-ffreestanding", "-nostdlib", "-fno-asynchronous-unwind-tables", "-Wl,-z,noseparate-code", "-Wl,--build-id=none"];

let dir: string | undefined;
const cache = new Map<string, Buffer | null>();

function build(name: string, flags: string[], source = SOURCE): Buffer | null {
  const key = `${name}:${flags.join(" ")}:${source}`;
  if (cache.has(key)) return cache.get(key)!;
  dir ??= mkdtempSync(join(tmpdir(), "elf-loader-seeds-"));
  const src = join(dir, `${name}.c`);
  const out = join(dir, name);
  writeFileSync(src, source);
  let result: Buffer | null;
  try {
    execFileSync("gcc", [...COMMON, ...flags, "-o", out, src], { stdio: "pipe" });
    result = readFileSync(out);
  } catch {
    result = null;
  }
  cache.set(key, result);
  return result;
}

/** ET_EXEC x86-64, linked at 0x400000. */
export function elf64Exec(): Buffer {
  const b = build("exec64", ["-static", "-fno-pie", "-no-pie"]);
  if (b === null) throw new Error("gcc could not build the x86-64 seed");
  return b;
}

/** ET_DYN x86-64 static PIE with R_X86_64_RELATIVE relocations, linked at 0. */
export function elf64Pie(): Buffer {
  const b = build("pie64", ["-static-pie", "-fPIE"]);
  if (b === null) throw new Error("gcc could not build the x86-64 PIE seed");
  return b;
}

/** ET_EXEC i386 via gcc -m32, or null when this gcc cannot target i386. */
export function elf32Exec(): Buffer | null {
  return build("exec32", ["-m32", "-static", "-fno-pie", "-no-pie"]);
}

/** ET_DYN i386 static PIE (R_386_RELATIVE in DT_REL), or null without -m32 support. */
export function elf32Pie(): Buffer | null {
  return build("pie32", ["-m32", "-static-pie", "-fPIE"]);
}

/** Compile arbitrary freestanding C (e.g. with a .note section or a multiboot header). */
export function compile(name: string, source: string, flags: string[]): Buffer {
  const b = build(name, flags, source);
  if (b === null) throw new Error(`gcc could not build ${name}`);
  return b;
}

/** readelf's view, as an independent oracle. */
export function readelf(bytes: Buffer, args: string[]): string {
  dir ??= mkdtempSync(join(tmpdir(), "elf-loader-seeds-"));
  const f = join(dir, `readelf-${Math.random().toString(36).slice(2)}`);
  writeFileSync(f, bytes);
  return execFileSync("readelf", [...args, "-W", f], { encoding: "utf8" });
}
