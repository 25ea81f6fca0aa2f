import { randomBytes } from "node:crypto";
import type { GuestMemory } from "@tsvmm/abi";
import type { SegmentName } from "../decoder/registers.js";
import type { AccessKind, DescriptorTable, InjectedEvent, PageFault, SegmentState, X86Cpu, XsaveLayout } from "./cpu.js";
import { MXCSR_DEFAULT, setXstateBv, writeMxcsr } from "./xsave.js";

/** x87 | SSE | AVX, with the AVX component at its usual standard-format offset. */
export const DEFAULT_XSAVE_LAYOUT: XsaveLayout = {
  supportedXcr0: 0x7n,
  supportedXss: 0n,
  components: [{ index: 2, size: 256, offset: 576, align64: false }],
};

const FLAT_DATA: SegmentState = { selector: 0x18, base: 0n, limit: 0xffffffff, type: 3, s: true, dpl: 0, present: true, db: true, l: false };

export interface SimpleCpuInit {
  memory: GuestMemory;
  mode?: "long64" | "protected32" | "real";
  layout?: XsaveLayout;
  /** Linear -> physical when CR0.PG = 1; identity when absent. */
  translate?: (linear: bigint, access: AccessKind, cpl: number) => bigint | PageFault;
  /** Deterministic RDRAND/RDSEED for tests; the host CSPRNG when absent. */
  random?: (length: number) => Uint8Array;
}

/**
 * An {@link X86Cpu} over plain objects and a GuestMemory: for tests, for differential checks against
 * KVM, and as the reference of what each member means. Every field is public and writable.
 */
export class SimpleCpu implements X86Cpu {
  readonly gpr: bigint[] = new Array<bigint>(16).fill(0n);
  rip = 0n;
  rflags = 0x2n;
  readonly segments: Record<SegmentName, SegmentState>;
  /** GDTR; LDTR (undefined: null selector in LDTR). */
  gdtr: DescriptorTable = { base: 0n, limit: 0xffff };
  ldtr: DescriptorTable | undefined = undefined;
  cr0: bigint;
  cr2 = 0n;
  cr3 = 0n;
  cr4: bigint;
  cr8 = 0n;
  efer: bigint;
  xcr0 = 0x7n;
  readonly msrs = new Map<number, bigint>();
  /** Standard-format XSAVE image (4 KiB, as KVM_GET_XSAVE). */
  xsave = new Uint8Array(4096);
  tsc = 0x1000n;
  /** Every event the emulator injected, in order. */
  readonly injected: InjectedEvent[] = [];
  readonly memory: GuestMemory;
  readonly layout: XsaveLayout;
  private readonly translator: SimpleCpuInit["translate"];
  private readonly random: (length: number) => Uint8Array;

  constructor(init: SimpleCpuInit) {
    this.memory = init.memory;
    this.layout = init.layout ?? DEFAULT_XSAVE_LAYOUT;
    this.translator = init.translate;
    this.random = init.random ?? ((n) => new Uint8Array(randomBytes(n)));
    const mode = init.mode ?? "long64";
    const data = mode === "real" ? { ...FLAT_DATA, selector: 0, limit: 0xffff, db: false } : FLAT_DATA;
    const cs: SegmentState =
      mode === "long64" ? { ...FLAT_DATA, selector: 0x10, type: 0xb, db: false, l: true } : { ...data, selector: mode === "real" ? 0 : 0x10, type: 0xb };
    this.segments = { es: data, cs, ss: data, ds: data, fs: data, gs: data };
    // CR0: PE, MP, ET, NE, WP, AM (+PG in long mode); CR4: PAE, OSFXSR, OSXMMEXCPT, OSXSAVE; EFER: SCE, LME, LMA, NXE.
    this.cr0 = mode === "real" ? 0x10n : mode === "long64" ? 0x80050033n : 0x50033n;
    this.cr4 = mode === "real" ? 0n : 0x40620n;
    this.efer = mode === "long64" ? 0xd01n : 0n;
    writeMxcsr(this.xsave, MXCSR_DEFAULT);
    this.xsave[0] = 0x7f;
    this.xsave[1] = 0x03;
    setXstateBv(this.xsave, 0n);
  }

  readGpr(i: number): bigint {
    return this.gpr[i]!;
  }
  writeGpr(i: number, v: bigint): void {
    this.gpr[i] = BigInt.asUintN(64, v);
  }
  readRip(): bigint {
    return this.rip;
  }
  writeRip(v: bigint): void {
    this.rip = v;
  }
  readRflags(): bigint {
    return this.rflags;
  }
  writeRflags(v: bigint): void {
    this.rflags = v | 2n;
  }
  readSegment(s: SegmentName): SegmentState {
    return this.segments[s];
  }
  readDescriptorTable(table: "gdt" | "ldt"): DescriptorTable | undefined {
    return table === "gdt" ? this.gdtr : this.ldtr;
  }
  readCr(n: 0 | 2 | 3 | 4 | 8): bigint {
    return n === 0 ? this.cr0 : n === 2 ? this.cr2 : n === 3 ? this.cr3 : n === 4 ? this.cr4 : this.cr8;
  }
  readEfer(): bigint {
    return this.efer;
  }
  readMsr(i: number): bigint | undefined {
    return this.msrs.get(i);
  }
  writeMsr(i: number, v: bigint): boolean {
    if (!this.msrs.has(i)) return false;
    this.msrs.set(i, v);
    return true;
  }
  readXcr0(): bigint {
    return this.xcr0;
  }
  writeXcr0(v: bigint): void {
    this.xcr0 = v;
  }
  readXsaveState(): Uint8Array {
    return Uint8Array.from(this.xsave);
  }
  writeXsaveState(image: Uint8Array): void {
    this.xsave = Uint8Array.from(image);
  }
  xsaveLayout(): XsaveLayout {
    return this.layout;
  }
  readPhys(gpa: bigint, length: number): Uint8Array {
    return this.memory.read(gpa, length);
  }
  writePhys(gpa: bigint, data: Uint8Array): void {
    this.memory.write(gpa, data);
  }
  translate(linear: bigint, access: AccessKind, cpl: number): bigint | PageFault {
    return this.translator === undefined ? linear : this.translator(linear, access, cpl);
  }
  inject(e: InjectedEvent): void {
    this.injected.push(e);
    if (e.cr2 !== undefined) this.cr2 = e.cr2;
  }
  randomBytes(n: number): Uint8Array {
    return this.random(n);
  }
  readTsc(): bigint {
    this.tsc += 100n;
    return this.tsc;
  }
}
