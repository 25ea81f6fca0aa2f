import { bytes, defineStruct, nested, type StructLayout, u8, u16, u32, u64 } from "@tsvmm/abi";

/**
 * Every virtio structure the device side reads or writes, declared once. test/header.test.ts
 * compiles a C program against this machine's <linux/virtio_*.h> and checks each size and offset.
 */

export interface VringDesc {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}
/** Split-ring descriptor, 16 bytes, 16-byte aligned table. */
export const VringDescLayout: StructLayout<VringDesc> = defineStruct("struct vring_desc", [u64("addr"), u32("len"), u16("flags"), u16("next")]);

export interface VringAvailHeader {
  flags: number;
  idx: number;
}
/** Header of the split available ring; `ring[size]` (u16 each) and `used_event` follow. */
export const VringAvailLayout: StructLayout<VringAvailHeader> = defineStruct("struct vring_avail", [u16("flags"), u16("idx")]);

export interface VringUsedElem {
  id: number;
  len: number;
}
export const VringUsedElemLayout: StructLayout<VringUsedElem> = defineStruct("struct vring_used_elem", [u32("id"), u32("len")]);

export interface VringUsedHeader {
  flags: number;
  idx: number;
}
/** Header of the split used ring; `ring[size]` (vring_used_elem) and `avail_event` follow. */
export const VringUsedLayout: StructLayout<VringUsedHeader> = defineStruct("struct vring_used", [u16("flags"), u16("idx")]);

export interface VringPackedDesc {
  addr: bigint;
  len: number;
  id: number;
  flags: number;
}
export const VringPackedDescLayout: StructLayout<VringPackedDesc> = defineStruct("struct vring_packed_desc", [u64("addr"), u32("len"), u16("id"), u16("flags")]);

export interface VringPackedDescEvent {
  offWrap: number;
  flags: number;
}
/** Packed-ring event suppression structure (driver area and device area). */
export const VringPackedDescEventLayout: StructLayout<VringPackedDescEvent> = defineStruct("struct vring_packed_desc_event", [u16("offWrap"), u16("flags")]);

/** Byte offsets the hot paths use; they come from the layouts above, never typed by hand. */
export const DESC_SIZE = VringDescLayout.size;
export const DESC_ADDR = VringDescLayout.offsetOf("addr");
export const DESC_LEN = VringDescLayout.offsetOf("len");
export const DESC_FLAGS = VringDescLayout.offsetOf("flags");
export const DESC_NEXT = VringDescLayout.offsetOf("next");
export const PDESC_SIZE = VringPackedDescLayout.size;
export const PDESC_ADDR = VringPackedDescLayout.offsetOf("addr");
export const PDESC_LEN = VringPackedDescLayout.offsetOf("len");
export const PDESC_ID = VringPackedDescLayout.offsetOf("id");
export const PDESC_FLAGS = VringPackedDescLayout.offsetOf("flags");
export const AVAIL_FLAGS = VringAvailLayout.offsetOf("flags");
export const AVAIL_IDX = VringAvailLayout.offsetOf("idx");
export const AVAIL_RING = VringAvailLayout.size;
export const USED_FLAGS = VringUsedLayout.offsetOf("flags");
export const USED_IDX = VringUsedLayout.offsetOf("idx");
export const USED_RING = VringUsedLayout.size;
export const USED_ELEM_SIZE = VringUsedElemLayout.size;
export const USED_ELEM_ID = VringUsedElemLayout.offsetOf("id");
export const USED_ELEM_LEN = VringUsedElemLayout.offsetOf("len");
export const EVENT_OFF_WRAP = VringPackedDescEventLayout.offsetOf("offWrap");
export const EVENT_FLAGS = VringPackedDescEventLayout.offsetOf("flags");
export const EVENT_SIZE = VringPackedDescEventLayout.size;

/** Bytes of each split-ring part for a queue of `size` entries (virtio 1.2 §2.7, "Queue Size" table). */
export const splitDescTableSize = (size: number): number => DESC_SIZE * size;
export const splitAvailSize = (size: number): number => AVAIL_RING + 2 * size + 2;
export const splitUsedSize = (size: number): number => USED_RING + USED_ELEM_SIZE * size + 2;
export const packedRingSize = (size: number): number => PDESC_SIZE * size;

/** A u64 descriptor address read as two u32 halves; above 2^53 it cannot be guest RAM, so -1. */
export function readAddr(b: Buffer, off: number): number {
  const lo = b.readUInt32LE(off);
  const hi = b.readUInt32LE(off + 4);
  if (hi >= 0x200000) return -1;
  return hi * 0x1_0000_0000 + lo;
}

// ---- device configuration spaces and request headers ----

export interface VirtioBlkGeometry {
  cylinders: number;
  heads: number;
  sectors: number;
}
export const VirtioBlkGeometryLayout: StructLayout<VirtioBlkGeometry> = defineStruct("struct virtio_blk_geometry", [u16("cylinders"), u8("heads"), u8("sectors")]);

