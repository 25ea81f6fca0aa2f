export * from "./bits/index.js";
export * from "./errors.js";
export * from "./fields.js";
export * from "./state.js";
