import type { SegmentName } from "../decoder/registers.js";

/** A segment register as KVM's `struct kvm_segment` holds it (limit already byte-granular). */
export interface SegmentState {
  readonly selector: number;
  readonly base: bigint;
  readonly limit: number;
  /** Descriptor type field (4 bits): for data, bit 1 = writable, bit 2 = expand-down; bit 3 = code. */
  readonly type: number;
  /** Descriptor S bit: 1 for code/data segments. */
  readonly s: boolean;
  readonly dpl: number;
  readonly present: boolean;
  /** D/B: 32-bit default operand/stack size. */
  readonly db: boolean;
  /** L: 64-bit code segment (CS only). */
  readonly l: boolean;
  /** Unusable (null selector loaded in protected mode). */
  readonly unusable?: boolean;
}

export type AccessKind = "read" | "write" | "fetch";

/** A descriptor table register: linear base and byte limit (the last valid offset). */
export interface DescriptorTable {
  readonly base: bigint;
  readonly limit: number;
}

/** A failed guest page walk: the #PF the guest gets. */
export interface PageFault {
  readonly kind: "page-fault";
  /** #PF error code (P, W/R, U/S, RSVD, I/D, PK, SS bits as the walker found them). */
  readonly errorCode: number;
  /** The faulting linear address (the guest's CR2). */
  readonly cr2: bigint;
}

/**
 * How an event reaches the guest:
 * - `exception`: a fault or trap raised by the instruction (RIP is the instruction's own address for faults);
 * - `software-exception`: INT3 / INTO (RIP is already past the instruction);
 * - `software-interrupt`: INT n (RIP is already past the instruction).
 * `instructionLength` lets a deliverer that wants RIP at the instruction (VMX event injection) step back.
 */
export interface InjectedEvent {
  readonly kind: "exception" | "software-exception" | "software-interrupt";
  readonly vector: number;
  readonly errorCode: number | undefined;
  /** Set for #PF: the value the guest's CR2 must hold when its handler runs. */
  readonly cr2: bigint | undefined;
  readonly instructionLength: number;
}

/** One XSAVE state component as CPUID leaf 0xD sub-leaf `index` describes it. */
export interface XsaveComponent {
  readonly index: number;
  /** CPUID.(0xD,i).EAX: size in bytes. */
  readonly size: number;
  /** CPUID.(0xD,i).EBX: offset in the standard (non-compacted) format; undefined for supervisor components. */
  readonly offset: number | undefined;
  /** CPUID.(0xD,i).ECX bit 1: 64-byte aligned in the compacted format. */
  readonly align64: boolean;
}

export interface XsaveLayout {
  /** CPUID.(0xD,0) EDX:EAX: XCR0 bits the processor supports. */
  readonly supportedXcr0: bigint;
  /** CPUID.(0xD,1) EDX:ECX: IA32_XSS bits the processor supports. */
  readonly supportedXss: bigint;
  /** Components 2 and up (0 and 1 live in the legacy region). */
  readonly components: readonly XsaveComponent[];
}

/**
 * The vCPU and guest the emulator works on. The vmm implements it over kvm-backend (KVM_GET/SET_REGS,
 * SREGS, MSRS, XSAVE, XCRS, VCPU_EVENTS and the guest's page tables); {@link SimpleCpu} implements it
 * over plain objects for tests. Values are u64 bigints unless noted.
 */
export interface X86Cpu {
  /** General register 0..15 (RAX..R15), all 64 bits. */
  readGpr(index: number): bigint;
  writeGpr(index: number, value: bigint): void;
  readRip(): bigint;
  writeRip(value: bigint): void;
  readRflags(): bigint;
  writeRflags(value: bigint): void;
  readSegment(seg: SegmentName): SegmentState;
  /**
   * GDTR, or LDTR's base and limit (as KVM's sregs hold them); undefined for an LDT when LDTR is
   * null or unusable. For LAR/LSL, which read descriptors through the guest's memory.
   */
  readDescriptorTable(table: "gdt" | "ldt"): DescriptorTable | undefined;
  /** CR0, CR2, CR3, CR4, CR8. */
  readCr(n: 0 | 2 | 3 | 4 | 8): bigint;
  readEfer(): bigint;
  /** RDMSR as the guest would see it; undefined means the MSR does not exist (#GP). */
  readMsr(index: number): bigint | undefined;
  /** WRMSR; false means the write is refused (#GP). */
  writeMsr(index: number, value: bigint): boolean;
  readXcr0(): bigint;
  /** Set XCR0 (already validated by the emulator against the layout's supported bits and the SDM rules). */
  writeXcr0(value: bigint): void;
  /**
   * The vCPU's x87/SSE/AVX/... state in the standard (non-compacted) XSAVE format, as KVM_GET_XSAVE
   * returns it: legacy region, header (XSTATE_BV = the components not in their initial state), and
   * each user component at its CPUID 0xD offset. The emulator reads it only for instructions that need it.
   */
  readXsaveState(): Uint8Array;
  /** Write back a (modified) state image in the same format (KVM_SET_XSAVE). */
  writeXsaveState(image: Uint8Array): void;
  xsaveLayout(): XsaveLayout;
  /** Read guest-physical memory (RAM or MMIO: the vmm routes). */
  readPhys(gpa: bigint, length: number): Uint8Array;
  writePhys(gpa: bigint, data: Uint8Array): void;
  /**
   * Optional atomic compare-exchange of 8 or 16 bytes at `gpa`, aligned to that size (the emulator
   * builds every LOCK read-modify-write on it, so vCPUs running natively at the same time stay
   * coherent). Returns the old contents (the write happened iff they equal `expected`), or
   * undefined, having touched nothing, when `gpa` is not RAM (MMIO). Without it the emulator reads,
   * modifies and writes, which is atomic only while the other vCPUs are stopped.
   */
  compareExchangePhys?(gpa: bigint, expected: Uint8Array, desired: Uint8Array): Uint8Array | undefined;
  /**
   * Linear -> guest-physical through the guest's own page tables (CR3, 4/5-level, large pages),
   * checking the access rights for `access` at `cpl`. Called only when CR0.PG = 1.
   */
  translate(linear: bigint, access: AccessKind, cpl: number): bigint | PageFault;
  /** Deliver an exception or software interrupt to the guest. */
  inject(event: InjectedEvent): void;
  /** Bytes from the host CSPRNG (RDRAND/RDSEED). */
  randomBytes(length: number): Uint8Array;
  /** The guest's TSC now (RDTSCP). */
  readTsc(): bigint;
}
