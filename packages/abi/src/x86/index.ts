export * from "./address.js";
export * from "./control-registers.js";
export * from "./debug-registers.js";
export * from "./exceptions.js";
export * from "./msr.js";
export * from "./rflags.js";
export * from "./segment.js";
