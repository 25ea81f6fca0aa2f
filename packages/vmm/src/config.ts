import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { z } from "zod";
import { VmmError } from "./errors.js";

/**
 * The JSON VM configuration (`tsvmm run --config vm.json`). Paths are relative to the file.
 * Unknown keys are errors, so a typo never silently falls back to a default.
 */
export const VmConfigSchema = z
  .object({
    /** Kernel image: ELF (with a tsvmm or PVH note, or plain), Multiboot, bzImage or a flat binary. Default: the bundled hello guest. */
    kernel: z.string().min(1).optional(),
    format: z.enum(["auto", "tsvmm", "elf", "pvh", "multiboot", "bzimage", "flat"]).default("auto"),
    /** Guest RAM in MiB. */
    memoryMiB: z.number().int().min(2).max(3072).default(128),
    vcpus: z.number().int().min(1).max(64).default(1),
    cmdline: z.string().max(4096).default(""),
    initrd: z.string().min(1).optional(),
    /** Stop the VM after this many milliseconds (exit code 124). */
    timeoutMs: z.number().int().positive().optional(),
    /** A shipped CPUID template name ("t2-like", "minimal") or a path to a template JSON. */
    cpuidTemplate: z.string().min(1).optional(),
    /** MSRs the guest may not touch: each RDMSR/WRMSR of them exits to the VMM and gets #GP. */
    denyMsrs: z.array(z.union([z.number().int().min(0).max(0xffffffff), z.string().regex(/^0x[0-9a-fA-F]+$/)])).optional(),
    /** Write every exit to this JSON-lines file. */
    trace: z.string().min(1).optional(),
    serial: z.object({ port: z.number().int().min(0).max(0xfff8).default(0x3f8), irq: z.number().int().min(0).max(23).default(4) }).strict().default({ port: 0x3f8, irq: 4 }),
    debugExit: z
      .object({ port: z.number().int().min(0).max(0xfffc).default(0xf4), convention: z.enum(["qemu", "raw"]).default("qemu") })
      .strict()
      .default({ port: 0xf4, convention: "qemu" }),
  })
  .strict();

export type VmConfig = z.infer<typeof VmConfigSchema>;
export type VmConfigInput = z.input<typeof VmConfigSchema>;

/** Validate a parsed JSON value; errors name every bad key (`memoryMiB: …`). */
export function parseVmConfig(json: unknown, source = "config"): VmConfig {
  const r = VmConfigSchema.safeParse(json);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const key = i.path.length === 0 ? "(top level)" : i.path.map(String).join(".");
    const unknown = i.code === "unrecognized_keys" ? ` (${(i as { keys?: string[] }).keys?.join(", ")})` : "";
    return `${key}: ${i.message}${unknown}`;
  });
  throw new VmmError("VMM_CONFIG_INVALID", `${source}: ${lines.join("; ")}`);
}

/** Read and validate a config file; relative paths inside it become absolute. */
export function loadVmConfig(path: string): VmConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new VmmError("VMM_FILE_UNREADABLE", `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new VmmError("VMM_CONFIG_INVALID", `${path}: not JSON: ${(e as Error).message}`, { cause: e });
  }
  const c = parseVmConfig(json, path);
  const base = dirname(resolve(path));
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(base, p));
  const cpuid = c.cpuidTemplate !== undefined && /[/.]/.test(c.cpuidTemplate) ? abs(c.cpuidTemplate) : c.cpuidTemplate;
  return { ...c, kernel: abs(c.kernel), initrd: abs(c.initrd), trace: abs(c.trace), cpuidTemplate: cpuid };
}
