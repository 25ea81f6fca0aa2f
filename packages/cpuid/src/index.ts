export * from "./errors.js";
export * from "./features/index.js";
export * from "./table.js";
