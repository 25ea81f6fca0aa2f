export * from "./decoder/decode.js";
export * from "./decoder/format.js";
export * from "./decoder/registers.js";
export { type GroupDef, MAP_0F, MAP_0F3A, MAP_0F38, type OpDef, PRIMARY, type PrefixDef, type Slot, type WDef } from "./decoder/tables.js";
export * from "./decoder/types.js";
