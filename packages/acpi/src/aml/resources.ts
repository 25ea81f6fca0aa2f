import { defineStruct, u8, u16, u32 } from "@tsvmm/abi";
import { AcpiError } from "../errors.js";
import { amlBuffer, amlConcat } from "./encoder.js";

// Resource data descriptors from ACPI 6.4 section 6.4 (the bytes inside a ResourceTemplate). Small
// descriptors start with a tag byte holding type and length; large ones with a tag byte and a
// 16-bit length of what follows.

/** 6.4.2.6 I/O Port Descriptor (small item 0x08, 7 bytes after the tag). */
export interface IoDescriptor {
  tag: number;
  information: number;
  rangeMin: number;
  rangeMax: number;
  alignment: number;
  rangeLength: number;
}
export const IO_DESCRIPTOR = defineStruct<IoDescriptor>("ACPI I/O Port Descriptor", [
  u8("tag"),
  u8("information"),
  u16("rangeMin"),
  u16("rangeMax"),
  u8("alignment"),
  u8("rangeLength"),
]);

/** 6.4.2.1 IRQ Descriptor without the information byte (small item 0x04, length 2). */
export interface IrqNoFlagsDescriptor {
  tag: number;
  mask: number;
}
export const IRQ_NO_FLAGS_DESCRIPTOR = defineStruct<IrqNoFlagsDescriptor>("ACPI IRQ Descriptor (no flags)", [u8("tag"), u16("mask")]);

/** 6.4.3.4 32-Bit Fixed Memory Range Descriptor (large item 0x06, 9 bytes after tag+length). */
export interface Memory32FixedDescriptor {
  tag: number;
  length: number;
  information: number;
  base: number;
  rangeLength: number;
}
export const MEMORY32_FIXED_DESCRIPTOR = defineStruct<Memory32FixedDescriptor>("ACPI 32-Bit Fixed Memory Range Descriptor", [
  u8("tag"),
  u16("length"),
  u8("information"),
  u32("base"),
  u32("rangeLength"),
]);

/** 6.4.3.6 Extended Interrupt Descriptor: the fixed part before the interrupt numbers. */
export interface ExtendedInterruptHeader {
  tag: number;
  length: number;
  flags: number;
  tableLength: number;
}
export const EXTENDED_INTERRUPT_HEADER = defineStruct<ExtendedInterruptHeader>("ACPI Extended Interrupt Descriptor header", [
  u8("tag"),
  u16("length"),
  u8("flags"),
  u8("tableLength"),
]);
/** One entry of the Extended Interrupt Descriptor's interrupt table. */
export const EXTENDED_INTERRUPT_NUMBER = defineStruct<{ gsi: number }>("ACPI Extended Interrupt number", [u32("gsi")]);

const TAG_IRQ_NO_FLAGS = (0x04 << 3) | 2;
const TAG_IO = (0x08 << 3) | 7;
const TAG_END = (0x0f << 3) | 1;
const TAG_MEMORY32_FIXED = 0x80 | 0x06;
const TAG_EXTENDED_INTERRUPT = 0x80 | 0x09;

function check(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new AcpiError("ACPI_INVALID_ARGUMENT", `${what} ${v} is out of range 0..${max}`);
}

/** IO (Decode16 | Decode10, min, max, alignment, length). */
export function resIo(o: { min: number; max?: number; alignment?: number; length: number; decode16?: boolean }): Buffer {
  const max = o.max ?? o.min;
  check(o.min, 0xffff, "IO minimum");
  check(max, 0xffff, "IO maximum");
  check(o.alignment ?? 0, 0xff, "IO alignment");
  check(o.length, 0xff, "IO length");
  return IO_DESCRIPTOR.encode({
    tag: TAG_IO,
    information: o.decode16 === false ? 0 : 1,
    rangeMin: o.min,
    rangeMax: max,
    alignment: o.alignment ?? 0,
    rangeLength: o.length,
  });
}

/** IRQNoFlags () { irqs }: ISA IRQs 0-15, edge-triggered, active-high, exclusive. */
export function resIrqNoFlags(irqs: readonly number[]): Buffer {
  let mask = 0;
  for (const irq of irqs) {
    check(irq, 15, "IRQNoFlags IRQ");
    mask |= 1 << irq;
  }
  return IRQ_NO_FLAGS_DESCRIPTOR.encode({ tag: TAG_IRQ_NO_FLAGS, mask });
}

/** Memory32Fixed (ReadWrite | ReadOnly, base, length). */
export function resMemory32Fixed(o: { base: number; length: number; writable?: boolean }): Buffer {
  check(o.base, 0xffffffff, "Memory32Fixed base");
  check(o.length, 0xffffffff, "Memory32Fixed length");
  return MEMORY32_FIXED_DESCRIPTOR.encode({
    tag: TAG_MEMORY32_FIXED,
    length: MEMORY32_FIXED_DESCRIPTOR.size - 3,
    information: o.writable === false ? 0 : 1,
    base: o.base,
    rangeLength: o.length,
  });
}

export type InterruptTrigger = "level" | "edge";
export type InterruptPolarity = "active-high" | "active-low";

export interface ExtendedInterruptOptions {
  readonly gsis: readonly number[];
  readonly trigger: InterruptTrigger;
  readonly polarity: InterruptPolarity;
  readonly shared?: boolean;
  readonly wakeCapable?: boolean;
  /** ResourceConsumer (the default) or ResourceProducer. */
  readonly consumer?: boolean;
}

/** Interrupt (ResourceConsumer, Level|Edge, ActiveHigh|ActiveLow, Exclusive|Shared) { gsis }. */
export function resExtendedInterrupt(o: ExtendedInterruptOptions): Buffer {
  if (o.gsis.length < 1 || o.gsis.length > 255) throw new AcpiError("ACPI_INVALID_ARGUMENT", `Interrupt descriptor needs 1-255 interrupts, got ${o.gsis.length}`);
  const flags =
    (o.consumer === false ? 0 : 0x01) |
    (o.trigger === "edge" ? 0x02 : 0) |
    (o.polarity === "active-low" ? 0x04 : 0) |
    (o.shared ? 0x08 : 0) |
    (o.wakeCapable ? 0x10 : 0);
  const out = Buffer.alloc(EXTENDED_INTERRUPT_HEADER.size + EXTENDED_INTERRUPT_NUMBER.size * o.gsis.length);
  EXTENDED_INTERRUPT_HEADER.encode({ tag: TAG_EXTENDED_INTERRUPT, length: out.length - 3, flags, tableLength: o.gsis.length }, out);
  o.gsis.forEach((gsi, i) => {
    check(gsi, 0xffffffff, "Interrupt number");
    EXTENDED_INTERRUPT_NUMBER.encode({ gsi }, out, EXTENDED_INTERRUPT_HEADER.size + i * EXTENDED_INTERRUPT_NUMBER.size);
  });
  return out;
}

/**
 * ResourceTemplate () { descriptors }: a Buffer holding the descriptors and the End Tag. The End
 * Tag's checksum byte is 0, which the spec defines as "treat the checksum as valid".
 */
export function amlResourceTemplate(descriptors: readonly Uint8Array[]): Buffer {
  return amlBuffer(amlConcat([...descriptors, Buffer.from([TAG_END, 0])]));
}
