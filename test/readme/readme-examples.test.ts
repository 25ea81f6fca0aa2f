import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";

// Every ```ts / ```js block of the root README and of each package's README runs here, as a user
// would paste it into a file: each block is written to its own module in a scratch folder, which is
// also the working directory while it runs (examples write files such as trace.jsonl there), and
// imported through vitest, so `@tsvmm/<pkg>` resolves to the package's source like in every other
// test. A block runs when it evaluates without throwing (examples assert what they show where
// they can). A block that is only a fragment or a signature is marked ```ts no-run and skipped.
//
// Blocks that import @tsvmm/kvm-backend or @tsvmm/vmm need /dev/kvm and run where it is (CI sets
// TSVMM_REQUIRE_KVM=1, so there they must). Files an example reads by name (a kernel, an initrd)
// are put into its folder under that name from what the repository has: FIXTURES below.

const root = join(__dirname, "..", "..");
const hasKvm = requireKvm();
const RUNNABLE = new Set(["ts", "typescript", "js", "javascript", "mjs"]);

interface Block {
  readme: string;
  line: number;
  lang: string;
  code: string;
}

/** Fenced code blocks of a Markdown file, with their info string's first word as language. */
function codeBlocks(file: string): (Block & { flags: string[] })[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const blocks: (Block & { flags: string[] })[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang, rest] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      if (lines[j]!.trim().startsWith(fence!) && lines[j]!.trim().replace(/[`~]/g, "") === "") break;
      body.push(lines[j]!.startsWith(indent!) ? lines[j]!.slice(indent!.length) : lines[j]!);
    }
    blocks.push({ readme: relative(root, file), line: i + 1, lang: lang!.toLowerCase(), flags: rest!.split(/\s+/).filter(Boolean), code: body.join("\n") });
    i = j;
  }
  return blocks;
}

const readmes = [join(root, "README.md"), ...readdirSync(join(root, "packages")).map((p) => join(root, "packages", p, "README.md"))].filter(existsSync);
const blocks = readmes.flatMap(codeBlocks).filter((b) => RUNNABLE.has(b.lang) && !b.flags.includes("no-run"));

const kernels = join(root, "test-kernels", "out");
let debianKernel: { bzImage: string; vmlinux: string } | undefined;
async function debian(): Promise<{ bzImage: string; vmlinux: string }> {
  if (!debianKernel) {
    // The elf-loader tests' own fetcher: apt-get download once, then the copy under .cache/.
    const script = join(root, "packages", "elf-loader", "scripts", "fetch-debian-kernel.mjs");
    const { fetchDebianKernel } = (await import(script)) as { fetchDebianKernel: () => { bzImage: string; vmlinux: string } };
    debianKernel = fetchDebianKernel();
  }
  return debianKernel;
}

/** Files the examples of a README open by name -> where the repository has such a file. */
const FIXTURES: Record<string, () => Promise<Record<string, string | Buffer>>> = {
  "packages/elf-loader/README.md": async () => ({
    vmlinuz: (await debian()).bzImage,
    vmlinux: (await debian()).vmlinux,
    // Any bytes do as an initrd: the loader places it and reports where.
    "initrd.img": Buffer.alloc(64 * 1024, 0x5a),
    "kernel.elf": join(kernels, "hello.elf"),
  }),
  // The builder example names a Linux vmlinux; the bundled hello guest takes the same path through
  // the builder (kernel file, format detection, memory, vCPUs, CPUID template, MSR filter, trace,
  // watchdog) and ends in a fraction of a second.
  "packages/vmm/README.md": async () => ({
    vmlinux: join(kernels, "hello.elf"),
    "recv.elf": join(kernels, "shm-recv.elf"),
    "send.elf": join(kernels, "shm-send.elf"),
    "vcpu-worker-device.elf": join(kernels, "vcpu-worker-device.elf"),
    // The vCPU-worker example's device module: the one its test uses, shown in the README.
    "ticket-device.mjs": join(root, "packages", "vmm", "test", "fixtures", "ticket-device.mjs"),
  }),
};

const scratch = mkdtempSync(join(tmpdir(), "tsvmm-readme-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const home = process.cwd();

async function run(block: Block, index: number): Promise<void> {
  const dir = join(scratch, `${block.readme.replace(/[/.]/g, "_")}-${index}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, from] of Object.entries((await FIXTURES[block.readme]?.()) ?? {})) {
    if (typeof from === "string") symlinkSync(from, join(dir, name));
    else writeFileSync(join(dir, name), from);
  }
  const file = join(dir, `example.${block.lang === "ts" || block.lang === "typescript" ? "ts" : "mjs"}`);
  // `export {}` makes a block without imports a module too (top-level await, own scope).
  writeFileSync(file, `${block.code}\nexport {};\n`);
  process.chdir(dir);
  try {
    await import(file);
  } finally {
    process.chdir(home);
  }
}

const needsKvm = (b: Block) => /from\s+["']@tsvmm\/(kvm-backend|vmm)["']/.test(b.code);

describe("README examples", () => {
  it("are found in the READMEs that have them", () => {
    // A change to the fence parsing that silently finds nothing must fail here.
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    expect(new Set(blocks.map((b) => b.readme)).size).toBeGreaterThanOrEqual(8);
  });
  it("type-check as strict TypeScript against the packages' sources", () => {
    // One program for all ```ts blocks (users paste them into .ts files); vitest only strips types.
    const dir = join(scratch, "typecheck");
    mkdirSync(dir, { recursive: true });
    const files = blocks
      .filter((b) => b.lang === "ts" || b.lang === "typescript")
      .map((b) => {
        const file = join(dir, `${b.readme.replace(/[/.]/g, "_")}-L${b.line}.ts`);
        writeFileSync(file, `${b.code}\nexport {};\n`);
        return file;
      });
    const base = ts.readConfigFile(join(root, "tsconfig.base.json"), ts.sys.readFile).config as { compilerOptions: object };
    const { options } = ts.convertCompilerOptionsFromJson(
      { ...base.compilerOptions, noEmit: true, baseUrl: root, paths: { "@tsvmm/*": ["packages/*/src/index.ts"] }, typeRoots: [join(root, "node_modules", "@types")] },
      root,
    );
    const program = ts.createProgram(files, options);
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file === undefined || files.includes(d.file.fileName))
      .map((d) => {
        const where = d.file ? blocks.find((b) => d.file!.fileName.endsWith(`${b.readme.replace(/[/.]/g, "_")}-L${b.line}.ts`)) : undefined;
        const pos = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
        const at = where && pos ? `${where.readme}:${where.line + 1 + pos.line}` : "?";
        return `${at}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
      });
    expect(problems).toEqual([]);
  }, 120_000);

  const indexOf = new Map<string, number>();
  for (const block of blocks) {
    const n = (indexOf.get(block.readme) ?? 0) + 1;
    indexOf.set(block.readme, n);
    const name = `${block.readme}:${block.line} (${block.lang} block ${n})`;
    const kvm = needsKvm(block);
    // KVM examples run only where /dev/kvm is; requireKvm() throws under TSVMM_REQUIRE_KVM=1 without it.
    it.runIf(!kvm || hasKvm)(`${name}${kvm ? " on /dev/kvm" : ""}`, () => run(block, n), 120_000);
  }
});
