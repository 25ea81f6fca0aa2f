import { array, defineStruct, type StructLayout, u8, u16, u32, u64 } from "@tsvmm/abi";

// The system structures the VMM reads from guest memory to deliver an event by hand (SDM vol. 3A
// 3.4.5 segment descriptor, 6.14.1 64-bit IDT gate, 8.7 64-bit TSS). No C header describes them
// in user space; test/emulation-descriptors.test.ts checks size and offsets against the SDM's figures.

/** A 64-bit mode IDT gate descriptor (16 bytes). */
export interface IdtGate64 {
  offsetLow: number;
  selector: number;
  /** Bits 2:0: the IST index (0 = no stack switch). */
  ist: number;
  /** Type (bits 3:0: 0xE interrupt gate, 0xF trap gate), DPL (bits 6:5), P (bit 7). */
  typeAttr: number;
  offsetMid: number;
  offsetHigh: number;
  reserved: number;
}
export const IdtGate64Layout: StructLayout<IdtGate64> = defineStruct("struct idt_gate64", [
  u16("offsetLow"), u16("selector"), u8("ist"), u8("typeAttr"), u16("offsetMid"), u32("offsetHigh"), u32("reserved"),
]);

/** A code or data segment descriptor in the GDT/LDT (8 bytes). */
export interface SegmentDescriptor {
  limitLow: number;
  baseLow: number;
  baseMid: number;
  /** Type (3:0), S (4), DPL (6:5), P (7). */
  access: number;
  /** Limit 19:16 (3:0), AVL (4), L (5), D/B (6), G (7). */
  flagsLimit: number;
  baseHigh: number;
}
export const SegmentDescriptorLayout: StructLayout<SegmentDescriptor> = defineStruct("struct segment_descriptor", [
  u16("limitLow"), u16("baseLow"), u8("baseMid"), u8("access"), u8("flagsLimit"), u8("baseHigh"),
]);

/** The 64-bit task-state segment (104 bytes): the stacks an event delivery switches to. */
export interface Tss64 {
  reserved0: number;
  /** RSP0..RSP2: the stack for a privilege change to that CPL. */
  rsp: bigint[];
  reserved1: bigint;
  /** IST1..IST7. */
  ist: bigint[];
  reserved2: bigint;
  reserved3: number;
  ioMapBase: number;
}
export const Tss64Layout: StructLayout<Tss64> = defineStruct("struct tss64", [
  u32("reserved0"), array(u64(""), 3, "rsp"), u64("reserved1"), array(u64(""), 7, "ist"), u64("reserved2"), u16("reserved3"), u16("ioMapBase"),
]);
