export {
  allocateDebugRegisters,
  type DebugRegisterSlot,
  type DebugRegisterState,
  DebugRegisters,
  type DecodedDr7Slot,
  decodeDr7,
  encodeDr7,
  type SlotCondition,
  splitRange,
} from "./debug-registers.js";
export { GdbStubError, type GdbStubErrorCode } from "./errors.js";
export { checksum, decodeRunLength, escapeBinary, framePacket, unescapeBinary } from "./framing.js";
export { fromHex, parseHexNumber, toHex } from "./hex.js";
export { PacketParser, type ParserEvent, type ParserStats } from "./packet-parser.js";
export {
  abridgedTagWord,
  decodeGPacket,
  decodeRegister,
  encodeGPacket,
  encodeRegister,
  FEATURE_CONTROL,
  FEATURE_CORE,
  FEATURE_SEGMENTS,
  FEATURE_SSE,
  fullTagWord,
  type GdbArchitecture,
  type RegisterInfo,
  type RegisterLayout,
  registerLayout,
  resetRegisters,
  type SseState,
  type X86IntRegister,
  type X86Registers,
  type X86SegmentRegister,
  type X87State,
} from "./registers.js";
export { type GdbListenAddress, GdbServer, type GdbServerOptions, isLoopbackHost, parseListenAddress } from "./server.js";
export { DEFAULT_MAX_PACKET_SIZE, GdbSession, type GdbSessionOptions, type SessionIo } from "./session.js";
export {
  type Awaitable,
  type Breakpoint,
  type BreakpointKind,
  type BreakpointResult,
  type DebugTarget,
  GdbSignal,
  type ResumeAction,
  type StopCause,
  type StopEvent,
} from "./target.js";
export { targetDescriptionXml } from "./target-description.js";
