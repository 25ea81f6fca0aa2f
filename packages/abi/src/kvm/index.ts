export * from "./constants.js";
export * from "./ioctls.js";
export * from "./run.js";
export * from "./structs.js";
export * from "./msr-filter.js";
