import { dirname, resolve } from "node:path";
import * as z from "zod/mini";
// English only: `z.locales` would bundle every locale (395 KB of the 660 KB CLI bundle, ~8 ms of each start).
import en from "zod/v4/locales/en.js";
import { VmmError } from "./errors.js";
import { readJsonFile } from "./files.js";

// zod/mini keeps to what this schema uses: `tsvmm run` pays for parsing the validator on every
// start (bench tsvmm-run-hello), and the full zod API cost ~40 ms of it. English messages are
// loaded explicitly (mini ships none by default).
z.config(en());

const int = (min: number, max: number) => z.int().check(z.gte(min), z.lte(max));

/**
 * Every default and limit of a VM, in one place: the schema below, the builder's argument checks
 * and the CLI's help and messages all read them from here.
 */
export const VM_LIMITS = {
  /** Guest RAM in MiB. The ceiling keeps RAM below the 3 GiB PCI/APIC hole. */
  memoryMiB: { min: 1, max: 3072, default: 128 },
  vcpus: { min: 1, max: 64, default: 1 },
  cmdlineBytes: { max: 4096 },
  /** Run-time budget in ms; Node timers hold 2^31-1 ms at most, longer budgets are chained. */
  timeoutMs: { min: 1, max: Number.MAX_SAFE_INTEGER },
  /** No exit for this long stops the VM; off unless given. */
  stallMs: { min: 1, max: 2 ** 31 - 1 },
  serial: { port: 0x3f8, irq: 4 },
  debugExit: { port: 0xf4, convention: "qemu" as "qemu" | "raw" },
  /** MSRs in a deny list; msr-io-bitmaps plans them into KVM's 16 filter ranges or says why not. */
  denyMsrs: { max: 4096 },
} as const;
const L = VM_LIMITS;

/**
 * The JSON VM configuration (`tsvmm run --config vm.json`). Paths are relative to the file.
 * Unknown keys are errors, so a typo never silently falls back to a default.
 */
const VmConfigSchema = z.strictObject({
  /** Kernel image: ELF (with a tsvmm or PVH note, or plain), Multiboot, bzImage or a flat binary. Default: the bundled hello guest. */
  kernel: z.optional(z.string().check(z.minLength(1))),
  format: z._default(z.enum(["auto", "tsvmm", "elf", "pvh", "multiboot", "bzimage", "flat"]), "auto"),
  /** Guest RAM in MiB. */
  memoryMiB: z._default(int(L.memoryMiB.min, L.memoryMiB.max), L.memoryMiB.default),
  vcpus: z._default(int(L.vcpus.min, L.vcpus.max), L.vcpus.default),
  cmdline: z._default(z.string().check(z.maxLength(L.cmdlineBytes.max)), ""),
  initrd: z.optional(z.string().check(z.minLength(1))),
  /** Stop the VM after this many milliseconds (exit code 124). */
  timeoutMs: z.optional(int(L.timeoutMs.min, L.timeoutMs.max)),
  /** Stop the VM when no vCPU has exited to the VMM for this many milliseconds (exit code 124). */
  stallMs: z.optional(int(L.stallMs.min, L.stallMs.max)),
  /** A shipped CPUID template name ("t2-like", "minimal") or a path to a template JSON. */
  cpuidTemplate: z.optional(z.string().check(z.minLength(1))),
  /** MSRs the guest may not touch: each RDMSR/WRMSR of them exits to the VMM and gets #GP. */
  denyMsrs: z.optional(z.array(z.union([int(0, 0xffffffff), z.string().check(z.regex(/^0x[0-9a-fA-F]+$/))])).check(z.maxLength(L.denyMsrs.max))),
  /** Write every exit to this JSON-lines file. */
  trace: z.optional(z.string().check(z.minLength(1))),
  /** virtio-blk disks over raw image files, in order (paths relative to the config file). */
  disks: z._default(z.array(z.strictObject({ path: z.string().check(z.minLength(1)), readOnly: z._default(z.boolean(), false) })), []),
  /** virtio-net devices over existing TAP interfaces. */
  net: z._default(z.array(z.strictObject({ tap: z.string().check(z.minLength(1), z.maxLength(15)) })), []),
  /** A virtio-vsock device: the guest's CID and the host Unix socket path (Firecracker's hybrid model). */
  vsock: z.optional(z.strictObject({ cid: int(3, 0xffffffff), uds: z.string().check(z.minLength(1)) })),
  /** Where the console goes besides the UART: "virtio" adds a virtio-console port. */
  console: z._default(z.enum(["uart", "virtio"]), "uart"),
  /** A virtio-rng device. */
  rng: z._default(z.boolean(), false),
  /** ACPI tables (RSDP, XSDT, FADT with the PM1a/PM-timer block, MADT, DSDT) and the PM device. */
  acpi: z._default(z.boolean(), true),
  /** The Intel MP table, for guests without an ACPI parser. */
  mpTable: z._default(z.boolean(), true),
  /** Finish in the VMM the instructions this host's KVM cannot emulate (PVM hosts); off by default. */
  emulate: z._default(z.boolean(), false),
  /** Let KVM queue the UART's THR writes while the guest cannot tell (THR-empty interrupt off, no loopback). */
  coalesceSerial: z._default(z.boolean(), true),
  serial: z._default(z.strictObject({ port: z._default(int(0, 0xfff8), L.serial.port), irq: z._default(int(0, 23), L.serial.irq) }), { ...L.serial }),
  debugExit: z._default(
    z.strictObject({ port: z._default(int(0, 0xfffc), L.debugExit.port), convention: z._default(z.enum(["qemu", "raw"]), L.debugExit.convention) }),
    { ...L.debugExit },
  ),
});

