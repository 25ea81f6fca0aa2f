export * from "./constants.js";
export * from "./driver/rings.js";
export * from "./errors.js";
export * from "./layouts.js";
export * from "./queue/index.js";