export interface VirtioBlkConfig {
  capacity: bigint;
  sizeMax: number;
  segMax: number;
  geometry: VirtioBlkGeometry;
  blkSize: number;
  physicalBlockExp: number;
  alignmentOffset: number;
  minIoSize: number;
  optIoSize: number;
  wce: number;
  unused: number;
  numQueues: number;
  maxDiscardSectors: number;
  maxDiscardSeg: number;
  discardSectorAlignment: number;
  maxWriteZeroesSectors: number;
  maxWriteZeroesSeg: number;
  writeZeroesMayUnmap: number;
  unused1: Buffer;
}
/** virtio-blk configuration space up to the write-zeroes fields (the secure-erase fields are not offered). */
export const VirtioBlkConfigLayout: StructLayout<VirtioBlkConfig> = defineStruct("struct virtio_blk_config", [
  u64("capacity"),
  u32("sizeMax"),
  u32("segMax"),
  nested(VirtioBlkGeometryLayout, "geometry"),
  u32("blkSize"),
  u8("physicalBlockExp"),
  u8("alignmentOffset"),
  u16("minIoSize"),
  u32("optIoSize"),
  u8("wce"),
  u8("unused"),
  u16("numQueues"),
  u32("maxDiscardSectors"),
  u32("maxDiscardSeg"),
  u32("discardSectorAlignment"),
  u32("maxWriteZeroesSectors"),
  u32("maxWriteZeroesSeg"),
  u8("writeZeroesMayUnmap"),
  bytes(3, "unused1"),
]);

export interface VirtioBlkOuthdr {
  type: number;
  ioprio: number;
  sector: bigint;
}
export const VirtioBlkOuthdrLayout: StructLayout<VirtioBlkOuthdr> = defineStruct("struct virtio_blk_outhdr", [u32("type"), u32("ioprio"), u64("sector")]);

export interface VirtioBlkDiscardWriteZeroes {
  sector: bigint;
  numSectors: number;
  flags: number;
}
export const VirtioBlkDiscardWriteZeroesLayout: StructLayout<VirtioBlkDiscardWriteZeroes> = defineStruct("struct virtio_blk_discard_write_zeroes", [
  u64("sector"),
  u32("numSectors"),
  u32("flags"),
]);

export interface VirtioNetConfig {
  mac: Buffer;
  status: number;
  maxVirtqueuePairs: number;
  mtu: number;
  speed: number;
  duplex: number;
  rssMaxKeySize: number;
  rssMaxIndirectionTableLength: number;
  supportedHashTypes: number;
}
export const VirtioNetConfigLayout: StructLayout<VirtioNetConfig> = defineStruct("struct virtio_net_config", [
  bytes(6, "mac"),
  u16("status"),
  u16("maxVirtqueuePairs"),
  u16("mtu"),
  u32("speed"),
  u8("duplex"),
  u8("rssMaxKeySize"),
  u16("rssMaxIndirectionTableLength"),
  u32("supportedHashTypes"),
]);

export interface VirtioNetHdrV1 {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
  numBuffers: number;
}
/** The 12-byte header in front of every frame (virtio 1.x always uses this form). */
export const VirtioNetHdrV1Layout: StructLayout<VirtioNetHdrV1> = defineStruct("struct virtio_net_hdr_v1", [
  u8("flags"),
  u8("gsoType"),
  u16("hdrLen"),
  u16("gsoSize"),
  u16("csumStart"),
  u16("csumOffset"),
  u16("numBuffers"),
]);
export const NET_HDR_NUM_BUFFERS = VirtioNetHdrV1Layout.offsetOf("numBuffers");

export interface VirtioConsoleConfig {
  cols: number;
  rows: number;
  maxNrPorts: number;
  emergWr: number;
}
export const VirtioConsoleConfigLayout: StructLayout<VirtioConsoleConfig> = defineStruct("struct virtio_console_config", [
  u16("cols"),
  u16("rows"),
  u32("maxNrPorts"),
  u32("emergWr"),
]);

export interface VirtioVsockConfig {
  guestCid: bigint;
}
export const VirtioVsockConfigLayout: StructLayout<VirtioVsockConfig> = defineStruct("struct virtio_vsock_config", [u64("guestCid")]);

export interface VirtioVsockHdr {
  srcCid: bigint;
  dstCid: bigint;
  srcPort: number;
  dstPort: number;
  len: number;
  type: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
}
export const VirtioVsockHdrLayout: StructLayout<VirtioVsockHdr> = defineStruct("struct virtio_vsock_hdr", [
  u64("srcCid"),
  u64("dstCid"),
  u32("srcPort"),
  u32("dstPort"),
  u32("len"),
  u16("type"),
  u16("op"),
  u32("flags"),
  u32("bufAlloc"),
  u32("fwdCnt"),
]);

export interface VirtioVsockEvent {
  id: number;
}
export const VirtioVsockEventLayout: StructLayout<VirtioVsockEvent> = defineStruct("struct virtio_vsock_event", [u32("id")]);

/** Every layout above, for the header test. */
export const VIRTIO_STRUCTS: readonly StructLayout<unknown>[] = [
  VringDescLayout,
  VringAvailLayout,
  VringUsedElemLayout,
  VringUsedLayout,
  VringPackedDescLayout,
  VringPackedDescEventLayout,
  VirtioBlkGeometryLayout,
  VirtioBlkConfigLayout,
  VirtioBlkOuthdrLayout,
  VirtioBlkDiscardWriteZeroesLayout,
  VirtioNetConfigLayout,
  VirtioNetHdrV1Layout,
  VirtioConsoleConfigLayout,
  VirtioVsockConfigLayout,
  VirtioVsockHdrLayout,
  VirtioVsockEventLayout,
] as unknown as readonly StructLayout<unknown>[];

export const BLK_OUTHDR_TYPE = VirtioBlkOuthdrLayout.offsetOf("type");
export const BLK_OUTHDR_SECTOR = VirtioBlkOuthdrLayout.offsetOf("sector");
/** The two outhdr fields the request path needs, without building a decode object per request. */
export function readBlkOuthdr(b: Buffer): { type: number; sector: number } {
  return { type: b.readUInt32LE(BLK_OUTHDR_TYPE), sector: readAddr(b, BLK_OUTHDR_SECTOR) };
}
