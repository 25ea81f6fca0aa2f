export * from "./constants.js";
export * from "./ioctls.js";
export * from "./msr-filter.js";
export * from "./run.js";
export * from "./structs.js";