type KernelFormatName = "auto" | "tsvmm" | "elf" | "pvh" | "multiboot" | "bzimage" | "flat";

/**
 * A validated VM configuration (defaults filled in). Declared by hand rather than inferred, so the
 * published types do not depend on zod (bundled into dist); the assertions below keep the two the same.
 */
export interface VmConfig {
  kernel?: string | undefined;
  format: KernelFormatName;
  memoryMiB: number;
  vcpus: number;
  cmdline: string;
  initrd?: string | undefined;
  timeoutMs?: number | undefined;
  stallMs?: number | undefined;
  cpuidTemplate?: string | undefined;
  denyMsrs?: Array<number | string> | undefined;
  trace?: string | undefined;
  disks: Array<{ path: string; readOnly: boolean }>;
  net: Array<{ tap: string }>;
  vsock?: { cid: number; uds: string } | undefined;
  console: "uart" | "virtio";
  rng: boolean;
  acpi: boolean;
  mpTable: boolean;
  emulate: boolean;
  coalesceSerial: boolean;
  serial: { port: number; irq: number };
  debugExit: { port: number; convention: "qemu" | "raw" };
}

/** What a config file may hold: every key with a default may be left out. */
export interface VmConfigInput {
  kernel?: string | undefined;
  format?: KernelFormatName | undefined;
  memoryMiB?: number | undefined;
  vcpus?: number | undefined;
  cmdline?: string | undefined;
  initrd?: string | undefined;
  timeoutMs?: number | undefined;
  stallMs?: number | undefined;
  cpuidTemplate?: string | undefined;
  denyMsrs?: Array<number | string> | undefined;
  trace?: string | undefined;
  disks?: Array<{ path: string; readOnly?: boolean | undefined }> | undefined;
  net?: Array<{ tap: string }> | undefined;
  vsock?: { cid: number; uds: string } | undefined;
  console?: "uart" | "virtio" | undefined;
  rng?: boolean | undefined;
  acpi?: boolean | undefined;
  mpTable?: boolean | undefined;
  emulate?: boolean | undefined;
  coalesceSerial?: boolean | undefined;
  serial?: { port?: number | undefined; irq?: number | undefined } | undefined;
  debugExit?: { port?: number | undefined; convention?: "qemu" | "raw" | undefined } | undefined;
}

// Compile-time proof that the declared types and the schema agree (tsc fails on any drift).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameOutput: Same<VmConfig, z.infer<typeof VmConfigSchema>> = true;
const sameInput: Same<VmConfigInput, z.input<typeof VmConfigSchema>> = true;
void sameOutput;
void sameInput;

/** Validate a parsed JSON value; errors name every bad key (`memoryMiB: …`). */
export function parseVmConfig(json: unknown, source = "config"): VmConfig {
  const r = VmConfigSchema.safeParse(json);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const key = i.path.length === 0 ? "(top level)" : i.path.map(String).join(".");
    const keys = i.code === "unrecognized_keys" ? ((i as { keys?: string[] }).keys ?? []) : [];
    // A hostile file can hold any number of keys: name a few, count the rest.
    const shown = keys.slice(0, 10).map((k) => JSON.stringify(k.length > 40 ? `${k.slice(0, 40)}…` : k));
    const unknown = keys.length === 0 ? "" : ` (${shown.join(", ")}${keys.length > 10 ? ` and ${keys.length - 10} more` : ""})`;
    return `${key}: ${i.code === "unrecognized_keys" ? `unknown key${keys.length === 1 ? "" : "s"}` : i.message}${unknown}`;
  });
  throw new VmmError("VMM_CONFIG_INVALID", `${source}: ${lines.join("; ")}`);
}

/** Read and validate a config file; relative paths inside it become absolute. */
export function loadVmConfig(path: string): VmConfig {
  const json = readJsonFile(path, "config");
  const c = parseVmConfig(json, path);
  const base = dirname(resolve(path));
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(base, p));
  const cpuid = c.cpuidTemplate !== undefined && /[/.]/.test(c.cpuidTemplate) ? abs(c.cpuidTemplate) : c.cpuidTemplate;
  const disks = c.disks.map((d) => ({ ...d, path: resolve(base, d.path) }));
  const vsock = c.vsock === undefined ? undefined : { ...c.vsock, uds: resolve(base, c.vsock.uds) };
  return { ...c, kernel: abs(c.kernel), initrd: abs(c.initrd), trace: abs(c.trace), cpuidTemplate: cpuid, disks, vsock };
}
