import { KVM_IOAPIC_NUM_PINS, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from "@tsvmm/abi";
import { KvmError } from "./errors.js";

/**
 * An MSI message as a device writes it: a 64-bit address and a 32-bit data word. `devid` is only
 * for platforms whose interrupt controller needs the requester id (KVM_CAP_MSI_DEVID); x86 has none.
 */
export interface MsiMessage {
  addressLo: number;
  addressHi?: number;
  data: number;
  devid?: number;
}

/** One entry of the GSI routing table given to KVM_SET_GSI_ROUTING. */
export type GsiRoute =
  /** GSI -> a pin of the in-kernel PIC (chip 0/1) or IOAPIC (chip 2). Not with a split irqchip. */
  | { gsi: number; type: "irqchip"; irqchip: number; pin: number }
  /** GSI -> an MSI message: raising the GSI (irqfd, KVM_IRQ_LINE) delivers it to the LAPICs. */
  | { gsi: number; type: "msi"; msi: MsiMessage };

/** Delivery modes of an x86 MSI data word and of an IOAPIC redirection entry (SDM vol. 3, 11.11.2). */
export const X86_DELIVERY_MODE = { FIXED: 0, LOWEST_PRIORITY: 1, SMI: 2, NMI: 4, INIT: 5, EXTINT: 7 } as const;

export interface X86MsiTarget {
  /** APIC id (physical) or logical destination (logical). Ids above 255 need KVM_CAP_X2APIC_API. */
  destination: number;
  vector: number;
  /** X86_DELIVERY_MODE value; fixed by default. */
  deliveryMode?: number;
  logical?: boolean;
  redirectionHint?: boolean;
  levelTriggered?: boolean;
  /** Level of a level-triggered message (assert = true). */
  assert?: boolean;
}

const MSI_ADDRESS_BASE = 0xfee00000;

function checkField(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new KvmError("KVM_INVALID_ARGUMENT", `${name} ${v} is outside 0..${max}`);
}

/**
 * Compose the MSI a PCI device would send to reach `destination` with `vector` (SDM vol. 3,
 * 11.11.1 and 11.11.2). KVM extends the destination above 255 through address bits 63:40 when the
 * VM has enabled KVM_X2APIC_API_USE_32BIT_IDS, which is where ids above 255 go here.
 */
export function x86Msi(t: X86MsiTarget): MsiMessage {
  checkField("MSI destination", t.destination, 0xffffffff);
  checkField("MSI vector", t.vector, 0xff);
  const mode = t.deliveryMode ?? X86_DELIVERY_MODE.FIXED;
  checkField("MSI delivery mode", mode, 7);
  const addressLo = (MSI_ADDRESS_BASE | ((t.destination & 0xff) << 12) | (t.redirectionHint ? 1 << 3 : 0) | (t.logical ? 1 << 2 : 0)) >>> 0;
  const addressHi = (t.destination & ~0xff) >>> 0;
  const data = (t.vector | (mode << 8) | (t.assert ?? true ? 1 << 14 : 0) | (t.levelTriggered ? 1 << 15 : 0)) >>> 0;
  return { addressLo, addressHi, data };
}

/** An IOAPIC redirection-table entry, field by field (82093AA datasheet, IOREDTBL). */
export interface IoapicRedirection {
  vector: number;
  deliveryMode: number;
  logical: boolean;
  /** Read-only in hardware: a delivery is pending. */
  deliveryStatus: boolean;
  activeLow: boolean;
  /** Read-only in hardware: a level interrupt was accepted and not yet EOIed. */
  remoteIrr: boolean;
  levelTriggered: boolean;
  masked: boolean;
  destination: number;
}

const bit = (v: bigint, n: number): boolean => ((v >> BigInt(n)) & 1n) === 1n;

export function decodeIoapicRedirection(bits: bigint): IoapicRedirection {
  return {
    vector: Number(bits & 0xffn),
    deliveryMode: Number((bits >> 8n) & 7n),
    logical: bit(bits, 11),
    deliveryStatus: bit(bits, 12),
    activeLow: bit(bits, 13),
    remoteIrr: bit(bits, 14),
    levelTriggered: bit(bits, 15),
    masked: bit(bits, 16),
    destination: Number((bits >> 56n) & 0xffn),
  };
}

export function encodeIoapicRedirection(r: Partial<IoapicRedirection> & { vector: number }): bigint {
  checkField("IOAPIC vector", r.vector, 0xff);
  checkField("IOAPIC delivery mode", r.deliveryMode ?? 0, 7);
  checkField("IOAPIC destination", r.destination ?? 0, 0xff);
  const flag = (b: boolean | undefined, n: number): bigint => (b ? 1n << BigInt(n) : 0n);
  return (
    BigInt(r.vector) | (BigInt(r.deliveryMode ?? 0) << 8n) | flag(r.logical, 11) | flag(r.deliveryStatus, 12) |
    flag(r.activeLow, 13) | flag(r.remoteIrr, 14) | flag(r.levelTriggered, 15) | flag(r.masked, 16) |
    (BigInt(r.destination ?? 0) << 56n)
  );
}

/**
 * The MSI an IOAPIC sends for a redirection entry. With a split irqchip the IOAPIC lives in the
 * VMM: when a pin fires it builds this message and delivers it with `Vm.signalMsi` (or raises a GSI
 * routed to it), and the in-kernel LAPICs take it from there. Undefined when the entry is masked.
 */
export function ioapicRedirectionToMsi(r: IoapicRedirection, level = true): MsiMessage | undefined {
  if (r.masked) return undefined;
  return x86Msi({
    destination: r.destination, vector: r.vector, deliveryMode: r.deliveryMode, logical: r.logical,
    levelTriggered: r.levelTriggered, assert: level,
  });
}

/**
 * The routing table KVM installs with KVM_CREATE_IRQCHIP on x86: GSIs 0-15 to the PIC pin of the
 * same number (master 0-7, slave 8-15) and to the IOAPIC pin of the same number, GSIs 16-23 to the
 * IOAPIC only. KVM_SET_GSI_ROUTING replaces the whole table, so start from this to add MSI routes
 * and keep KVM_IRQ_LINE working.
 */
export function x86DefaultGsiRoutes(): GsiRoute[] {
  const out: GsiRoute[] = [];
  for (let gsi = 0; gsi < KVM_IOAPIC_NUM_PINS; gsi++) {
    if (gsi < 8) out.push({ gsi, type: "irqchip", irqchip: KVM_IRQCHIP_PIC_MASTER, pin: gsi });
    else if (gsi < 16) out.push({ gsi, type: "irqchip", irqchip: KVM_IRQCHIP_PIC_SLAVE, pin: gsi - 8 });
    out.push({ gsi, type: "irqchip", irqchip: KVM_IRQCHIP_IOAPIC, pin: gsi });
  }
  return out;
}

/**
 * The PC's wiring as firmware tables describe it (the MADT's and MP table's override ISA IRQ 0 ->
 * GSI 2): KVM's default table, but GSI 0 (what KVM's PIT raises) reaches IOAPIC pin 2 besides PIC
 * pin 0, and GSI 2 (the PICs' cascade) reaches nothing. With the default table the PIT's
 * interrupts arrive at pin 0, where a guest that follows its tables never looks.
 */
export function x86PcGsiRoutes(): GsiRoute[] {
  return x86DefaultGsiRoutes()
    .filter((r) => r.gsi !== 2)
    .map((r) => (r.gsi === 0 && r.type === "irqchip" && r.irqchip === KVM_IRQCHIP_IOAPIC ? { ...r, pin: 2 } : r));
}
