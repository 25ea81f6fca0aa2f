export * from "./errors.js";
export * from "./table.js";
